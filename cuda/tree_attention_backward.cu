// forge_cuda_tree_attention_backward: gradients of tree attention (contract 2) on the GPU.
//
// 1. Delta = rowsum(dO * O) (float32, a temporary [N, Hq]) and the key-tile bounds (tree_tiles.cuh).
// 2. F16 / BF16: one tensor-core kernel over key tiles (attention/backward_mma.cuh) writes dK, dV and
//    adds dQ into a zeroed float32 temporary [N, Hq, D] with atomics; a last kernel scales it into dq.
//    F32: the reference path (attention/warp_f32.cuh), one kernel for dQ and one for dK / dV.
// The temporaries are allocated and freed on the stream (forge's pool, common/pool.cuh; cudaFreeAsync).
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <type_traits>

#include "attention/backward_mma.cuh"
#include "attention/backward_prep.cuh"
#include "attention/host.cuh"
#include "attention/warp_f32.cuh"
#include "common/check.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"

namespace forge::cuda::attention {
namespace {

template <class T, int D>
forge_status launch_backward(const HostShape& s, BackwardParams p, void* dq, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    FORGE_LAUNCH(grid_for(int64_t{s.n} * s.hq, kWarpRowsPerBlock), 32 * kWarpRowsPerBlock, 0, stream, tree_attention_dq_f32<D>)(
        p, static_cast<float*>(dq));
    FORGE_CUDA_CHECK_LAUNCH("tree_attention_dq_f32");
    FORGE_LAUNCH(grid_for(int64_t{s.n} * s.hkv, kWarpRowsPerBlock), 32 * kWarpRowsPerBlock, 0,
                                 stream, tree_attention_dkdv_f32<D>)(p);
    FORGE_CUDA_CHECK_LAUNCH("tree_attention_dkdv_f32");
  } else {
    using Tiles = BackwardTiles<D>;
    StreamBuffer dq_acc(stream);
    const size_t acc_bytes = sizeof(float) * static_cast<size_t>(s.q_elems());
    FORGE_CUDA_RETURN_IF(dq_acc.allocate(acc_bytes, "dQ accumulator"));
    FORGE_CUDA_TRY(cudaMemsetAsync(dq_acc.as<float>(), 0, acc_bytes, stream), "dQ accumulator: cudaMemsetAsync");
    p.dq_acc = dq_acc.as<float>();
    auto kernel = tree_attention_backward_mma<T, D>;
    FORGE_CUDA_RETURN_IF(allow_shared_memory(kernel, Tiles::kSmemBytes, "tree_attention_backward_mma"));
    FORGE_LAUNCH(dim3(s.key_tiles(), grid_heads(s.hkv)), Tiles::kThreads, Tiles::kSmemBytes, stream, kernel)(p);
    FORGE_CUDA_CHECK_LAUNCH("tree_attention_backward_mma");
    constexpr int kThreads = 256;
    FORGE_LAUNCH(grid_for(s.q_elems(), kThreads * 4), kThreads, 0, stream, scale_convert_kernel<T>)(
        dq_acc.as<float>(), s.q_elems(), s.scale, static_cast<T*>(dq));
    FORGE_CUDA_CHECK_LAUNCH("scale_convert_kernel");
  }
  return FORGE_OK;
}

forge_status backward(const forge_attention_shape* shape, forge_dtype dtype, const void* q, const void* k,
                      const void* v, const int32_t* subtree_end, const void* o, const float* lse, const void* d_o,
                      void* dq, void* dk, void* dv, void* stream_ptr) {
  HostShape s;
  FORGE_CUDA_RETURN_IF(check_call("forge_cuda_tree_attention_backward", shape, dtype,
                                  {{"q", q, 16}, {"k", k, 16}, {"v", v, 16}, {"subtree_end", subtree_end, 4},
                                   {"o", o, 16}, {"lse", lse, 4}, {"d_o", d_o, 16}, {"dq", dq, 16}, {"dk", dk, 16},
                                   {"dv", dv, 16}},
                                  s));
  const cudaStream_t stream = as_stream(stream_ptr);
  StreamBuffer bounds(stream), delta(stream);
  BackwardParams p{};
  FORGE_CUDA_RETURN_IF(set_up(s, q, k, v, subtree_end, lse, stream, bounds, p));
  const int64_t rows = int64_t{s.n} * s.hq;
  FORGE_CUDA_RETURN_IF(delta.allocate(sizeof(float) * static_cast<size_t>(rows), "Delta"));
  p.delta = delta.as<float>();
  p.d_o = d_o;
  p.dk = dk;
  p.dv = dv;
  return dispatch_dtype("dtype", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int kThreads = 256;
    FORGE_LAUNCH(grid_for(rows, kThreads / 32), kThreads, 0, stream, attention_delta_kernel<T>)(
        static_cast<const T*>(o), static_cast<const T*>(d_o), rows, s.dim, delta.as<float>());
    FORGE_CUDA_CHECK_LAUNCH("attention_delta_kernel");
    return s.dim == 64 ? launch_backward<T, 64>(s, p, dq, stream) : launch_backward<T, 128>(s, p, dq, stream);
  });
}

}  // namespace
}  // namespace forge::cuda::attention

extern "C" FORGE_API forge_status forge_cuda_tree_attention_backward(
    const forge_attention_shape* shape, forge_dtype dtype, const void* q, const void* k, const void* v,
    const int32_t* subtree_end, const void* o, const float* lse, const void* d_o, void* dq, void* dk, void* dv,
    void* stream) {
  return forge::guarded("forge_cuda_tree_attention_backward", [&] {
    return forge::cuda::attention::backward(shape, dtype, q, k, v, subtree_end, o, lse, d_o, dq, dk, dv, stream);
  });
}
