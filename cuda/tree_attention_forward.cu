// forge_cuda_tree_attention_forward: tree attention (contract 2) on the GPU.
//
// F16 / BF16: the tensor-core kernel of attention/forward_mma.cuh; F32: the reference path of
// attention/warp_f32.cuh. Both walk only the key tiles some query of theirs can see, using the
// per-tile subtree_end bounds computed by a pre-pass into a stream-ordered temporary.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <type_traits>

#include "attention/forward_mma.cuh"
#include "attention/host.cuh"
#include "attention/warp_f32.cuh"
#include "common/check.cuh"
#include "common/dtype.cuh"
#include "common/launch.cuh"

namespace forge::cuda::attention {
namespace {

template <class T, int D>
forge_status launch_forward(const HostShape& s, const ForwardParams& p, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    FORGE_LAUNCH(grid_for(int64_t{s.n} * s.hq, kWarpRowsPerBlock), 32 * kWarpRowsPerBlock, 0,
                                    stream, tree_attention_forward_f32<D>)(p);
    FORGE_CUDA_CHECK_LAUNCH("tree_attention_forward_f32");
  } else {
    using Tiles = ForwardTiles<D>;
    auto kernel = tree_attention_forward_mma<T, D>;
    FORGE_CUDA_RETURN_IF(allow_shared_memory(kernel, Tiles::kSmemBytes, "tree_attention_forward_mma"));
    const dim3 grid((s.n + Tiles::kQueryTile - 1) / Tiles::kQueryTile, grid_heads(s.hq));
    FORGE_LAUNCH(grid, Tiles::kThreads, Tiles::kSmemBytes, stream, kernel)(p);
    FORGE_CUDA_CHECK_LAUNCH("tree_attention_forward_mma");
  }
  return FORGE_OK;
}

forge_status forward(const forge_attention_shape* shape, forge_dtype dtype, const void* q, const void* k,
                     const void* v, const int32_t* subtree_end, void* o, float* lse, void* stream_ptr) {
  HostShape s;
  FORGE_CUDA_RETURN_IF(check_call("forge_cuda_tree_attention_forward", shape, dtype,
                                  {{"q", q, 16}, {"k", k, 16}, {"v", v, 16}, {"subtree_end", subtree_end, 4},
                                   {"o", o, 16}, {"lse", lse, 4}},
                                  s));
  const cudaStream_t stream = as_stream(stream_ptr);
  StreamBuffer bounds(stream);
  ForwardParams p{};
  FORGE_CUDA_RETURN_IF(set_up(s, q, k, v, subtree_end, lse, stream, bounds, p));
  p.o = o;
  return dispatch_dtype("dtype", dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return s.dim == 64 ? launch_forward<T, 64>(s, p, stream) : launch_forward<T, 128>(s, p, stream);
  });
}

}  // namespace
}  // namespace forge::cuda::attention

extern "C" FORGE_API forge_status forge_cuda_tree_attention_forward(const forge_attention_shape* shape,
                                                                    forge_dtype dtype, const void* q, const void* k,
                                                                    const void* v, const int32_t* subtree_end,
                                                                    void* o, float* lse, void* stream) {
  return forge::guarded("forge_cuda_tree_attention_forward", [&] {
    return forge::cuda::attention::forward(shape, dtype, q, k, v, subtree_end, o, lse, stream);
  });
}
