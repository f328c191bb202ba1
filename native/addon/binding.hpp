// Shared pieces of the N-API layer: argument extraction with errors that name the argument, the
// forge_status -> JS error mapping, and the worker that runs a kernel off the event loop.
// The layer stays thin: the TypeScript wrappers validate first; these checks only make sure native
// code never touches memory it was not given.
#pragma once

#include <forge/forge.h>
#include <napi.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace forge::addon {

// Each binding file registers its functions on `exports`.
void register_info(Napi::Env env, Napi::Object exports);
void register_prefix_tree(Napi::Env env, Napi::Object exports);
void register_attention(Napi::Env env, Napi::Object exports);
void register_cispo(Napi::Env env, Napi::Object exports);
void register_model(Napi::Env env, Napi::Object exports);
void register_optimizer(Napi::Env env, Napi::Object exports);
void register_engine(Napi::Env env, Napi::Object exports);
void register_cuda(Napi::Env env, Napi::Object exports);            // device memory, CISPO, merge, gather/scatter
void register_cuda_attention(Napi::Env env, Napi::Object exports);  // device tree attention

// Sets each function on `exports` under its name (the name the function reports, too).
struct NamedFunction {
  const char* name;
  Napi::Function::Callback callback;
};
inline void export_functions(Napi::Env env, Napi::Object exports, std::initializer_list<NamedFunction> functions) {
  for (const NamedFunction& f : functions) exports.Set(f.name, Napi::Function::New(env, f.callback, f.name));
}

// Throws a JS TypeError with `code` set (C++ exceptions are on in the addon).
[[noreturn]] void throw_type_error(Napi::Env env, const std::string& message);
[[noreturn]] void throw_range_error(Napi::Env env, const std::string& message);

// Turns a failed status and its message into a JS error: RangeError for invalid/out-of-range/non-finite
// input, Error otherwise; `code` is the status name ("FORGE_ERR_OUT_OF_RANGE").
Napi::Error status_error(Napi::Env env, forge_status status, const std::string& message);

template <class T> struct TypedArrayTraits;
template <> struct TypedArrayTraits<float> { static constexpr napi_typedarray_type type = napi_float32_array; static constexpr const char* name = "Float32Array"; };
template <> struct TypedArrayTraits<int32_t> { static constexpr napi_typedarray_type type = napi_int32_array; static constexpr const char* name = "Int32Array"; };
template <> struct TypedArrayTraits<uint8_t> { static constexpr napi_typedarray_type type = napi_uint8_array; static constexpr const char* name = "Uint8Array"; };
template <> struct TypedArrayTraits<double> { static constexpr napi_typedarray_type type = napi_float64_array; static constexpr const char* name = "Float64Array"; };

// A zero-copy view of a TypedArray argument. `expected` < 0 accepts any length.
template <class T>
struct ArrayArg {
  T* data = nullptr;
  size_t length = 0;
};

template <class T>
ArrayArg<T> array_arg(Napi::Env env, Napi::Value value, const char* name, int64_t expected = -1) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != TypedArrayTraits<T>::type)
    throw_type_error(env, std::string(name) + ": expected a " + TypedArrayTraits<T>::name);
  auto array = value.As<Napi::TypedArrayOf<T>>();
  if (expected >= 0 && static_cast<int64_t>(array.ElementLength()) != expected)
    throw_range_error(env, std::string(name) + ": expected length " + std::to_string(expected) + ", got " +
                               std::to_string(array.ElementLength()));
  return {array.Data(), array.ElementLength()};
}

// Optional TypedArray: undefined/null gives an empty view (data == nullptr).
template <class T>
ArrayArg<T> optional_array_arg(Napi::Env env, Napi::Value value, const char* name, int64_t expected = -1) {
  if (value.IsUndefined() || value.IsNull()) return {};
  return array_arg<T>(env, value, name, expected);
}

int64_t int_arg(Napi::Env env, Napi::Value value, const char* name, int64_t min, int64_t max);
double number_arg(Napi::Env env, Napi::Value value, const char* name);
bool bool_arg(Napi::Env env, Napi::Value value, const char* name);

// A device address: a BigInt (lib/device.ts's DeviceTensor addresses), as a T*; 0n is NULL, which the
// C ABI reports naming the argument. With `optional`, undefined / null give NULL too.
template <class T = void>
T* device_pointer_arg(Napi::Env env, Napi::Value value, const char* name, bool optional = false) {
  if (optional && (value.IsUndefined() || value.IsNull())) return nullptr;
  if (!value.IsBigInt()) throw_type_error(env, std::string(name) + ": expected a device address (bigint)");
  bool lossless = false;
  const uint64_t address = value.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) throw_range_error(env, std::string(name) + ": not a 64-bit device address");
  return static_cast<T*>(reinterpret_cast<void*>(static_cast<uintptr_t>(address)));
}

// The policy-loss options as every loss binding takes them: mode, epsLow, epsHigh, normalizer in
// call[first .. first + 3]; the C ABI checks the values.
inline forge_cispo_options cispo_options_arg(Napi::Env env, const Napi::CallbackInfo& call, size_t first) {
  forge_cispo_options options{};
  options.mode = static_cast<forge_pg_mode>(int_arg(env, call[first], "mode", 0, 2));
  options.eps_low = static_cast<float>(number_arg(env, call[first + 1], "epsLow"));
  options.eps_high = static_cast<float>(number_arg(env, call[first + 2], "epsHigh"));
  options.normalizer = number_arg(env, call[first + 3], "normalizer");
  return options;
}

// A nano policy config object { vocabSize, dim, numLayers, numHeads, numKvHeads, headDim, ffnDim,
// tiedEmbeddings, ropeTheta, normEps } (as lib/model/policy.ts passes it); the C ABI checks the values.
forge_model_config config_arg(Napi::Env env, Napi::Value value);

// The CISPO statistics as a JS object (lib/cispo.ts's CispoStats).
Napi::Object stats_object(Napi::Env env, const forge_cispo_stats& s);

// Throws the JS error of a failed status (with forge_last_error's message); returns on FORGE_OK.
void check(Napi::Env env, forge_status status);

// Runs `compute` (a kernel call returning forge_status) either now, or on a libuv worker thread when
// `async` is true. On success `result` builds the JS value on the main thread; the sync form returns
// it, the async form resolves a promise with it. `keep_alive` holds the JS objects (input and output
// arrays) whose memory the kernel reads or writes, so the GC cannot free them while it runs.
Napi::Value run_kernel(Napi::Env env, bool async, std::vector<Napi::Value> keep_alive,
                       std::function<forge_status()> compute, std::function<Napi::Value(Napi::Env)> result);

}  // namespace forge::addon
