// The small kernels around the tree-attention backward: Delta = rowsum(dO * O) before it, and the
// float32 dQ accumulator scaled into the output dtype after it.
#pragma once

#include <cstdint>

#include "../common/dtype.cuh"

namespace forge::cuda::attention {

// delta[r] = sum_c dO[r, c] * O[r, c] in float32, one warp per row r of the [rows, D] tensors.
template <class T>
__global__ void attention_delta_kernel(const T* __restrict__ o, const T* __restrict__ d_o, int64_t rows, int dim,
                                       float* __restrict__ delta) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t{gridDim.x} * blockDim.x) >> 5;
  for (int64_t r = (int64_t{blockIdx.x} * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
    float sum = 0.0f;
    for (int c = lane; c < dim; c += 32) sum = fmaf(load_float(d_o + r * dim + c), load_float(o + r * dim + c), sum);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) delta[r] = sum;
  }
}

// out[i] = scale * acc[i] in T, for i < count.
template <class T>
__global__ void scale_convert_kernel(const float* __restrict__ acc, int64_t count, float scale, T* __restrict__ out) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride)
    store_float(out + i, scale * acc[i]);
}

}  // namespace forge::cuda::attention
