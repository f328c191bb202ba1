// Built by nvcc for a GPU, or as C++ for the CPU emulator (cuda/simt/prelude.hpp included first; see
// CMakeLists.txt): launches go through FORGE_LAUNCH, which is kernel<<<...>>> under nvcc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "bench_common.hpp"
#include "common/launch.cuh"
#include "device_fill.hpp"

namespace gpubench {
namespace {

#ifdef FORGE_SIMT
// The host compiler has no cospif; the double-precision cosine is at least as accurate.
inline float cospif(float x) { return static_cast<float>(std::cos(3.14159265358979323846 * static_cast<double>(x))); }
#endif

__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__device__ __forceinline__ float normal_at(uint64_t seed, int64_t i) {
  const uint64_t h = mix(seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1));
  const float u1 = (static_cast<float>(h >> 40) + 1.0f) * 0x1.0p-24f;  // (0, 1]
  const float u2 = static_cast<float>((h >> 16) & 0xFFFFFFu) * 0x1.0p-24f;
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }

template <class T>
__global__ void fill_normal_kernel(T* dst, int64_t n, uint64_t seed, float mean, float std) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = from_float<T>(mean + std * normal_at(seed, i));
}

// Non-finite by the exponent bits alone: all ones in the exponent field is Inf or NaN in every format.
template <class Bits, Bits kExpMask>
__global__ void count_non_finite_kernel(const Bits* src, int64_t n, unsigned long long* count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned long long local = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    local += (src[i] & kExpMask) == kExpMask;
  // Butterfly sum: every lane ends with the warp's total (lane 0's is the one added).
  for (int offset = 16; offset > 0; offset >>= 1) local += __shfl_xor_sync(0xFFFFFFFFu, local, offset);
  if ((threadIdx.x & 31) == 0 && local) atomicAdd(count, local);
}

unsigned grid_for(int64_t n) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t blocks = (n + 255) / 256;
  const int64_t cap = static_cast<int64_t>(sms > 0 ? sms : 132) * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks < cap ? blocks : cap));
}

}  // namespace

void fill_normal(forge_dtype dtype, void* dst, int64_t n, uint64_t seed, float mean, float std,
                 cudaStream_t stream) {
  if (n <= 0) return;
  const unsigned grid = grid_for(n);
  switch (dtype) {
    case FORGE_DTYPE_F32:
      FORGE_LAUNCH(grid, 256, 0, stream, fill_normal_kernel<float>)(static_cast<float*>(dst), n, seed, mean, std);
      break;
    case FORGE_DTYPE_BF16:
      FORGE_LAUNCH(grid, 256, 0, stream, fill_normal_kernel<__nv_bfloat16>)(static_cast<__nv_bfloat16*>(dst), n, seed, mean, std);
      break;
    case FORGE_DTYPE_F16:
      FORGE_LAUNCH(grid, 256, 0, stream, fill_normal_kernel<__half>)(static_cast<__half*>(dst), n, seed, mean, std);
      break;
  }
  cuda_check_launch("fill_normal_kernel");
}

int64_t count_non_finite(forge_dtype dtype, const void* src, int64_t n, cudaStream_t stream) {
  if (n <= 0) return 0;
  unsigned long long* count = nullptr;
  GB_CUDA(cudaMallocAsync(reinterpret_cast<void**>(&count), sizeof(*count), stream));
  GB_CUDA(cudaMemsetAsync(count, 0, sizeof(*count), stream));
  const unsigned grid = grid_for(n);
  if (dtype == FORGE_DTYPE_F32)
    FORGE_LAUNCH(grid, 256, 0, stream, count_non_finite_kernel<uint32_t, 0x7F800000u>)(
        static_cast<const uint32_t*>(src), n, count);
  else if (dtype == FORGE_DTYPE_BF16)
    FORGE_LAUNCH(grid, 256, 0, stream, count_non_finite_kernel<uint16_t, 0x7F80u>)(
        static_cast<const uint16_t*>(src), n, count);
  else
    FORGE_LAUNCH(grid, 256, 0, stream, count_non_finite_kernel<uint16_t, 0x7C00u>)(
        static_cast<const uint16_t*>(src), n, count);
  cuda_check_launch("count_non_finite_kernel");
  unsigned long long host = 0;
  GB_CUDA(cudaMemcpyAsync(&host, count, sizeof(host), cudaMemcpyDeviceToHost, stream));
  GB_CUDA(cudaFreeAsync(count, stream));
  GB_CUDA(cudaStreamSynchronize(stream));
  return static_cast<int64_t>(host);
}

}  // namespace gpubench
