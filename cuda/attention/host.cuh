// Host side of the tree-attention entry points: argument checks (shape, dtype, pointers), stream-
// ordered temporaries, the key-tile bounds pre-pass, the parameters both directions share and launch
// helpers. Each entry point reads: check_call, set_up, dispatch.
//
// Order of the checks: everything that needs no GPU first (shape, dtype, NULL), so a bad call says
// what is wrong on any machine; then the device, then each pointer's kind and alignment.
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "../common/check.cuh"
#include "../common/dtype.cuh"
#include "../common/launch.cuh"
#include "../common/pool.cuh"
#include "params.cuh"
#include "tree_tiles.cuh"

namespace forge::cuda::attention {

struct HostShape {
  int n = 0, hq = 0, hkv = 0, group = 0, dim = 0;
  float scale = 0.0f;
  int key_tiles() const { return (n + kKeyTile - 1) / kKeyTile; }
  int64_t q_elems() const { return int64_t{n} * hq * dim; }
};

// The rules of forge_attention_shape, plus what the device kernels serve (D = 64 or 128).
inline forge_status check_shape(const forge_attention_shape* shape, forge_dtype dtype, HostShape& out) {
  if (!shape) return fail(FORGE_ERR_INVALID_ARGUMENT, "shape: null pointer");
  const forge_attention_shape& s = *shape;
  FORGE_CUDA_RETURN_IF(check_dtype("dtype", dtype));
  // Tile starts are int: N stays below 2^31 with room for the last tile's rows.
  if (s.num_nodes < 1 || s.num_nodes > INT32_MAX - 2 * kKeyTile)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "shape.num_nodes: expected an integer in [1, 2^31 - 128], got " + std::to_string(s.num_nodes));
  if (s.num_heads < 1 || s.num_heads >= (1 << 21))
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_heads: expected an integer in [1, 2^21), got " +
                                                std::to_string(s.num_heads));
  if (s.num_kv_heads < 1 || s.num_heads % s.num_kv_heads != 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_kv_heads: expected a divisor of num_heads (" +
                                                std::to_string(s.num_heads) + "), got " + std::to_string(s.num_kv_heads));
  if (s.head_dim < 1)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.head_dim: expected >= 1, got " + std::to_string(s.head_dim));
  if (s.head_dim != 64 && s.head_dim != 128)
    return fail(FORGE_ERR_UNSUPPORTED, "shape.head_dim: the CUDA tree-attention kernels serve 64 or 128, got " +
                                           std::to_string(s.head_dim));
  if (std::isinf(s.scale))
    return fail(FORGE_ERR_NON_FINITE, "shape.scale: expected a finite number (<= 0 or NaN selects 1/sqrt(D)), got " +
                                          std::string(s.scale > 0 ? "inf" : "-inf"));
  out.n = static_cast<int>(s.num_nodes);
  out.hq = s.num_heads;
  out.hkv = s.num_kv_heads;
  out.group = s.num_heads / s.num_kv_heads;
  out.dim = s.head_dim;
  out.scale = s.scale > 0.0f ? s.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  return FORGE_OK;
}

struct NamedPointer {
  const char* name;
  const void* ptr;
  unsigned align;  // bytes: 16 for tensors (rows travel as 16-byte vectors), 4 for lse / subtree_end
};

// NULL checks (no GPU needed), then the device, then each pointer's kind and alignment (cudaMalloc'd
// buffers, and rows of D = 64 or 128 elements inside them, always are 16-byte aligned).
inline forge_status check_pointers(const char* fn, std::initializer_list<NamedPointer> pointers) {
  for (const NamedPointer& p : pointers)
    if (!p.ptr) return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(p.name) + ": NULL where a device pointer is required");
  FORGE_CUDA_RETURN_IF(require_device(fn));
  for (const NamedPointer& p : pointers) {
    FORGE_CUDA_RETURN_IF(require_device_pointer(p.name, p.ptr));
    if (reinterpret_cast<uintptr_t>(p.ptr) % p.align != 0)
      return fail(FORGE_ERR_INVALID_ARGUMENT,
                  std::string(p.name) + ": expected a " + std::to_string(p.align) + "-byte aligned device pointer");
  }
  return FORGE_OK;
}

// A temporary device buffer allocated on the stream; its release is enqueued on the same stream when
// the guard leaves scope, i.e. after every kernel of the call that uses it.
class StreamBuffer {
 public:
  explicit StreamBuffer(cudaStream_t stream) : stream_(stream) {}
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  ~StreamBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }

  forge_status allocate(size_t bytes, const char* what) {
    cudaError_t err = temporary_malloc(&ptr_, bytes, stream_);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      ptr_ = nullptr;
      return fail(FORGE_ERR_OUT_OF_MEMORY, std::string(what) + ": cannot allocate " + std::to_string(bytes) +
                                               " bytes of device memory");
    }
    if (err != cudaSuccess) ptr_ = nullptr;
    return check(err, what);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  cudaStream_t stream_;
  void* ptr_ = nullptr;
};

// Blocks for a grid-stride loop over `items` handled `per_block` at a time.
inline unsigned grid_for(int64_t items, int per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 20));
}
// gridDim.y is at most 65535; kernels loop over the heads past it.
inline unsigned grid_heads(int heads) { return static_cast<unsigned>(std::min(heads, 65535)); }

// Allocates and fills the per-key-tile bounds (tree_tiles.cuh) on the stream.
inline forge_status tile_bounds(const HostShape& s, const int32_t* subtree_end, cudaStream_t stream,
                                StreamBuffer& buffer) {
  FORGE_CUDA_RETURN_IF(buffer.allocate(sizeof(TileBounds) * static_cast<size_t>(s.key_tiles()), "tile bounds"));
  constexpr int kThreads = 256;
  FORGE_LAUNCH(grid_for(s.key_tiles(), kThreads / 32), kThreads, 0, stream, tile_bounds_kernel<kKeyTile>)(subtree_end, s.n, s.key_tiles(),
                                                                                         buffer.as<TileBounds>());
  FORGE_CUDA_CHECK_LAUNCH("tile_bounds_kernel");
  return FORGE_OK;
}

// The checks both entry points share: the shape and dtype, then the pointers (`fn` names the call in
// the "no usable GPU" error).
inline forge_status check_call(const char* fn, const forge_attention_shape* shape, forge_dtype dtype,
                               std::initializer_list<NamedPointer> pointers, HostShape& s) {
  FORGE_CUDA_RETURN_IF(check_shape(shape, dtype, s));
  return check_pointers(fn, pointers);
}

// The set-up both entry points share: the key-tile bounds on the stream (held by `bounds` until the
// call's kernels are done) and the fields every kernel reads. Params is ForwardParams or
// BackwardParams (lse is the forward's output and the backward's input).
template <class Params, class Lse>
forge_status set_up(const HostShape& s, const void* q, const void* k, const void* v, const int32_t* subtree_end,
                    Lse* lse, cudaStream_t stream, StreamBuffer& bounds, Params& p) {
  FORGE_CUDA_RETURN_IF(tile_bounds(s, subtree_end, stream, bounds));
  p.q = q;
  p.k = k;
  p.v = v;
  p.subtree_end = subtree_end;
  p.bounds = bounds.as<TileBounds>();
  p.lse = lse;
  p.n = s.n;
  p.hq = s.hq;
  p.hkv = s.hkv;
  p.group = s.group;
  p.scale = s.scale;
  p.scale_log2 = static_cast<float>(s.scale * 1.4426950408889634);  // log2(e)
  return FORGE_OK;
}

// Raises a kernel's dynamic shared-memory limit (needed past 48 KB) before its launch.
template <class Kernel>
forge_status allow_shared_memory(Kernel kernel, size_t bytes, const char* what) {
  return check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
               what);
}

}  // namespace forge::cuda::attention
