// The optimizer kernels (forge_grad_sq_norm, forge_adamw_step).
//
//   gradSqNorm(grads, async) -> number                      sum of squares in float64
//   adamwStep(params, grads, m, v, step, gradScale, lr, beta1, beta2, eps, weightDecay, async) -> undefined
//
// params, m and v are updated in place (zero-copy: subarray views of one flat buffer work as they are).
#include <memory>

#include "binding.hpp"

namespace forge::addon {

namespace {

Napi::Value grad_sq_norm(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto grads = array_arg<float>(env, call[0], "grads");
  const bool async = bool_arg(env, call[1], "async");
  auto out = std::make_shared<double>(0.0);
  auto compute = [=]() { return forge_grad_sq_norm(static_cast<int64_t>(grads.length), grads.data, out.get()); };
  auto result = [=](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *out); };
  return run_kernel(env, async, {call[0]}, compute, result);
}

Napi::Value adamw_step(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto params = array_arg<float>(env, call[0], "params");
  const auto n = static_cast<int64_t>(params.length);
  auto grads = array_arg<float>(env, call[1], "grads", n);
  auto m = array_arg<float>(env, call[2], "m", n);
  auto v = array_arg<float>(env, call[3], "v", n);
  const int64_t step = int_arg(env, call[4], "step", 1, int64_t{1} << 53);
  const auto grad_scale = static_cast<float>(number_arg(env, call[5], "gradScale"));
  forge_adamw_options options{};
  options.lr = static_cast<float>(number_arg(env, call[6], "lr"));
  options.beta1 = static_cast<float>(number_arg(env, call[7], "beta1"));
  options.beta2 = static_cast<float>(number_arg(env, call[8], "beta2"));
  options.eps = static_cast<float>(number_arg(env, call[9], "eps"));
  options.weight_decay = static_cast<float>(number_arg(env, call[10], "weightDecay"));
  const bool async = bool_arg(env, call[11], "async");
  auto compute = [=]() {
    return forge_adamw_step(n, params.data, grads.data, m.data, v.data, step, grad_scale, &options);
  };
  auto result = [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
  return run_kernel(env, async, {call[0], call[1], call[2], call[3]}, compute, result);
}

}  // namespace

void register_optimizer(Napi::Env env, Napi::Object exports) {
  exports.Set("gradSqNorm", Napi::Function::New(env, grad_sq_norm, "gradSqNorm"));
  exports.Set("adamwStep", Napi::Function::New(env, adamw_step, "adamwStep"));
}

}  // namespace forge::addon
