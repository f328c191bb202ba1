// The nano policy model (forge.h "Nano policy model") and the GEMM under it. Thin: each function reads
// its arguments (TypedArrays zero-copy, lengths checked against what native code will touch), calls
// the C ABI synchronously or on a libuv worker (final argument `async`), and returns fresh arrays.
//
//   modelNumParams(config) -> number
//   modelParamInfo(config) -> [{ name, offset, rank, shape }]
//   modelInit(config, seed, async) -> Float32Array params
//   modelForward(config, params, tokens, positions, parent, subtreeEnd, async) -> Float32Array logits [N * V]
//   modelLossBackward(config, params, tokens, positions, parent, subtreeEnd, termNode, termTarget,
//                     termOldLogprob, termAdvantage, mode, epsLow, epsHigh, normalizer, async)
//     -> { loss, grads, logprobs, stats }
//   gemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, async) -> c (written in place)
//   benchGemmNaive(...same...) -> c      (the benchmark baseline, not a stable API)
#include <memory>
#include <string>
#include <vector>

#include <forge/forge_bench.h>

#include "binding.hpp"

namespace forge::addon {

namespace {

constexpr int64_t kInt32Max = 2147483647;

int64_t num_params(Napi::Env env, const forge_model_config& c) {
  int64_t count = 0;
  check(env, forge_model_num_params(&c, &count));
  return count;
}

// A JS value kept alive until an async result callback returns it.
std::function<Napi::Value(Napi::Env)> returning(Napi::Value value) {
  auto ref = std::make_shared<Napi::Reference<Napi::Value>>(Napi::Persistent(value));
  return [ref](Napi::Env) -> Napi::Value { return ref->Value(); };
}

Napi::Value model_num_params(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  return Napi::Number::New(env, static_cast<double>(num_params(env, config_arg(env, call[0]))));
}

Napi::Value model_param_info(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const forge_model_config c = config_arg(env, call[0]);
  int32_t count = 0;
  check(env, forge_model_param_count(&c, &count));
  Napi::Array out = Napi::Array::New(env, static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) {
    char name[FORGE_MODEL_MAX_NAME];
    int64_t offset = 0, shape[2] = {0, 0};
    int32_t rank = 0;
    check(env, forge_model_param_info(&c, i, name, sizeof name, &offset, &rank, shape));
    Napi::Object t = Napi::Object::New(env);
    t.Set("name", name);
    t.Set("offset", static_cast<double>(offset));
    t.Set("rank", rank);
    Napi::Array dims = Napi::Array::New(env, static_cast<size_t>(rank));
    for (int32_t r = 0; r < rank; ++r) dims.Set(static_cast<uint32_t>(r), static_cast<double>(shape[r]));
    t.Set("shape", dims);
    out.Set(static_cast<uint32_t>(i), t);
  }
  return out;
}

Napi::Value model_init(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto config = std::make_shared<forge_model_config>(config_arg(env, call[0]));
  const uint64_t seed = static_cast<uint64_t>(int_arg(env, call[1], "seed", 0, int64_t{1} << 53));
  const bool async = bool_arg(env, call[2], "async");
  auto params = Napi::Float32Array::New(env, static_cast<size_t>(num_params(env, *config)));
  float* data = params.Data();
  return run_kernel(env, async, {params}, [=] { return forge_model_init(config.get(), seed, data); },
                    returning(params));
}

// The batch arguments shared by forward and loss: params, tokens, positions, parent, subtreeEnd.
struct Batch {
  ArrayArg<float> params;
  ArrayArg<int32_t> tokens, positions, parent, subtree_end;
  int64_t n = 0;
};

Batch batch_args(Napi::Env env, const Napi::CallbackInfo& call, const forge_model_config& c) {
  Batch b;
  b.params = array_arg<float>(env, call[1], "params", num_params(env, c));
  b.tokens = array_arg<int32_t>(env, call[2], "tokens");
  b.n = static_cast<int64_t>(b.tokens.length);
  b.positions = array_arg<int32_t>(env, call[3], "positions", b.n);
  b.parent = array_arg<int32_t>(env, call[4], "parent", b.n);
  b.subtree_end = array_arg<int32_t>(env, call[5], "subtreeEnd", b.n);
  if (b.n < 1) throw_range_error(env, "tokens: expected at least 1 node");
  return b;
}

Napi::Value model_forward(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto config = std::make_shared<forge_model_config>(config_arg(env, call[0]));
  const Batch b = batch_args(env, call, *config);
  const bool async = bool_arg(env, call[6], "async");
  const double elements = static_cast<double>(b.n) * config->vocab_size;
  if (elements > 4.0e9) throw_range_error(env, "logits: N * vocabSize is too large for one Float32Array");
  auto logits = Napi::Float32Array::New(env, static_cast<size_t>(elements));
  float* out = logits.Data();
  return run_kernel(
      env, async, {call[1], call[2], call[3], call[4], call[5], logits},
      [=] {
        return forge_model_forward(config.get(), b.params.data, b.n, b.tokens.data, b.positions.data, b.parent.data,
                                   b.subtree_end.data, out);
      },
      returning(logits));
}

struct LossCall {
  forge_model_config config{};
  forge_cispo_options options{};
  forge_cispo_stats stats{};
};

Napi::Value model_loss_backward(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  auto state = std::make_shared<LossCall>();
  state->config = config_arg(env, call[0]);
  const Batch b = batch_args(env, call, state->config);
  auto node = array_arg<int32_t>(env, call[6], "termNode");
  const int64_t terms = static_cast<int64_t>(node.length);
  auto target = array_arg<int32_t>(env, call[7], "termTarget", terms);
  auto old_logprob = array_arg<float>(env, call[8], "termOldLogprob", terms);
  auto advantage = array_arg<float>(env, call[9], "termAdvantage", terms);
  state->options = cispo_options_arg(env, call, 10);
  const bool async = bool_arg(env, call[14], "async");

  auto grads = Napi::Float32Array::New(env, b.params.length);
  auto logprobs = Napi::Float32Array::New(env, static_cast<size_t>(terms));
  float* grads_data = grads.Data();
  float* logprobs_data = logprobs.Data();
  using Ref = Napi::Reference<Napi::Value>;
  auto grads_ref = std::make_shared<Ref>(Napi::Persistent(Napi::Value(grads)));
  auto logprobs_ref = std::make_shared<Ref>(Napi::Persistent(Napi::Value(logprobs)));
  std::vector<Napi::Value> keep{call[1], call[2], call[3], call[4], call[5], call[6], call[7], call[8], call[9],
                                grads, logprobs};
  auto compute = [=] {
    return forge_model_loss_backward(&state->config, b.params.data, b.n, b.tokens.data, b.positions.data,
                                     b.parent.data, b.subtree_end.data, terms, node.data, target.data,
                                     old_logprob.data, advantage.data, &state->options, grads_data, logprobs_data,
                                     &state->stats);
  };
  auto result = [=](Napi::Env env) -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", state->stats.loss);
    out.Set("grads", grads_ref->Value());
    out.Set("logprobs", logprobs_ref->Value());
    out.Set("stats", stats_object(env, state->stats));
    return out;
  };
  return run_kernel(env, async, std::move(keep), compute, result);
}

// gemm / benchGemmNaive: C is written in place. The lengths of a, b, c must cover what the leading
// dimensions address; the C ABI checks the rest (and overlap).
Napi::Value gemm_call(const Napi::CallbackInfo& call, bool naive) {
  Napi::Env env = call.Env();
  const auto ta = static_cast<forge_transpose>(int_arg(env, call[0], "transA", 0, 1));
  const auto tb = static_cast<forge_transpose>(int_arg(env, call[1], "transB", 0, 1));
  const int64_t m = int_arg(env, call[2], "m", 0, kInt32Max);
  const int64_t n = int_arg(env, call[3], "n", 0, kInt32Max);
  const int64_t k = int_arg(env, call[4], "k", 0, kInt32Max);
  const float alpha = static_cast<float>(number_arg(env, call[5], "alpha"));
  auto a = array_arg<float>(env, call[6], "a");
  const int64_t lda = int_arg(env, call[7], "lda", 1, kInt32Max);
  auto b = array_arg<float>(env, call[8], "b");
  const int64_t ldb = int_arg(env, call[9], "ldb", 1, kInt32Max);
  const float beta = static_cast<float>(number_arg(env, call[10], "beta"));
  auto c = array_arg<float>(env, call[11], "c");
  const int64_t ldc = int_arg(env, call[12], "ldc", 1, kInt32Max);
  const bool async = bool_arg(env, call[13], "async");
  // Elements a row-major [rows, cols] matrix with leading dimension ld spans.
  auto span = [](int64_t rows, int64_t cols, int64_t ld) {
    return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
  };
  auto covers = [&](const char* name, size_t length, int64_t needed) {
    if (static_cast<int64_t>(length) < needed)
      throw_range_error(env, std::string(name) + ": expected at least " + std::to_string(needed) + " elements, got " +
                                 std::to_string(length));
  };
  covers("a", a.length, ta ? span(k, m, lda) : span(m, k, lda));
  covers("b", b.length, tb ? span(n, k, ldb) : span(k, n, ldb));
  covers("c", c.length, span(m, n, ldc));
  auto compute = [=] {
    return (naive ? forge_bench_gemm_naive : forge_gemm)(ta, tb, m, n, k, alpha, a.data, lda, b.data, ldb, beta, c.data,
                                                         ldc);
  };
  return run_kernel(env, async, {call[6], call[8], call[11]}, compute, returning(call[11]));
}

Napi::Value gemm(const Napi::CallbackInfo& call) { return gemm_call(call, false); }
Napi::Value bench_gemm_naive(const Napi::CallbackInfo& call) { return gemm_call(call, true); }

}  // namespace

void register_model(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports,
                   {{"modelNumParams", model_num_params},
                    {"modelParamInfo", model_param_info},
                    {"modelInit", model_init},
                    {"modelForward", model_forward},
                    {"modelLossBackward", model_loss_backward},
                    {"gemm", gemm},
                    {"benchGemmNaive", bench_gemm_naive}});
}

}  // namespace forge::addon
