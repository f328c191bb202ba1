// The CUDA backend for JavaScript (forge.h "CUDA backend"): device discovery, device memory handled
// as BigInt addresses (lib/device.ts wraps them in DeviceTensor), copies, dtype conversion and the
// device kernels. Every kernel call here is followed by forge_cuda_synchronize, so the JS call returns
// with the work done and any kernel error reported with its code. lib/device.ts validates shapes and
// dtypes first; the C ABI re-checks everything (pointer kinds included).
//
//   cudaDevices() -> { count, reason, devices: [{ index, name, major, minor, multiprocessors,
//                      totalMemory, freeMemory }] }
//   cudaMalloc(bytes) -> bigint (0n for 0 bytes)          cudaFree(ptr)
//   cudaUpload(ptr, typedArray)                            cudaDownload(ptr, typedArray)
//   cudaConvert(n, srcDtype, src, dstDtype, dst)
//   cudaGather(dtype, values, numNodes, channels, nodeOf, numPositions, out)
//   cudaScatter(values, numPositions, channels, nodeOf, numNodes, out)
//   cudaMergeToTree(dtype, values, numPositions, channels, nodeOf, numNodes, out)
//   cudaMergeStates(rows, heads, headDim, oA, lseA, oB, lseB, oOut, lseOut)
//   cudaMergeStatesCsr(rows, heads, headDim, offsets, numStates, oIn, lseIn, oOut, lseOut)
//   cudaCispoLoss(dtype, rows, vocab, logits, numTerms, node, target, oldLogprob, advantage, mode,
//                 epsLow, epsHigh, normalizer, dlogits | null, logprobs | null) -> { loss, stats }
#include <string>

#include "binding.hpp"

namespace forge::addon {

namespace {

constexpr int64_t kMaxCount = int64_t{1} << 52;  // sizes and counts: exact as JS numbers
constexpr int64_t kInt32Max = 2147483647;

Napi::Value address(Napi::Env env, const void* ptr) {
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)));
}

// The bytes of any TypedArray argument.
struct Bytes {
  void* data;
  size_t length;
};

Bytes bytes_arg(Napi::Env env, Napi::Value value, const char* name) {
  if (!value.IsTypedArray()) throw_type_error(env, std::string(name) + ": expected a TypedArray");
  auto array = value.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data());
  return {base ? base + array.ByteOffset() : nullptr, array.ByteLength()};
}

forge_dtype dtype_arg(Napi::Env env, Napi::Value value, const char* name) {
  return static_cast<forge_dtype>(int_arg(env, value, name, 0, 2));
}

// A kernel launch followed by a wait, so errors inside the kernel come back from this call.
void check_and_wait(Napi::Env env, forge_status status) {
  check(env, status);
  check(env, forge_cuda_synchronize(nullptr));
}

Napi::Value devices(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const char* reason = nullptr;
  const int count = forge_cuda_device_count(&reason);
  Napi::Object out = Napi::Object::New(env);
  Napi::Array list = Napi::Array::New(env);
  std::string why = reason ? reason : "";
  for (int i = 0; i < count; ++i) {
    forge_cuda_device_props props{};
    const forge_status status = forge_cuda_get_device_props(i, &props);
    if (status != FORGE_OK) {  // listed but unusable (e.g. out of memory creating its context)
      why = forge_last_error();
      continue;
    }
    Napi::Object d = Napi::Object::New(env);
    d.Set("index", i);
    d.Set("name", props.name);
    d.Set("major", props.major);
    d.Set("minor", props.minor);
    d.Set("multiprocessors", props.multiprocessors);
    d.Set("totalMemory", static_cast<double>(props.total_memory));
    d.Set("freeMemory", static_cast<double>(props.free_memory));
    list.Set(list.Length(), d);
  }
  out.Set("count", list.Length());
  out.Set("reason", list.Length() > 0 ? std::string() : why);
  out.Set("devices", list);
  return out;
}

Napi::Value malloc_(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const auto bytes = static_cast<size_t>(int_arg(env, call[0], "bytes", 0, int64_t{1} << 50));
  void* ptr = nullptr;
  check(env, forge_cuda_malloc(bytes, &ptr));
  return address(env, ptr);
}

Napi::Value free_(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  check(env, forge_cuda_free(device_pointer_arg(env, call[0], "ptr", true)));
  return env.Undefined();
}

Napi::Value upload(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  void* dst = device_pointer_arg(env, call[0], "ptr");
  const Bytes src = bytes_arg(env, call[1], "data");
  check(env, forge_cuda_memcpy_h2d(dst, src.data, src.length, nullptr));
  return env.Undefined();
}

Napi::Value download(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const void* src = device_pointer_arg(env, call[0], "ptr");
  const Bytes dst = bytes_arg(env, call[1], "out");
  check(env, forge_cuda_memcpy_d2h(dst.data, src, dst.length, nullptr));
  return env.Undefined();
}

Napi::Value convert(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const int64_t n = int_arg(env, call[0], "n", 0, kMaxCount);
  check_and_wait(env, forge_cuda_convert(n, dtype_arg(env, call[1], "srcDtype"),
                                         device_pointer_arg(env, call[2], "src"), dtype_arg(env, call[3], "dstDtype"),
                                         device_pointer_arg(env, call[4], "dst"), nullptr));
  return env.Undefined();
}

Napi::Value gather(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const forge_dtype dtype = dtype_arg(env, call[0], "dtype");
  const void* values = device_pointer_arg(env, call[1], "nodeValues");
  const int64_t nodes = int_arg(env, call[2], "numNodes", 0, kMaxCount);
  const int64_t channels = int_arg(env, call[3], "channels", 0, kMaxCount);
  const auto* node_of = device_pointer_arg<const int32_t>(env, call[4], "nodeOf");
  const int64_t positions = int_arg(env, call[5], "numPositions", 0, kMaxCount);
  void* out = device_pointer_arg(env, call[6], "out");
  check_and_wait(env, forge_cuda_gather_to_samples(dtype, values, nodes, channels, node_of, positions, out, nullptr));
  return env.Undefined();
}

Napi::Value scatter(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const auto* values = device_pointer_arg<const float>(env, call[0], "sampleValues");
  const int64_t positions = int_arg(env, call[1], "numPositions", 0, kMaxCount);
  const int64_t channels = int_arg(env, call[2], "channels", 0, kMaxCount);
  const auto* node_of = device_pointer_arg<const int32_t>(env, call[3], "nodeOf");
  const int64_t nodes = int_arg(env, call[4], "numNodes", 0, kMaxCount);
  auto* out = device_pointer_arg<float>(env, call[5], "out");
  check_and_wait(env, forge_cuda_scatter_from_samples(values, positions, channels, node_of, nodes, out, nullptr));
  return env.Undefined();
}

Napi::Value merge_to_tree(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const forge_dtype dtype = dtype_arg(env, call[0], "dtype");
  const void* values = device_pointer_arg(env, call[1], "values");
  const int64_t positions = int_arg(env, call[2], "numPositions", 0, kMaxCount);
  const int64_t channels = int_arg(env, call[3], "channels", 0, kMaxCount);
  const auto* node_of = device_pointer_arg<const int32_t>(env, call[4], "nodeOf");
  const int64_t nodes = int_arg(env, call[5], "numNodes", 0, kMaxCount);
  void* out = device_pointer_arg(env, call[6], "out");
  check_and_wait(env, forge_cuda_merge_to_tree(dtype, values, positions, channels, node_of, nodes, out, nullptr));
  return env.Undefined();
}

// rows, numHeads, headDim in call[0 .. 2]: the shape both merge calls take.
struct MergeShape {
  int64_t rows;
  int32_t heads, dim;
};

MergeShape merge_shape_arg(Napi::Env env, const Napi::CallbackInfo& call) {
  return {int_arg(env, call[0], "rows", 0, kMaxCount),
          static_cast<int32_t>(int_arg(env, call[1], "numHeads", 0, kInt32Max)),
          static_cast<int32_t>(int_arg(env, call[2], "headDim", 0, kInt32Max))};
}

Napi::Value merge_states(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const MergeShape m = merge_shape_arg(env, call);
  auto f = [&](int i, const char* name) { return device_pointer_arg<float>(env, call[i], name); };
  // The call waits for its own flag read-back (see forge.h), so no extra synchronisation.
  check(env, forge_cuda_merge_states(m.rows, m.heads, m.dim, f(3, "a.o"), f(4, "a.lse"), f(5, "b.o"), f(6, "b.lse"),
                                     f(7, "out.o"), f(8, "out.lse"), nullptr));
  return env.Undefined();
}

Napi::Value merge_states_csr(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const MergeShape m = merge_shape_arg(env, call);
  const auto* offsets = device_pointer_arg<const int64_t>(env, call[3], "offsets");
  const int64_t states = int_arg(env, call[4], "numStates", 0, kMaxCount);
  auto f = [&](int i, const char* name) { return device_pointer_arg<float>(env, call[i], name); };
  check(env, forge_cuda_merge_states_csr(m.rows, m.heads, m.dim, offsets, states, f(5, "states.o"),
                                         f(6, "states.lse"), f(7, "out.o"), f(8, "out.lse"), nullptr));
  return env.Undefined();
}

Napi::Value cispo_loss(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const forge_dtype dtype = dtype_arg(env, call[0], "dtype");
  const int64_t rows = int_arg(env, call[1], "numRows", 0, kMaxCount);
  const int64_t vocab = int_arg(env, call[2], "vocabSize", 1, kInt32Max);
  const void* logits = device_pointer_arg(env, call[3], "logits");
  const int64_t terms = int_arg(env, call[4], "numTerms", 0, kInt32Max);
  const auto* node = device_pointer_arg<const int32_t>(env, call[5], "terms.node");
  const auto* target = device_pointer_arg<const int32_t>(env, call[6], "terms.target");
  const auto* old_logprob = device_pointer_arg<const float>(env, call[7], "terms.oldLogprob");
  const auto* advantage = device_pointer_arg<const float>(env, call[8], "terms.advantage");
  const forge_cispo_options options = cispo_options_arg(env, call, 9);
  void* dlogits = device_pointer_arg(env, call[13], "dlogits", true);
  auto* logprobs = device_pointer_arg<float>(env, call[14], "logprobs", true);
  forge_cispo_stats stats{};
  // With stats the call waits for the stream itself and reports non-finite logits.
  check(env, forge_cuda_cispo_loss(dtype, rows, vocab, logits, terms, node, target, old_logprob, advantage, &options,
                                   dlogits, logprobs, &stats, nullptr));
  Napi::Object out = Napi::Object::New(env);
  out.Set("loss", stats.loss);
  out.Set("stats", stats_object(env, stats));
  return out;
}

}  // namespace

void register_cuda(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports,
                   {{"cudaDevices", devices},
                    {"cudaMalloc", malloc_},
                    {"cudaFree", free_},
                    {"cudaUpload", upload},
                    {"cudaDownload", download},
                    {"cudaConvert", convert},
                    {"cudaGather", gather},
                    {"cudaScatter", scatter},
                    {"cudaMergeToTree", merge_to_tree},
                    {"cudaMergeStates", merge_states},
                    {"cudaMergeStatesCsr", merge_states_csr},
                    {"cudaCispoLoss", cispo_loss}});
}

}  // namespace forge::addon
