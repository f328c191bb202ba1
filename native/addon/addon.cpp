// forge.node: registers each binding file's functions. Every function here calls the C ABI of
// libforge_kernels (forge.h); nothing below this layer knows about N-API.
#include "binding.hpp"

namespace {

Napi::Object init(Napi::Env env, Napi::Object exports) {
  forge::addon::register_info(env, exports);
  forge::addon::register_prefix_tree(env, exports);
  forge::addon::register_attention(env, exports);
  forge::addon::register_cispo(env, exports);
  forge::addon::register_model(env, exports);
  forge::addon::register_optimizer(env, exports);
  forge::addon::register_engine(env, exports);
  forge::addon::register_cuda(env, exports);
  forge::addon::register_cuda_attention(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(forge, init)
