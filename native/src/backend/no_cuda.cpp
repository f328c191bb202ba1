// The CUDA entry points of a build without cuda/ (FORGE_CUDA=off, or no nvcc found): discovery says
// there is no GPU, every other forge_cuda_* call is FORGE_ERR_UNSUPPORTED naming the function, and
// forge_cuda_free is a no-op (nothing can have been allocated).
#include <forge/forge.h>

#include <string>

#include "common/error.hpp"

namespace {

forge_status unsupported(const char* fn) {
  return forge::fail(FORGE_ERR_UNSUPPORTED,
                     std::string(fn) + ": this build of forge-rl has no CUDA (built with FORGE_CUDA=off or without nvcc)");
}

}  // namespace

extern "C" {

FORGE_API int forge_cuda_compiled(void) { return 0; }

FORGE_API int forge_cuda_device_count(const char** reason) {
  if (reason) *reason = "forge-rl was built without CUDA (FORGE_CUDA=off or nvcc not found)";
  return 0;
}

FORGE_API forge_status forge_cuda_get_device_props(int32_t, forge_cuda_device_props*) {
  return unsupported("forge_cuda_get_device_props");
}
FORGE_API forge_status forge_cuda_set_device(int32_t) { return unsupported("forge_cuda_set_device"); }
FORGE_API forge_status forge_cuda_malloc(size_t, void** out) {
  if (out) *out = nullptr;
  return unsupported("forge_cuda_malloc");
}
FORGE_API forge_status forge_cuda_free(void*) {
  forge::clear_error();
  return FORGE_OK;
}
FORGE_API forge_status forge_cuda_memcpy_h2d(void*, const void*, size_t, void*) {
  return unsupported("forge_cuda_memcpy_h2d");
}
FORGE_API forge_status forge_cuda_memcpy_d2h(void*, const void*, size_t, void*) {
  return unsupported("forge_cuda_memcpy_d2h");
}
FORGE_API forge_status forge_cuda_memcpy_d2d(void*, const void*, size_t, void*) {
  return unsupported("forge_cuda_memcpy_d2d");
}
FORGE_API forge_status forge_cuda_memset(void*, int, size_t, void*) { return unsupported("forge_cuda_memset"); }
FORGE_API forge_status forge_cuda_synchronize(void*) { return unsupported("forge_cuda_synchronize"); }
FORGE_API forge_status forge_cuda_convert(int64_t, forge_dtype, const void*, forge_dtype, void*, void*) {
  return unsupported("forge_cuda_convert");
}

FORGE_API forge_status forge_cuda_gather_to_samples(forge_dtype, const void*, int64_t, int64_t, const int32_t*, int64_t,
                                                    void*, void*) {
  return unsupported("forge_cuda_gather_to_samples");
}
FORGE_API forge_status forge_cuda_scatter_from_samples(const float*, int64_t, int64_t, const int32_t*, int64_t, float*,
                                                       void*) {
  return unsupported("forge_cuda_scatter_from_samples");
}
FORGE_API forge_status forge_cuda_merge_to_tree(forge_dtype, const void*, int64_t, int64_t, const int32_t*, int64_t, void*,
                                                void*) {
  return unsupported("forge_cuda_merge_to_tree");
}

FORGE_API forge_status forge_cuda_tree_attention_forward(const forge_attention_shape*, forge_dtype, const void*,
                                                         const void*, const void*, const int32_t*, void*, float*,
                                                         void*) {
  return unsupported("forge_cuda_tree_attention_forward");
}
FORGE_API forge_status forge_cuda_tree_attention_backward(const forge_attention_shape*, forge_dtype, const void*,
                                                          const void*, const void*, const int32_t*, const void*,
                                                          const float*, const void*, void*, void*, void*, void*) {
  return unsupported("forge_cuda_tree_attention_backward");
}
FORGE_API forge_status forge_cuda_merge_states(int64_t, int32_t, int32_t, const float*, const float*, const float*,
                                               const float*, float*, float*, void*) {
  return unsupported("forge_cuda_merge_states");
}
FORGE_API forge_status forge_cuda_merge_states_csr(int64_t, int32_t, int32_t, const int64_t*, int64_t, const float*,
                                                   const float*, float*, float*, void*) {
  return unsupported("forge_cuda_merge_states_csr");
}

FORGE_API forge_status forge_cuda_cispo_loss(forge_dtype, int64_t, int64_t, const void*, int64_t, const int32_t*,
                                             const int32_t*, const float*, const float*, const forge_cispo_options*,
                                             void*, float*, forge_cispo_stats*, void*) {
  return unsupported("forge_cuda_cispo_loss");
}

}  // extern "C"
