// CISPO / PPO-clip policy loss (forge_cispo_loss) and its benchmark baseline.
//
//   cispoLoss(logits, vocabSize, node, target, oldLogprob, advantage, mode, epsLow, epsHigh, normalizer,
//             grad, inPlace, out, async) -> { loss, dlogits?, logprobs, stats }
//   benchCispoTwoPass(...same...) -> the same plus workspaceBytes   (forge_bench.h, not a stable API)
//   benchCispoFusedWorkspace(numRows, vocabSize, numTerms) -> bytes  (forge_bench.h)
//
// `out` (a Float32Array of N * V, or undefined) receives dlogits instead of a new array, so benchmarks
// can time the kernel without an allocation; lib/cispo.ts does not expose it.
#include <forge/forge_bench.h>

#include <memory>

#include "binding.hpp"

namespace forge::addon {

namespace {

struct CispoCall {
  forge_cispo_options options{};
  forge_cispo_stats stats{};
  int64_t workspace_bytes = 0;
};

Napi::Value policy_loss(const Napi::CallbackInfo& call, bool baseline) {
  Napi::Env env = call.Env();
  auto logits = array_arg<float>(env, call[0], "logits");
  const int64_t vocab = int_arg(env, call[1], "vocabSize", 1, 2147483647);
  if (logits.length % static_cast<size_t>(vocab) != 0)
    throw_range_error(env, "logits: length " + std::to_string(logits.length) + " is not a multiple of vocabSize " +
                               std::to_string(vocab));
  const int64_t rows = static_cast<int64_t>(logits.length) / vocab;
  auto node = array_arg<int32_t>(env, call[2], "node");
  const int64_t terms = static_cast<int64_t>(node.length);
  auto target = array_arg<int32_t>(env, call[3], "target", terms);
  auto old_logprob = array_arg<float>(env, call[4], "oldLogprob", terms);
  auto advantage = array_arg<float>(env, call[5], "advantage", terms);
  auto state = std::make_shared<CispoCall>();
  state->options = cispo_options_arg(env, call, 6);
  const bool grad = bool_arg(env, call[10], "grad");
  const bool in_place = bool_arg(env, call[11], "inPlace");
  const bool async = bool_arg(env, call[13], "async");

  std::vector<Napi::Value> keep{call[0], call[2], call[3], call[4], call[5]};
  Napi::Value dlogits_value = env.Undefined();
  float* dlogits = nullptr;
  if (grad) {
    if (in_place) {
      dlogits_value = call[0];
      dlogits = logits.data;
    } else if (!call[12].IsUndefined() && !call[12].IsNull()) {
      auto out = array_arg<float>(env, call[12], "out", static_cast<int64_t>(logits.length));
      if (out.data == logits.data && out.length > 0) throw_range_error(env, "out: is logits; use inPlace instead");
      dlogits_value = call[12];
      dlogits = out.data;
    } else {
      auto created = Napi::Float32Array::New(env, logits.length);
      dlogits_value = created;
      dlogits = created.Data();
    }
    keep.push_back(dlogits_value);
  }
  auto logprobs = Napi::Float32Array::New(env, static_cast<size_t>(terms));
  keep.push_back(logprobs);
  float* logprobs_data = logprobs.Data();

  // References for the result builder, which runs after the kernel (in a later handle scope when async).
  using Ref = Napi::Reference<Napi::Value>;
  auto dlogits_ref = grad ? std::make_shared<Ref>(Napi::Persistent(dlogits_value)) : std::shared_ptr<Ref>();
  auto logprobs_ref = std::make_shared<Ref>(Napi::Persistent(Napi::Value(logprobs)));

  auto compute = [=]() {
    if (baseline)
      return forge_bench_cispo_two_pass(rows, vocab, logits.data, terms, node.data, target.data, old_logprob.data,
                                        advantage.data, &state->options, dlogits, logprobs_data, &state->stats,
                                        &state->workspace_bytes);
    return forge_cispo_loss(rows, vocab, logits.data, terms, node.data, target.data, old_logprob.data,
                            advantage.data, &state->options, dlogits, logprobs_data, &state->stats);
  };
  auto result = [=](Napi::Env env) -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", state->stats.loss);
    if (grad) out.Set("dlogits", dlogits_ref->Value());
    out.Set("logprobs", logprobs_ref->Value());
    out.Set("stats", stats_object(env, state->stats));
    if (baseline) out.Set("workspaceBytes", static_cast<double>(state->workspace_bytes));
    return out;
  };
  return run_kernel(env, async, std::move(keep), compute, result);
}

Napi::Value cispo_loss(const Napi::CallbackInfo& call) { return policy_loss(call, false); }
Napi::Value bench_two_pass(const Napi::CallbackInfo& call) { return policy_loss(call, true); }

Napi::Value bench_fused_workspace(const Napi::CallbackInfo& call) {
  Napi::Env env = call.Env();
  const int64_t rows = int_arg(env, call[0], "numRows", 0, int64_t{1} << 40);
  const int64_t vocab = int_arg(env, call[1], "vocabSize", 1, 2147483647);
  const int64_t terms = int_arg(env, call[2], "numTerms", 0, 2147483647);
  int64_t bytes = 0;
  forge_status status = forge_bench_cispo_fused_workspace(rows, vocab, terms, &bytes);
  if (status != FORGE_OK) throw status_error(env, status, forge_last_error());
  return Napi::Number::New(env, static_cast<double>(bytes));
}

}  // namespace

void register_cispo(Napi::Env env, Napi::Object exports) {
  exports.Set("cispoLoss", Napi::Function::New(env, cispo_loss, "cispoLoss"));
  exports.Set("benchCispoTwoPass", Napi::Function::New(env, bench_two_pass, "benchCispoTwoPass"));
  exports.Set("benchCispoFusedWorkspace", Napi::Function::New(env, bench_fused_workspace, "benchCispoFusedWorkspace"));
}

}  // namespace forge::addon
