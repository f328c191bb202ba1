// Tree attention and attention-state merging (contract 2). Each function takes its TypedArrays
// zero-copy, checks the lengths native code will touch, allocates fresh Float32Array outputs and calls
// the C ABI, synchronously or on a libuv worker (final argument `async`).
#include <memory>
#include <string>
#include <vector>

#include "binding.hpp"

namespace forge::addon {

namespace {

struct AttentionArgs {
  forge_attention_shape shape{};
  int64_t q_len = 0, kv_len = 0;
};

// Reads (numHeads, numKvHeads, headDim, scale) at call[first..] and the node count from `parent`.
AttentionArgs attention_args(const Napi::CallbackInfo& call, size_t first, int64_t nodes) {
  Napi::Env env = call.Env();
  AttentionArgs a;
  a.shape.num_nodes = nodes;
  a.shape.num_heads = static_cast<int32_t>(int_arg(env, call[first], "numHeads", 1, (1 << 21) - 1));
  a.shape.num_kv_heads = static_cast<int32_t>(int_arg(env, call[first + 1], "numKvHeads", 1, a.shape.num_heads));
  a.shape.head_dim = static_cast<int32_t>(int_arg(env, call[first + 2], "headDim", 1, 1 << 20));
  a.shape.scale = static_cast<float>(number_arg(env, call[first + 3], "scale"));
  if (nodes < 1) throw_range_error(env, "parent: expected at least 1 node");
  // Products stay exact in doubles well past any array V8 can allocate.
  const double q_len = static_cast<double>(nodes) * a.shape.num_heads * a.shape.head_dim;
  if (q_len > 9.0e15) throw_range_error(env, "q: N * numHeads * headDim is too large");
  a.q_len = static_cast<int64_t>(q_len);
  a.kv_len = nodes * a.shape.num_kv_heads * a.shape.head_dim;
  return a;
}

// An object holding the outputs, kept by a persistent reference so the result callback can return it
// after an async run (a plain handle would not outlive the calling scope).
struct Result {
  Napi::Object object;
  std::shared_ptr<Napi::ObjectReference> ref;
  explicit Result(Napi::Env env) : object(Napi::Object::New(env)) {
    ref = std::make_shared<Napi::ObjectReference>(Napi::Persistent(object));
  }
  Napi::Float32Array add(const char* name, int64_t length) {
    Napi::Float32Array array = Napi::Float32Array::New(object.Env(), static_cast<size_t>(length));
    object.Set(name, array);
    return array;
  }
  std::function<Napi::Value(Napi::Env)> value() const {
    auto held = ref;
    return [held](Napi::Env) -> Napi::Value { return held->Value(); };
  }
};

// treeAttention(q, k, v, parent, subtreeEnd, numHeads, numKvHeads, headDim, scale, async) -> {o, lse}
Napi::Value tree_attention(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto parent = array_arg<int32_t>(env, call[3], "parent");
  const int64_t n = static_cast<int64_t>(parent.length);
  auto subtree_end = array_arg<int32_t>(env, call[4], "subtreeEnd", n);
  AttentionArgs a = attention_args(call, 5, n);
  auto q = array_arg<float>(env, call[0], "q", a.q_len);
  auto k = array_arg<float>(env, call[1], "k", a.kv_len);
  auto v = array_arg<float>(env, call[2], "v", a.kv_len);
  const bool async = call[9].ToBoolean();
  Result result(env);
  float* o = result.add("o", a.q_len).Data();
  float* lse = result.add("lse", n * a.shape.num_heads).Data();
  const forge_attention_shape shape = a.shape;
  return run_kernel(
      env, async, {call[0], call[1], call[2], call[3], call[4], result.object},
      [=] {
        return forge_tree_attention_forward(&shape, q.data, k.data, v.data, parent.data, subtree_end.data, o, lse);
      },
      result.value());
}

// treeAttentionBackward(q, k, v, parent, subtreeEnd, o, lse, dO, numHeads, numKvHeads, headDim, scale,
//                       async) -> {dq, dk, dv}
Napi::Value tree_attention_backward(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto parent = array_arg<int32_t>(env, call[3], "parent");
  const int64_t n = static_cast<int64_t>(parent.length);
  auto subtree_end = array_arg<int32_t>(env, call[4], "subtreeEnd", n);
  AttentionArgs a = attention_args(call, 8, n);
  auto q = array_arg<float>(env, call[0], "q", a.q_len);
  auto k = array_arg<float>(env, call[1], "k", a.kv_len);
  auto v = array_arg<float>(env, call[2], "v", a.kv_len);
  auto o = array_arg<float>(env, call[5], "o", a.q_len);
  auto lse = array_arg<float>(env, call[6], "lse", n * a.shape.num_heads);
  auto d_o = array_arg<float>(env, call[7], "dO", a.q_len);
  const bool async = call[12].ToBoolean();
  Result result(env);
  float* dq = result.add("dq", a.q_len).Data();
  float* dk = result.add("dk", a.kv_len).Data();
  float* dv = result.add("dv", a.kv_len).Data();
  const forge_attention_shape shape = a.shape;
  return run_kernel(
      env, async, {call[0], call[1], call[2], call[3], call[4], call[5], call[6], call[7], result.object},
      [=] {
        return forge_tree_attention_backward(&shape, q.data, k.data, v.data, parent.data, subtree_end.data, o.data,
                                             lse.data, d_o.data, dq, dk, dv);
      },
      result.value());
}

// Rows of a state array [rows, H] given its lse length.
int64_t state_rows(Napi::Env env, size_t lse_length, int32_t heads, const char* name) {
  if (lse_length % static_cast<size_t>(heads) != 0)
    throw_range_error(env, std::string(name) + ": length " + std::to_string(lse_length) +
                               " is not a multiple of numHeads (" + std::to_string(heads) + ")");
  return static_cast<int64_t>(lse_length / static_cast<size_t>(heads));
}

// mergeStates(oA, lseA, oB, lseB, numHeads, headDim, async) -> {o, lse}
Napi::Value merge_states(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const int32_t heads = static_cast<int32_t>(int_arg(env, call[4], "numHeads", 1, (1 << 21) - 1));
  const int32_t dim = static_cast<int32_t>(int_arg(env, call[5], "headDim", 1, 1 << 20));
  auto lse_a = array_arg<float>(env, call[1], "lseA");
  const int64_t rows = state_rows(env, lse_a.length, heads, "lseA");
  const int64_t units = rows * heads;
  auto o_a = array_arg<float>(env, call[0], "oA", units * dim);
  auto o_b = array_arg<float>(env, call[2], "oB", units * dim);
  auto lse_b = array_arg<float>(env, call[3], "lseB", units);
  const bool async = call[6].ToBoolean();
  Result result(env);
  float* o = result.add("o", units * dim).Data();
  float* lse = result.add("lse", units).Data();
  return run_kernel(
      env, async, {call[0], call[1], call[2], call[3], result.object},
      [=] { return forge_merge_states(rows, heads, dim, o_a.data, lse_a.data, o_b.data, lse_b.data, o, lse); },
      result.value());
}

// mergeStatesCsr(o, lse, offsets, numHeads, headDim, async) -> {o, lse}
Napi::Value merge_states_csr(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const int32_t heads = static_cast<int32_t>(int_arg(env, call[3], "numHeads", 1, (1 << 21) - 1));
  const int32_t dim = static_cast<int32_t>(int_arg(env, call[4], "headDim", 1, 1 << 20));
  auto lse_in = array_arg<float>(env, call[1], "lse");
  const int64_t states = state_rows(env, lse_in.length, heads, "lse");
  auto o_in = array_arg<float>(env, call[0], "o", states * heads * dim);
  auto offsets32 = array_arg<int32_t>(env, call[2], "offsets");
  if (offsets32.length < 1) throw_range_error(env, "offsets: expected at least 1 element (rows + 1)");
  const int64_t rows = static_cast<int64_t>(offsets32.length) - 1;
  // The C ABI takes int64 offsets; the copy is owned by the kernel call.
  auto offsets = std::make_shared<std::vector<int64_t>>(offsets32.data, offsets32.data + offsets32.length);
  const bool async = call[5].ToBoolean();
  Result result(env);
  float* o = result.add("o", rows * heads * dim).Data();
  float* lse = result.add("lse", rows * heads).Data();
  return run_kernel(
      env, async, {call[0], call[1], result.object},
      [=] { return forge_merge_states_csr(rows, heads, dim, offsets->data(), states, o_in.data, lse_in.data, o, lse); },
      result.value());
}

}  // namespace

void register_attention(Napi::Env env, Napi::Object exports) {
  exports.Set("treeAttention", Napi::Function::New(env, tree_attention, "treeAttention"));
  exports.Set("treeAttentionBackward", Napi::Function::New(env, tree_attention_backward, "treeAttentionBackward"));
  exports.Set("mergeStates", Napi::Function::New(env, merge_states, "mergeStates"));
  exports.Set("mergeStatesCsr", Napi::Function::New(env, merge_states_csr, "mergeStatesCsr"));
}

}  // namespace forge::addon
