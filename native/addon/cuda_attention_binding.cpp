// Tree attention on the GPU for JavaScript (forge.h forge_cuda_tree_attention_forward / _backward).
// Device tensors travel as BigInt addresses (lib/attentionDevice.ts passes DeviceTensor addresses);
// each call waits for the device (forge_cuda_synchronize), so it returns with the work done and any
// kernel error reported with its code. The shape numbers go to the C ABI unchanged: it checks them
// (and the pointers) and names what is wrong.
//
//   cudaTreeAttention(dtype, numNodes, numHeads, numKvHeads, headDim, scale, q, k, v, subtreeEnd, o, lse)
//   cudaTreeAttentionBackward(dtype, numNodes, numHeads, numKvHeads, headDim, scale, q, k, v, subtreeEnd,
//                             o, lse, dO, dq, dk, dv)
#include <cstdint>
#include <string>

#include "binding.hpp"

namespace forge::addon {

namespace {

// A device address: a BigInt; 0n is NULL (the C ABI reports it, naming the argument).
struct Call {
  forge_dtype dtype;
  forge_attention_shape shape{};
};

// (dtype, numNodes, numHeads, numKvHeads, headDim, scale) at call[0..5].
Call call_shape(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  Call c{};
  c.dtype = static_cast<forge_dtype>(int_arg(env, call[0], "dtype", 0, 2));
  c.shape.num_nodes = int_arg(env, call[1], "numNodes", -(int64_t{1} << 52), int64_t{1} << 52);
  c.shape.num_heads = static_cast<int32_t>(int_arg(env, call[2], "numHeads", INT32_MIN, INT32_MAX));
  c.shape.num_kv_heads = static_cast<int32_t>(int_arg(env, call[3], "numKvHeads", INT32_MIN, INT32_MAX));
  c.shape.head_dim = static_cast<int32_t>(int_arg(env, call[4], "headDim", INT32_MIN, INT32_MAX));
  c.shape.scale = static_cast<float>(number_arg(env, call[5], "scale"));
  return c;
}

void check_and_wait(Napi::Env env, forge_status status) {
  check(env, status);
  check(env, forge_cuda_synchronize(nullptr));
}

Napi::Value tree_attention(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const Call c = call_shape(call);
  const void* q = device_pointer_arg(env, call[6], "q");
  const void* k = device_pointer_arg(env, call[7], "k");
  const void* v = device_pointer_arg(env, call[8], "v");
  const auto* subtree_end = static_cast<const int32_t*>(device_pointer_arg(env, call[9], "subtreeEnd"));
  void* o = device_pointer_arg(env, call[10], "o");
  auto* lse = static_cast<float*>(device_pointer_arg(env, call[11], "lse"));
  check_and_wait(env, forge_cuda_tree_attention_forward(&c.shape, c.dtype, q, k, v, subtree_end, o, lse, nullptr));
  return env.Undefined();
}

Napi::Value tree_attention_backward(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const Call c = call_shape(call);
  const void* q = device_pointer_arg(env, call[6], "q");
  const void* k = device_pointer_arg(env, call[7], "k");
  const void* v = device_pointer_arg(env, call[8], "v");
  const auto* subtree_end = static_cast<const int32_t*>(device_pointer_arg(env, call[9], "subtreeEnd"));
  const void* o = device_pointer_arg(env, call[10], "o");
  const auto* lse = static_cast<const float*>(device_pointer_arg(env, call[11], "lse"));
  const void* d_o = device_pointer_arg(env, call[12], "dO");
  void* dq = device_pointer_arg(env, call[13], "dq");
  void* dk = device_pointer_arg(env, call[14], "dk");
  void* dv = device_pointer_arg(env, call[15], "dv");
  check_and_wait(env, forge_cuda_tree_attention_backward(&c.shape, c.dtype, q, k, v, subtree_end, o, lse, d_o, dq, dk,
                                                         dv, nullptr));
  return env.Undefined();
}

}  // namespace

void register_cuda_attention(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaTreeAttention", Napi::Function::New(env, tree_attention, "cudaTreeAttention"));
  exports.Set("cudaTreeAttentionBackward",
              Napi::Function::New(env, tree_attention_backward, "cudaTreeAttentionBackward"));
}

}  // namespace forge::addon
