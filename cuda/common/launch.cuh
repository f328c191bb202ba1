// Launch geometry shared by the element-wise kernels: 1-D grids over int64 work, walked with
// grid-stride loops so any size fits in a bounded grid.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace forge {
namespace cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;  // enough to fill any current GPU; larger work loops

inline unsigned grid_for(int64_t items, int threads = kThreads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// for (i = first; i < n; i += stride) over a 1-D grid, in int64.
__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace cuda
}  // namespace forge
