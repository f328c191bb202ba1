// The inference engine's kernels (forge.h "Inference engine"). Thin, like the other bindings: arrays
// zero-copy, lengths checked against what native code will touch, then the C ABI; a final `async`
// argument runs the call on a libuv worker and returns a promise.
//
//   new KvPool(config, capacity)      .info() -> { capacity, numLayers, numKvHeads, headDim, bytes }
//                                     .free()  (idempotent; deferred while an extend is running)
//                                     .freed   (true once free() was called)
//   pathAttention(q, k, v, numSlots, numHeads, numKvHeads, headDim, scale, paths, pathOffset, pathLen,
//                 async) -> { o, lse }
//   modelExtend(config, params, pool, tokens, positions, slots, paths, pathOffset, pathLen, logitRows,
//               async) -> Float32Array logits [R * vocab]
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "binding.hpp"

namespace forge::addon {

namespace {

constexpr int64_t kInt32Max = 2147483647;

// The pool handle and who may use it. An extend marks it busy (one at a time: its slots would race);
// free() while busy only marks it, and the extend frees it when done.
struct PoolState {
  std::mutex mutex;
  forge_kv_pool* pool = nullptr;
  forge_kv_pool_layout layout{};
  bool busy = false, free_requested = false;

  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    free_requested = true;
    if (!busy && pool) {
      forge_kv_pool_free(pool);
      pool = nullptr;
    }
  }
  // Called when an extend ends (any thread).
  void done() {
    std::lock_guard<std::mutex> lock(mutex);
    busy = false;
    if (free_requested && pool) {
      forge_kv_pool_free(pool);
      pool = nullptr;
    }
  }
};

// Marks KvPool objects so an argument can be checked without a constructor reference: a reference
// would belong to one environment, and the addon may be loaded by several (worker threads).
constexpr napi_type_tag kKvPoolTag = {0x8f3c2a61d4b7e905ULL, 0x51e0c9a7b3d2f184ULL};

class KvPoolWrap : public Napi::ObjectWrap<KvPoolWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "KvPool",
                       {InstanceMethod<&KvPoolWrap::info>("info"), InstanceMethod<&KvPoolWrap::free>("free"),
                        InstanceAccessor<&KvPoolWrap::freed>("freed")});
  }

  explicit KvPoolWrap(const Napi::CallbackInfo& call) : Napi::ObjectWrap<KvPoolWrap>(call) {
    Napi::Env env = call.Env();
    const forge_model_config config = config_arg(env, call[0]);
    const int64_t capacity = int_arg(env, call[1], "capacity", 1, kInt32Max);
    forge_kv_pool* pool = nullptr;
    check(env, forge_kv_pool_create(&config, capacity, &pool));
    state_->pool = pool;
    check(env, forge_kv_pool_info(pool, &state_->layout));
    call.This().As<Napi::Object>().TypeTag(&kKvPoolTag);
  }

  // The GC only collects a pool no running extend holds (the worker keeps the JS object alive).
  ~KvPoolWrap() override { state_->release(); }

  const std::shared_ptr<PoolState>& state() const { return state_; }

 private:
  Napi::Value info(const Napi::CallbackInfo& call) {
    Napi::Env env = call.Env();
    Napi::Object o = Napi::Object::New(env);
    const forge_kv_pool_layout& l = state_->layout;
    o.Set("capacity", static_cast<double>(l.capacity));
    o.Set("numLayers", l.num_layers);
    o.Set("numKvHeads", l.num_kv_heads);
    o.Set("headDim", l.head_dim);
    o.Set("bytes", static_cast<double>(l.bytes));
    return o;
  }

  Napi::Value free(const Napi::CallbackInfo& call) {
    state_->release();
    return call.Env().Undefined();
  }

  Napi::Value freed(const Napi::CallbackInfo& call) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    return Napi::Boolean::New(call.Env(), state_->free_requested);
  }

  std::shared_ptr<PoolState> state_ = std::make_shared<PoolState>();
};

KvPoolWrap* pool_arg(Napi::Env env, Napi::Value value) {
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kKvPoolTag))
    throw_type_error(env, "pool: expected a KvPool");
  return KvPoolWrap::Unwrap(value.As<Napi::Object>());
}

// A pool used in the wrong state (freed, busy): a plain Error, since no argument value is at fault.
Napi::Error state_error(Napi::Env env, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, "FORGE_ERR_INVALID_ARGUMENT"));
  return e;
}

// A JS value kept alive until an async result callback returns it.
std::function<Napi::Value(Napi::Env)> returning(Napi::Value value) {
  auto ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(value));
  return [ref](Napi::Env) -> Napi::Value { return ref->Value(); };
}

// Int32Array path offsets widened to the ABI's int64.
std::shared_ptr<std::vector<int64_t>> offsets_arg(Napi::Env env, Napi::Value value, int64_t m) {
  const ArrayArg<int32_t> off = array_arg<int32_t>(env, value, "pathOffset", m);
  return std::make_shared<std::vector<int64_t>>(off.data, off.data + off.length);
}

Napi::Value path_attention(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto shape = std::make_shared<forge_path_attention_shape>();
  shape->num_slots = int_arg(env, call[3], "numSlots", 1, kInt32Max);
  shape->num_heads = static_cast<int32_t>(int_arg(env, call[4], "numHeads", 1, 1 << 20));
  shape->num_kv_heads = static_cast<int32_t>(int_arg(env, call[5], "numKvHeads", 1, 1 << 20));
  shape->head_dim = static_cast<int32_t>(int_arg(env, call[6], "headDim", 1, 1 << 20));
  shape->scale = static_cast<float>(number_arg(env, call[7], "scale"));
  auto paths = array_arg<int32_t>(env, call[8], "paths");
  auto len = array_arg<int32_t>(env, call[10], "pathLen");
  const int64_t m = static_cast<int64_t>(len.length);
  if (m < 1) throw_range_error(env, "pathLen: expected at least 1 query");
  shape->num_queries = m;
  auto offsets = offsets_arg(env, call[9], m);
  const double q_len = static_cast<double>(m) * shape->num_heads * shape->head_dim;
  const double kv_len = static_cast<double>(shape->num_slots) * shape->num_kv_heads * shape->head_dim;
  if (q_len > 4.0e9 || kv_len > 4.0e9) throw_range_error(env, "q/k/v: too large for one Float32Array");
  auto q = array_arg<float>(env, call[0], "q", static_cast<int64_t>(q_len));
  auto k = array_arg<float>(env, call[1], "k", static_cast<int64_t>(kv_len));
  auto v = array_arg<float>(env, call[2], "v", static_cast<int64_t>(kv_len));
  const bool async = bool_arg(env, call[11], "async");
  auto o = Napi::Float32Array::New(env, static_cast<size_t>(q_len));
  auto lse = Napi::Float32Array::New(env, static_cast<size_t>(m * shape->num_heads));
  float* o_data = o.Data();
  float* lse_data = lse.Data();
  Napi::Object out = Napi::Object::New(env);
  out.Set("o", o);
  out.Set("lse", lse);
  const int64_t entries = static_cast<int64_t>(paths.length);
  return run_kernel(
      env, async, {call[0], call[1], call[2], call[8], call[10], out},
      [=] {
        return forge_path_attention(shape.get(), q.data, k.data, v.data, paths.data, entries, offsets->data(),
                                    len.data, o_data, lse_data);
      },
      returning(out));
}

Napi::Value model_extend(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto config = std::make_shared<forge_model_config>(config_arg(env, call[0]));
  int64_t num_params = 0;
  check(env, forge_model_num_params(config.get(), &num_params));
  auto params = array_arg<float>(env, call[1], "params", num_params);
  KvPoolWrap* wrap = pool_arg(env, call[2]);
  auto tokens = array_arg<int32_t>(env, call[3], "tokens");
  const int64_t m = static_cast<int64_t>(tokens.length);
  if (m < 1) throw_range_error(env, "tokens: expected at least 1 token");
  auto positions = array_arg<int32_t>(env, call[4], "positions", m);
  auto slots = array_arg<int32_t>(env, call[5], "slots", m);
  auto paths = array_arg<int32_t>(env, call[6], "paths");
  auto offsets = offsets_arg(env, call[7], m);
  auto len = array_arg<int32_t>(env, call[8], "pathLen", m);
  auto rows = array_arg<int32_t>(env, call[9], "logitRows");
  const bool async = bool_arg(env, call[10], "async");
  const double elements = static_cast<double>(rows.length) * config->vocab_size;
  if (elements > 4.0e9) throw_range_error(env, "logits: rows * vocabSize is too large for one Float32Array");
  auto logits = Napi::Float32Array::New(env, static_cast<size_t>(elements));

  auto batch = std::make_shared<forge_extend_batch>();
  batch->num_tokens = m;
  batch->tokens = tokens.data;
  batch->positions = positions.data;
  batch->slots = slots.data;
  batch->paths = paths.data;
  batch->num_path_entries = static_cast<int64_t>(paths.length);
  batch->path_offset = offsets->data();
  batch->path_len = len.data;
  batch->num_logit_rows = static_cast<int64_t>(rows.length);
  batch->logit_rows = rows.length ? rows.data : nullptr;

  std::shared_ptr<PoolState> state = wrap->state();
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    if (state->free_requested || !state->pool) throw state_error(env, "pool: this KvPool was freed");
    if (state->busy) throw state_error(env, "pool: another modelExtend is running on this KvPool");
    state->busy = true;
  }
  float* out = logits.Data();
  // `offsets` is captured so the widened copy lives as long as the call.
  auto compute = [=] {
    (void)offsets;
    const forge_status s = forge_model_extend(config.get(), params.data, state->pool, batch.get(), out);
    state->done();  // touches no forge error state: the caller still reads this call's message
    return s;
  };
  return run_kernel(env, async, {call[1], call[2], call[3], call[4], call[5], call[6], call[8], call[9], logits},
                    compute, returning(logits));
}

}  // namespace

void register_engine(Napi::Env env, Napi::Object exports) {
  exports.Set("KvPool", KvPoolWrap::define(env));
  exports.Set("pathAttention", Napi::Function::New(env, path_attention, "pathAttention"));
  exports.Set("modelExtend", Napi::Function::New(env, model_extend, "modelExtend"));
}

}  // namespace forge::addon
