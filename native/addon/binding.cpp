#include "binding.hpp"

#include <cmath>
#include <memory>

namespace forge::addon {

namespace {

Napi::Error with_code(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  return error;
}

class KernelWorker : public Napi::AsyncWorker {
 public:
  KernelWorker(Napi::Env env, std::vector<Napi::Value> keep_alive, std::function<forge_status()> compute,
               std::function<Napi::Value(Napi::Env)> result)
      : Napi::AsyncWorker(env, "forge-kernel"),
        deferred_(Napi::Promise::Deferred::New(env)),
        compute_(std::move(compute)),
        result_(std::move(result)) {
    for (auto& value : keep_alive) refs_.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }

  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    status_ = compute_();
    // The last-error message is per thread: read it here, on the thread that ran the kernel.
    if (status_ != FORGE_OK) message_ = forge_last_error();
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (status_ != FORGE_OK) {
      deferred_.Reject(status_error(env, status_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(result_(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<forge_status()> compute_;
  std::function<Napi::Value(Napi::Env)> result_;
  std::vector<Napi::ObjectReference> refs_;
  forge_status status_ = FORGE_OK;
  std::string message_;
};

}  // namespace

void throw_type_error(Napi::Env env, const std::string& message) {
  throw with_code(Napi::TypeError::New(env, message), "FORGE_ERR_INVALID_ARGUMENT");
}

void throw_range_error(Napi::Env env, const std::string& message) {
  throw with_code(Napi::RangeError::New(env, message), "FORGE_ERR_OUT_OF_RANGE");
}

Napi::Error status_error(Napi::Env env, forge_status status, const std::string& message) {
  const char* code = forge_status_name(status);
  switch (status) {
    case FORGE_ERR_INVALID_ARGUMENT:
    case FORGE_ERR_OUT_OF_RANGE:
    case FORGE_ERR_NON_FINITE:
      return with_code(Napi::RangeError::New(env, message), code);
    default:
      return with_code(Napi::Error::New(env, message), code);
  }
}

int64_t int_arg(Napi::Env env, Napi::Value value, const char* name, int64_t min, int64_t max) {
  if (!value.IsNumber()) throw_type_error(env, std::string(name) + ": expected an integer");
  double x = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(x) || x != std::floor(x) || x < static_cast<double>(min) || x > static_cast<double>(max))
    throw_range_error(env, std::string(name) + ": expected an integer in [" + std::to_string(min) + ", " +
                               std::to_string(max) + "], got " + value.ToString().Utf8Value());
  return static_cast<int64_t>(x);
}

double number_arg(Napi::Env env, Napi::Value value, const char* name) {
  if (!value.IsNumber()) throw_type_error(env, std::string(name) + ": expected a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool bool_arg(Napi::Env env, Napi::Value value, const char* name) {
  if (!value.IsBoolean()) throw_type_error(env, std::string(name) + ": expected a boolean");
  return value.As<Napi::Boolean>().Value();
}

forge_model_config config_arg(Napi::Env env, Napi::Value value) {
  constexpr int64_t kInt32Max = 2147483647;
  if (!value.IsObject()) throw_type_error(env, "config: expected an object");
  Napi::Object o = value.As<Napi::Object>();
  auto i32 = [&](const char* key) {
    const std::string name = std::string("config.") + key;
    return static_cast<int32_t>(int_arg(env, o.Get(key), name.c_str(), -kInt32Max - 1, kInt32Max));
  };
  forge_model_config c{};
  c.vocab_size = i32("vocabSize");
  c.dim = i32("dim");
  c.num_layers = i32("numLayers");
  c.num_heads = i32("numHeads");
  c.num_kv_heads = i32("numKvHeads");
  c.head_dim = i32("headDim");
  c.ffn_dim = i32("ffnDim");
  c.tied_embeddings = bool_arg(env, o.Get("tiedEmbeddings"), "config.tiedEmbeddings") ? 1 : 0;
  c.rope_theta = static_cast<float>(number_arg(env, o.Get("ropeTheta"), "config.ropeTheta"));
  c.norm_eps = static_cast<float>(number_arg(env, o.Get("normEps"), "config.normEps"));
  return c;
}

Napi::Object stats_object(Napi::Env env, const forge_cispo_stats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("meanRatio", s.mean_ratio);
  o.Set("clipFracHigh", s.clip_frac_high);
  o.Set("clipFracLow", s.clip_frac_low);
  o.Set("clipFracPositiveAdv", s.clip_frac_pos_adv);
  o.Set("clipFracNegativeAdv", s.clip_frac_neg_adv);
  o.Set("meanEntropy", s.mean_entropy);
  o.Set("meanLogprob", s.mean_logprob);
  o.Set("numTerms", static_cast<double>(s.num_terms));
  o.Set("numRows", static_cast<double>(s.num_rows));
  return o;
}

void check(Napi::Env env, forge_status status) {
  if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
}

Napi::Value run_kernel(Napi::Env env, bool async, std::vector<Napi::Value> keep_alive,
                       std::function<forge_status()> compute, std::function<Napi::Value(Napi::Env)> result) {
  if (!async) {
    forge_status status = compute();
    if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
    return result(env);
  }
  auto* worker = new KernelWorker(env, std::move(keep_alive), std::move(compute), std::move(result));
  Napi::Promise promise = worker->promise();
  worker->Queue();  // the worker deletes itself after OnOK/OnError
  return promise;
}

}  // namespace forge::addon
