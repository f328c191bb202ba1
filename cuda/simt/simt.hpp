// forge-simt: a CPU emulator of the CUDA execution model, so that the kernels of cuda/ run and are
// checked on machines without a GPU (CI). It is not a GPU and says nothing about speed: it runs every
// thread of a block as a cooperative fiber and carries out the warp-level operations the kernels use
// (shuffles, ballots, ldmatrix, mma.sync m16n8k16, cp.async) with the fragment layouts of the PTX ISA,
// so indexing, tiling, masking, barriers and the online softmax are exercised exactly as written.
//
// What it checks on the way, and reports as the launch's error (cudaGetLastError):
//   - a deadlock: every live thread waits, at barriers or warp operations that cannot complete
//     (a __syncthreads in divergent code, lanes of one warp in different collectives);
//   - a warp operation with a full mask while lanes of the warp have exited;
//   - an access past the end of a device allocation (allocations end at a guard page, their size
//     rounded up to 16 bytes: a smaller overrun goes unseen, as on a GPU);
//   - misaligned ldmatrix rows and cp.async addresses, dynamic shared memory over the opt-in limit.
// Device memory and dynamic shared memory start filled with 0xFF bytes (NaN for floats), so a kernel
// that reads what nobody wrote fails loudly. cp.async copies land only at cp.async.wait_group, so a
// read before the wait sees stale data, as it could on a GPU.
//
// The cuda/ sources compile for it unchanged but for three hooks: FORGE_LAUNCH and
// FORGE_DYNAMIC_SHARED (cuda/common/launch.cuh) and the tensor-core wrappers (cuda/attention/mma.cuh).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace forge::simt {

struct Coords {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};

// Coordinates of the emulated thread running now.
const Coords& coords();

// Runs `body` on every thread of the grid; a failure becomes the error cudaGetLastError returns.
// `kernel` identifies the function for cudaFuncSetAttribute's shared-memory opt-in.
void launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, const std::function<void()>& body);

// FORGE_LAUNCH(grid, block, shared, stream, kernel)(args...) under the emulator.
template <class... P>
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, const char* name, void (*kernel)(P...))
      : grid_(grid), block_(block), shared_(shared_bytes), stream_(stream), name_(name), kernel_(kernel) {}

  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // Converted once, as a launch copies its parameters; every thread then gets its own copy.
    const std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
    void (*kernel)(P...) = kernel_;
    launch(name_, reinterpret_cast<const void*>(kernel), grid_, block_, shared_, stream_,
           [kernel, &params] { std::apply(kernel, params); });
  }

 private:
  dim3 grid_, block_;
  size_t shared_;
  cudaStream_t stream_;
  const char* name_;
  void (*kernel_)(P...);
};

// The block's dynamic shared memory (16-byte aligned, the launch's shared_bytes long).
unsigned char* dynamic_shared();

// Block barrier; the _and form returns whether every thread's predicate was non-zero.
int syncthreads_and(int predicate);

// Every lane of the warp contributes `bytes` of `mine`; returns the 32 contributions, each
// kSlotBytes apart, valid until this lane's next warp operation. `op` names the operation so that
// lanes in different operations are reported instead of mixed.
constexpr size_t kSlotBytes = 32;
const unsigned char* warp_exchange(const char* op, unsigned mask, const void* mine, size_t bytes);
unsigned lane_id();

template <class T>
T shfl_xor(unsigned mask, T value, int lane_mask, int width) {
  static_assert(sizeof(T) <= kSlotBytes && std::is_trivially_copyable_v<T>, "shuffle of an unsupported type");
  const unsigned char* all = warp_exchange("__shfl_xor_sync", mask, &value, sizeof(T));
  const unsigned lane = lane_id();
  const unsigned src = lane ^ static_cast<unsigned>(lane_mask);
  const unsigned segment = lane / static_cast<unsigned>(width);
  T out = value;  // a source lane outside the width segment leaves the caller's own value
  // A lane may read earlier width-groups but not later ones (CUDA programming guide, __shfl_xor_sync).
  if (src / static_cast<unsigned>(width) <= segment && src < 32) std::memcpy(&out, all + src * kSlotBytes, sizeof(T));
  return out;
}
unsigned ballot(unsigned mask, int predicate);
void syncwarp(unsigned mask);

// Tensor-core operations (the fragment layouts are in warp.cpp).
void ldmatrix_x4(uint32_t (&r)[4], const void* row_address, bool transpose);
void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool bf16);
void cp_async_16(void* dst, const void* src, bool valid);
void cp_async_commit();
void cp_async_wait(int pending_groups);

}  // namespace forge::simt
