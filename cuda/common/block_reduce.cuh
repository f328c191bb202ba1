// Block-wide sums in a fixed order (warp butterflies, then warp 0 over the warp results), so a
// reduction gives the same bits on every run for a given block size. Every thread of the block must
// call them (they synchronise), with blockDim.x a multiple of 32 and at most 1024.
#pragma once

#include <cuda_runtime.h>

namespace forge {
namespace cuda {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Returns the block's sum to every thread. `shared` holds at least 32 T.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? shared[lane] : T(0);
    w = warp_sum(w);
    if (lane == 0) shared[0] = w;
  }
  __syncthreads();
  return shared[0];
}

}  // namespace cuda
}  // namespace forge
