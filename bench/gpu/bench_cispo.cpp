// Fused CISPO / PPO-clip / cross-entropy loss (contract 3). Checks against forge_cispo_loss on the CPU
// with the same (dtype-rounded) logits: dlogits (in the logits dtype, poisoned first), logp per term
// and the batch statistics; rows without terms, several terms per row, odd vocabularies, the in-place
// form. Timing at N=16k, V=152k bf16 counts one read of the logits and one write of dlogits, and is
// reported a second time on the bytes the kernel really moves (rows read twice; NOTES-cispo.md).
#include <algorithm>
#include <cmath>

#include "device_fill.hpp"
#include "sections.hpp"

namespace gpubench {
namespace {

const char* kSection = "cispo";
constexpr int64_t kVocab = 151936;

struct Terms {
  std::vector<int32_t> node, target;
  std::vector<float> old_logprob, advantage;
  size_t size() const { return node.size(); }
};

// 0-3 terms per row (10% of rows none), in shuffled order as a prefix tree emits them. With the host
// logits given, old log-probs sit near the true ones (ratios near 1, some clipped); without, near the
// typical value of N(0, 2) logits.
Terms random_terms(Rng& rng, int64_t rows, int64_t vocab, const std::vector<float>* logits) {
  Terms t;
  for (int64_t r = 0; r < rows; ++r) {
    const double u = rng.uniform();
    const int count = u < 0.1 ? 0 : u < 0.8 ? 1 : u < 0.95 ? 2 : 3;
    double lse = 0;
    if (logits && count) {
      const float* z = logits->data() + r * vocab;
      const double m = *std::max_element(z, z + vocab);
      double sum = 0;
      for (int64_t v = 0; v < vocab; ++v) sum += std::exp(z[v] - m);
      lse = m + std::log(sum);
    }
    for (int k = 0; k < count; ++k) {
      const int32_t y = static_cast<int32_t>(rng.below(vocab));
      const double logp = logits ? (*logits)[r * vocab + y] - lse : -(std::log(double(vocab)) + 2.0) + 2.0 * rng.gauss();
      t.node.push_back(static_cast<int32_t>(r));
      t.target.push_back(y);
      t.old_logprob.push_back(static_cast<float>(logp + 0.3 * rng.gauss()));
      t.advantage.push_back(static_cast<float>(rng.gauss()));
    }
  }
  for (size_t i = t.size(); i > 1; --i) {  // Fisher-Yates, all four arrays alike
    const size_t j = static_cast<size_t>(rng.below(static_cast<int64_t>(i)));
    std::swap(t.node[i - 1], t.node[j]);
    std::swap(t.target[i - 1], t.target[j]);
    std::swap(t.old_logprob[i - 1], t.old_logprob[j]);
    std::swap(t.advantage[i - 1], t.advantage[j]);
  }
  return t;
}

struct DeviceTerms {
  DeviceBuffer node, target, old_logprob, advantage;
  DeviceTerms(const Terms& t, cudaStream_t s)
      : node(upload_raw(t.node, s)), target(upload_raw(t.target, s)), old_logprob(upload_raw(t.old_logprob, s)),
        advantage(upload_raw(t.advantage, s)) {}
};

forge_cispo_options options_for(forge_pg_mode mode, double normalizer) {
  forge_cispo_options o{};
  o.mode = mode;
  o.eps_low = mode == FORGE_PG_CISPO ? 1000.f : 0.2f;  // CISPO (M1): no lower bound
  o.eps_high = 0.28f;
  o.normalizer = normalizer;
  return o;
}

const char* mode_name(forge_pg_mode m) {
  return m == FORGE_PG_CISPO ? "cispo" : m == FORGE_PG_PPO_CLIP ? "ppo-clip" : "cross-entropy";
}

// A scalar statistic as a one-element comparison: relative error with a floor, or absolute.
Comparison scalar(double got, double ref, bool absolute) {
  Comparison c;
  c.count = 1;
  if (!std::isfinite(got)) c.non_finite = 1;
  c.rel_err = absolute ? std::fabs(got - ref) : std::fabs(got - ref) / std::max(std::fabs(ref), 1e-6);
  return c;
}

void check_stats(Context& ctx, const std::string& name, const forge_cispo_stats& d, const forge_cispo_stats& c) {
  const double f32 = dtype_bound(FORGE_DTYPE_F32);
  auto add = [&](const char* what, double got, double ref, bool absolute, double bound) {
    ctx.report.check(kSection, name, FORGE_DTYPE_F32, what, scalar(got, ref, absolute), bound);
  };
  add("loss", d.loss, c.loss, false, f32);
  add("mean_ratio", d.mean_ratio, c.mean_ratio, false, f32);
  add("mean_logprob", d.mean_logprob, c.mean_logprob, false, f32);
  add("mean_entropy", d.mean_entropy, c.mean_entropy, false, f32);
  // A ratio within rounding of a clip bound may fall either side: allow two terms' worth.
  const double terms = static_cast<double>(std::max<int64_t>(c.num_terms, 1));
  add("clip_frac_high", d.clip_frac_high, c.clip_frac_high, true, 2.0 / terms);
  add("clip_frac_low", d.clip_frac_low, c.clip_frac_low, true, 2.0 / terms);
  add("num_terms,rows", double(d.num_terms + d.num_rows), double(c.num_terms + c.num_rows), true, 0.0);
}

void check_cispo(Context& ctx, int64_t rows, int64_t vocab, forge_dtype dt, forge_pg_mode mode, double normalizer,
                 bool in_place) {
  const std::vector<float> logits = random_normal(ctx.rng, static_cast<size_t>(rows * vocab), 2.f, dt);
  const Terms terms = random_terms(ctx.rng, rows, vocab, &logits);
  const forge_cispo_options opt = options_for(mode, normalizer);
  std::vector<float> d_ref(logits.size()), lp_ref(terms.size());
  forge_cispo_stats s_ref{};
  GB_FORGE(forge_cispo_loss(rows, vocab, logits.data(), static_cast<int64_t>(terms.size()), terms.node.data(),
                            terms.target.data(), terms.old_logprob.data(), terms.advantage.data(), &opt, d_ref.data(),
                            lp_ref.data(), &s_ref));

  cudaStream_t s = ctx.stream.get();
  DeviceBuffer d_logits = upload(logits, dt, s);
  DeviceTerms d_terms(terms, s);
  DeviceBuffer d_grad(in_place ? 0 : logits.size() * forge_dtype_size(dt)), d_lp(terms.size() * 4);
  if (!in_place) poison(d_grad, s);
  poison(d_lp, s);
  void* grad = in_place ? d_logits.get() : d_grad.get();
  forge_cispo_stats s_dev{};
  GB_FORGE(forge_cuda_cispo_loss(dt, rows, vocab, d_logits.get(), static_cast<int64_t>(terms.size()),
                                 d_terms.node.as<int32_t>(), d_terms.target.as<int32_t>(),
                                 d_terms.old_logprob.as<float>(), d_terms.advantage.as<float>(), &opt, grad,
                                 d_lp.as<float>(), &s_dev, ctx.stream.as_void()));
  const std::string name = std::string(mode_name(mode)) + (in_place ? " in place" : "") + " N=" +
                           std::to_string(rows) + " V=" + std::to_string(vocab) + " J=" + std::to_string(terms.size()) +
                           (normalizer > 0 ? " Z=" + std::to_string(static_cast<int64_t>(normalizer)) : "");
  ctx.report.check(kSection, name, dt, "dlogits",
                   compare(download(in_place ? d_logits : d_grad, logits.size(), dt, s), d_ref), dtype_bound(dt));
  ctx.report.check(kSection, name, FORGE_DTYPE_F32, "logp", compare(download(d_lp, terms.size(), FORGE_DTYPE_F32, s), lp_ref),
                   dtype_bound(FORGE_DTYPE_F32));
  check_stats(ctx, name, s_dev, s_ref);
}

// The same timing on the bytes the kernel really reads and writes (cuda/cispo/kernel.cuh, no stats
// asked): a row with terms is read twice (the online pass, then the pass writing dlogits) and written
// once; a row without terms is only written (zeros), or untouched without dlogits. Against the copy
// bandwidth this says whether the second read came from L2 (above 100%) or from memory (see
// NOTES-cispo.md); not flagged when above the ceiling, since L2 hits are what it looks for.
void record_accessed(Context& ctx, const std::string& name, const std::string& shape, forge_dtype dt, const Timing& t,
                     const Terms& terms, int64_t rows, int64_t vocab, bool with_grad) {
  std::vector<char> has_terms(static_cast<size_t>(rows), 0);
  for (int32_t n : terms.node) has_terms[static_cast<size_t>(n)] = 1;
  const double with = static_cast<double>(std::count(has_terms.begin(), has_terms.end(), 1));
  const double row_bytes = static_cast<double>(vocab) * forge_dtype_size(dt);
  const double bytes = row_bytes * (with_grad ? 3.0 * with + (static_cast<double>(rows) - with) : with);
  TimeRow row{kSection, name + " (bytes accessed)", shape, dtype_name(dt), t, "GB/s",
              bytes / (t.median_ms * 1e-3) / 1e9, "copy", 0,
              with_grad ? "rows with terms read twice + every row written" : "rows with terms read once", ""};
  row.emulated = ctx.emulator;
  if (!ctx.emulator && ctx.ceil.copy_gbps > 0) row.ratio = row.value / ctx.ceil.copy_gbps;
  ctx.report.time(std::move(row));
}

void time_cispo(Context& ctx, forge_dtype dt, int64_t rows, int64_t vocab, bool with_grad) {
  const int64_t elems = rows * vocab;
  const size_t elt = forge_dtype_size(dt);
  cudaStream_t s = ctx.stream.get();
  const Terms terms = random_terms(ctx.rng, rows, vocab, nullptr);
  DeviceTerms d_terms(terms, s);
  DeviceBuffer logits(static_cast<size_t>(elems) * elt), grad(with_grad ? static_cast<size_t>(elems) * elt : 0);
  DeviceBuffer lp(terms.size() * 4);
  fill_normal(dt, logits.get(), elems, ctx.rng.fork(), 0.f, 2.f, s);
  poison(grad, s), poison(lp, s);
  const forge_cispo_options opt = options_for(FORGE_PG_CISPO, 0);
  const Timing t = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_cispo_loss(dt, rows, vocab, logits.get(), static_cast<int64_t>(terms.size()),
                                   d_terms.node.as<int32_t>(), d_terms.target.as<int32_t>(),
                                   d_terms.old_logprob.as<float>(), d_terms.advantage.as<float>(), &opt,
                                   with_grad ? grad.get() : nullptr, lp.as<float>(), nullptr, ctx.stream.as_void()));
  });
  const std::string shape = "N=" + std::to_string(rows) + " V=" + std::to_string(vocab);
  const std::string name = with_grad ? "cispo fwd+bwd" : "cispo loss only";
  if (with_grad) check_written(ctx, kSection, name + " " + shape, dt, "dlogits", grad.get(), elems);
  check_written(ctx, kSection, name + " " + shape, FORGE_DTYPE_F32, "logp", lp.get(), static_cast<int64_t>(terms.size()));
  const double bytes = static_cast<double>(elems) * elt * (with_grad ? 2 : 1);
  record_bytes(ctx, kSection, name, shape, dt, t, bytes,
               with_grad ? "logits read once + dlogits written once" : "logits read once");
  if (with_grad && dt == FORGE_DTYPE_BF16 && rows == 16384 && vocab == kVocab)
    record_target(ctx, "cispo fwd+bwd N=16k V=152k bf16", ">= 70% of the measured copy bandwidth", 0.70);
  record_accessed(ctx, name, shape, dt, t, terms, rows, vocab, with_grad);
}

}  // namespace

void run_cispo(Context& ctx) {
  const forge_dtype f32 = FORGE_DTYPE_F32, bf16 = FORGE_DTYPE_BF16;
  // --smoke: a few rows over a few thousand logits (the emulator runs a GPU thread per fiber).
  const bool smoke = ctx.opt.smoke;
  const int64_t v = smoke ? 4096 : kVocab, odd_v = smoke ? 3001 : 50257;
  auto rows = [&](int64_t full) { return smoke ? std::max<int64_t>(4, full / 24) : full; };
  run_case(ctx, kSection, "check f32 cispo", [&] { check_cispo(ctx, rows(192), v, f32, FORGE_PG_CISPO, 0, false); });
  run_case(ctx, kSection, "check f32 ppo", [&] { check_cispo(ctx, rows(160), v, f32, FORGE_PG_PPO_CLIP, 0, false); });
  run_case(ctx, kSection, "check f32 ce", [&] { check_cispo(ctx, rows(128), v, f32, FORGE_PG_CROSS_ENTROPY, 0, false); });
  run_case(ctx, kSection, "check f32 odd V, Z",
           [&] { check_cispo(ctx, rows(300), odd_v, f32, FORGE_PG_CISPO, smoke ? 40 : 1000, false); });
  run_case(ctx, kSection, "check bf16 cispo", [&] { check_cispo(ctx, rows(192), v, bf16, FORGE_PG_CISPO, 0, false); });
  run_case(ctx, kSection, "check bf16 ppo", [&] { check_cispo(ctx, rows(160), v, bf16, FORGE_PG_PPO_CLIP, 0, false); });
  run_case(ctx, kSection, "check bf16 odd V", [&] { check_cispo(ctx, rows(300), odd_v, bf16, FORGE_PG_CISPO, 0, false); });
  run_case(ctx, kSection, "check bf16 in place", [&] { check_cispo(ctx, rows(96), v, bf16, FORGE_PG_CISPO, 0, true); });
  // The target problem is timed at full size even with --quick: it costs well under a second.
  const int64_t big = smoke ? 32 : 16384;
  run_case(ctx, kSection, "time bf16 fwd+bwd", [&] { time_cispo(ctx, bf16, big, v, true); });
  run_case(ctx, kSection, "time bf16 loss only", [&] { time_cispo(ctx, bf16, big, v, false); });
  if (!ctx.opt.quick) run_case(ctx, kSection, "time f32 fwd+bwd", [&] { time_cispo(ctx, f32, big / 4, v, true); });
}

}  // namespace gpubench
