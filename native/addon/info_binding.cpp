// Library facts: ABI version, thread count, CUDA availability.
#include "binding.hpp"

namespace forge::addon {

namespace {

Napi::Value info(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  Napi::Object out = Napi::Object::New(env);
  const char* reason = nullptr;
  int devices = forge_cuda_device_count(&reason);
  out.Set("abiVersion", forge_abi_version());
  out.Set("numThreads", forge_get_num_threads());
  out.Set("cudaCompiled", forge_cuda_compiled() != 0);
  out.Set("cudaDevices", devices);
  out.Set("cudaReason", reason ? reason : "");
  return out;
}

Napi::Value set_num_threads(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  int64_t n = int_arg(env, call[0], "threads", 0, 4096);
  forge_status status = forge_set_num_threads(static_cast<int>(n));
  if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
  return Napi::Number::New(env, forge_get_num_threads());
}

}  // namespace

void register_info(Napi::Env env, Napi::Object exports) {
  exports.Set("info", Napi::Function::New(env, info, "info"));
  exports.Set("setNumThreads", Napi::Function::New(env, set_num_threads, "setNumThreads"));
}

}  // namespace forge::addon
