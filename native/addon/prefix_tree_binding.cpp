// N-API bindings of contract 1 (forge.h): prefixTreeBuild, gatherToSamples, scatterFromSamples,
// mergeToTree, treeValidate. lib/prefixTree.ts validates first; here only what memory safety needs is re-checked
// (array types and the lengths the C ABI cannot see), then the C ABI runs, synchronously or on a
// libuv worker when the last argument is true.
#include <limits>
#include <memory>

#include "binding.hpp"

namespace forge::addon {

namespace {

bool async_arg(const Napi::CallbackInfo& call, size_t index) {
  return call.Length() > index && call[index].ToBoolean().Value();
}

// Owns the native tree until the JS arrays are filled (the async form builds on a worker thread and
// exports on the main thread, where JS arrays can be allocated).
struct BuildState {
  std::vector<int64_t> offsets;
  forge_sample_batch batch{};
  forge_prefix_tree* tree = nullptr;
  ~BuildState() { forge_prefix_tree_free(tree); }
};

Napi::Value export_tree(Napi::Env env, const forge_prefix_tree* tree) {
  forge_prefix_tree_info info{};
  forge_status status = forge_prefix_tree_get_info(tree, &info);
  if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
  const auto N = static_cast<size_t>(info.num_nodes), G = static_cast<size_t>(info.num_segments),
             J = static_cast<size_t>(info.num_terms), T = static_cast<size_t>(info.input_tokens);
  Napi::Object out = Napi::Object::New(env);
  forge_prefix_tree_arrays arrays{};
  auto ints = [&](const char* name, size_t n, int32_t** slot) {
    auto a = Napi::Int32Array::New(env, n);
    *slot = a.Data();
    out.Set(name, a);
  };
  auto floats = [&](const char* name, size_t n, float** slot) {
    auto a = Napi::Float32Array::New(env, n);
    *slot = a.Data();
    out.Set(name, a);
  };
  ints("token", N, &arrays.token);
  ints("parent", N, &arrays.parent);
  ints("position", N, &arrays.position);
  ints("subtreeEnd", N, &arrays.subtree_end);
  ints("segmentOf", N, &arrays.segment_of);
  ints("segStart", G, &arrays.seg_start);
  ints("segLen", G, &arrays.seg_len);
  ints("segParent", G, &arrays.seg_parent);
  ints("termNode", J, &arrays.term_node);
  ints("termTarget", J, &arrays.term_target);
  floats("termOldLogprob", J, &arrays.term_old_logprob);
  floats("termAdvantage", J, &arrays.term_advantage);
  ints("termSample", J, &arrays.term_sample);
  ints("termPosition", J, &arrays.term_position);
  ints("termVersion", J, &arrays.term_version);
  ints("nodeOf", T, &arrays.node_of);
  status = forge_prefix_tree_export(tree, &arrays);
  if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
  out.Set("numNodes", Napi::Number::New(env, static_cast<double>(info.num_nodes)));
  out.Set("numSegments", Napi::Number::New(env, static_cast<double>(info.num_segments)));
  out.Set("numTerms", Napi::Number::New(env, static_cast<double>(info.num_terms)));
  out.Set("inputTokens", Napi::Number::New(env, static_cast<double>(info.input_tokens)));
  out.Set("numSamples", Napi::Number::New(env, info.num_samples));
  out.Set("maxDepth", Napi::Number::New(env, info.max_depth));
  return out;
}

// prefixTreeBuild(tokens: Int32Array, offsets: Int32Array [S+1], trainable: Uint8Array | null,
//   oldLogprobs: Float32Array | null, advantages: Float32Array | null, sampleAdvantages: Float32Array | null,
//   versions: Int32Array | null, vocabSize: number, async: boolean)
Napi::Value prefix_tree_build(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto tokens = array_arg<int32_t>(env, call[0], "tokens");
  auto offsets = array_arg<int32_t>(env, call[1], "offsets");
  if (offsets.length < 2 || offsets.length - 1 > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    throw_range_error(env, "offsets: expected S + 1 entries with 1 <= S < 2^31, got " +
                               std::to_string(offsets.length));
  const int64_t S = static_cast<int64_t>(offsets.length) - 1;
  const int64_t T = static_cast<int64_t>(tokens.length);
  // The C ABI reads T = offsets[S] tokens: that must be the array's length.
  if (offsets.data[S] != T)
    throw_range_error(env, "offsets[" + std::to_string(S) + "]: expected tokens.length = " + std::to_string(T) +
                               ", got " + std::to_string(offsets.data[S]));
  auto trainable = optional_array_arg<uint8_t>(env, call[2], "trainable", T);
  auto old_logprobs = optional_array_arg<float>(env, call[3], "oldLogprobs", T);
  auto advantages = optional_array_arg<float>(env, call[4], "advantages", T);
  auto sample_advantages = optional_array_arg<float>(env, call[5], "sampleAdvantages", S);
  auto versions = optional_array_arg<int32_t>(env, call[6], "versions", S);
  const int64_t vocab_size = int_arg(env, call[7], "vocabSize", std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<int32_t>::max());

  auto state = std::make_shared<BuildState>();
  state->offsets.assign(offsets.data, offsets.data + offsets.length);
  forge_sample_batch& b = state->batch;
  b.num_samples = static_cast<int32_t>(S);
  b.offsets = state->offsets.data();
  b.tokens = tokens.data;
  b.trainable = trainable.data;
  b.old_logprobs = old_logprobs.data;
  b.advantages = advantages.data;
  b.sample_advantages = sample_advantages.data;
  b.versions = versions.data;
  b.vocab_size = static_cast<int32_t>(vocab_size);

  std::vector<Napi::Value> keep_alive;
  for (size_t i = 0; i <= 6; ++i)
    if (call[i].IsObject()) keep_alive.push_back(call[i]);
  return run_kernel(
      env, async_arg(call, 8), std::move(keep_alive),
      [state] { return forge_prefix_tree_build(&state->batch, &state->tree); },
      [state](Napi::Env env) { return export_tree(env, state->tree); });
}

// gatherToSamples(nodeValues: Float32Array [N*C], numNodes, channels, nodeOf: Int32Array [T], async)
//   -> Float32Array [T*C]
Napi::Value gather_to_samples(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const int64_t num_nodes = int_arg(env, call[1], "numNodes", 1, int64_t{1} << 31);
  const int64_t channels = int_arg(env, call[2], "channels", 1, int64_t{1} << 31);
  auto values = array_arg<float>(env, call[0], "nodeValues", num_nodes * channels);
  auto node_of = array_arg<int32_t>(env, call[3], "nodeOf");
  const int64_t T = static_cast<int64_t>(node_of.length);
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(T * channels));
  auto out_ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out));
  float* out_data = out.Data();
  return run_kernel(
      env, async_arg(call, 4), {call[0], call[3], out},
      [=] { return forge_gather_to_samples(values.data, num_nodes, channels, node_of.data, T, out_data); },
      [out_ref](Napi::Env) -> Napi::Value { return out_ref->Value(); });
}

// The samples -> tree calls: (values: Float32Array [T*C], channels, nodeOf: Int32Array [T], numNodes,
// async) -> Float32Array [N*C]. scatterFromSamples sums each node's positions (the gradient of a
// gather); mergeToTree takes the row of each node's first position (zeros without one).
using SamplesToTreeKernel = forge_status (*)(const float*, int64_t, int64_t, const int32_t*, int64_t, float*);

Napi::Value samples_to_tree(const Napi::CallbackInfo& call, const char* values_name, SamplesToTreeKernel kernel) {
  Napi::Env env = call.Env();
  const int64_t channels = int_arg(env, call[1], "channels", 1, int64_t{1} << 31);
  auto node_of = array_arg<int32_t>(env, call[2], "nodeOf");
  const int64_t T = static_cast<int64_t>(node_of.length);
  auto values = array_arg<float>(env, call[0], values_name, T * channels);
  const int64_t num_nodes = int_arg(env, call[3], "numNodes", 1, int64_t{1} << 31);
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(num_nodes * channels));
  auto out_ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out));
  float* out_data = out.Data();
  return run_kernel(
      env, async_arg(call, 4), {call[0], call[2], out},
      [=] { return kernel(values.data, T, channels, node_of.data, num_nodes, out_data); },
      [out_ref](Napi::Env) -> Napi::Value { return out_ref->Value(); });
}

Napi::Value scatter_from_samples(const Napi::CallbackInfo& call) {
  return samples_to_tree(call, "sampleValues", forge_scatter_from_samples);
}

Napi::Value merge_to_tree(const Napi::CallbackInfo& call) {
  return samples_to_tree(call, "values", forge_merge_to_tree);
}

// treeValidate(parent: Int32Array [N], subtreeEnd: Int32Array [N], async) -> true, or throws
Napi::Value tree_validate(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto parent = array_arg<int32_t>(env, call[0], "parent");
  auto subtree_end = array_arg<int32_t>(env, call[1], "subtreeEnd", static_cast<int64_t>(parent.length));
  const int64_t N = static_cast<int64_t>(parent.length);
  return run_kernel(
      env, async_arg(call, 2), {call[0], call[1]},
      [=] { return forge_tree_validate(parent.data, subtree_end.data, N); },
      [](Napi::Env env) -> Napi::Value { return Napi::Boolean::New(env, true); });
}

}  // namespace

void register_prefix_tree(Napi::Env env, Napi::Object exports) {
  exports.Set("prefixTreeBuild", Napi::Function::New(env, prefix_tree_build, "prefixTreeBuild"));
  exports.Set("gatherToSamples", Napi::Function::New(env, gather_to_samples, "gatherToSamples"));
  exports.Set("scatterFromSamples", Napi::Function::New(env, scatter_from_samples, "scatterFromSamples"));
  exports.Set("mergeToTree", Napi::Function::New(env, merge_to_tree, "mergeToTree"));
  exports.Set("treeValidate", Napi::Function::New(env, tree_validate, "treeValidate"));
}

}  // namespace forge::addon
