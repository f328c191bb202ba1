// Kernel launches, and the launch geometry shared by the element-wise kernels: 1-D grids over int64
// work, walked with grid-stride loops so any size fits in a bounded grid.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

// FORGE_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...) is kernel<<<...>>>(args...); the
// kernel comes last so template arguments may hold commas. Under the CPU emulator (FORGE_SIMT, see
// cuda/simt/) the same line runs the grid on emulated threads instead.
#ifdef FORGE_SIMT
#define FORGE_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::forge::simt::Launch(grid, block, shared_bytes, stream, #__VA_ARGS__, __VA_ARGS__)
#else
#define FORGE_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif

// Declares `name`, the block's dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
#ifdef FORGE_SIMT
#define FORGE_DYNAMIC_SHARED(name) unsigned char* const name = ::forge::simt::dynamic_shared()
#else
#define FORGE_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
#endif

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
