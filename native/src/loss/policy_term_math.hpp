// The per-term policy-gradient formula (CISPO / PPO-clip / cross-entropy), the statistics of the terms
// and their reduction into forge_cispo_stats, defined once for the CPU kernels (policy_terms.hpp) and
// the device kernel (cuda/cispo/kernel.cuh), so the two cannot drift apart. Compiled by g++ and by
// nvcc, for the host and the device (FORGE_HD), and by the CPU emulator of the CUDA kernels; plain
// float64 math only, no device intrinsics.
#pragma once

#include <forge/forge.h>

#include <cmath>
#include <cstdint>

#ifndef FORGE_HD
#ifdef __CUDACC__
#define FORGE_HD __host__ __device__
#else
#define FORGE_HD
#endif
#endif

namespace forge::loss {

// Resolved options: clip bounds as ratios and the normaliser Z.
struct PolicyParams {
  forge_pg_mode mode;
  double lo, hi;  // clip(r) = min(max(r, lo), hi); lo may be -inf, hi +inf
  double inv_z;   // 1 / Z
};

// One term: its loss contribution (before 1/Z), its gradient coefficient c = dloss_j / dlogp_j * (-1)
// (so dlogits = -(1/Z) sum_j c_j (onehot(y_j) - softmax)), and its ratio.
struct TermValue {
  double loss, coef, ratio;
};

FORGE_HD inline TermValue policy_term(const PolicyParams& p, double logp, double old_logprob, double adv) {
  const double r = std::exp(logp - old_logprob);
  // min(max(r, lo), hi) spelled as std::max / std::min evaluate it (NaN passes through), since those
  // are not callable on the device.
  const double floored = r < p.lo ? p.lo : r;
  const double clipped = p.hi < floored ? p.hi : floored;
  if (p.mode == FORGE_PG_CROSS_ENTROPY) return {-adv * logp, adv, r};  // weight 1: d/dlogp (A logp) = A
  if (p.mode == FORGE_PG_CISPO) {
    // w = clip(r) is a stop-gradient weight: d/dlogp (w A logp) = w A.
    if (adv == 0) return {0.0, 0.0, r};
    return {-clipped * adv * logp, clipped * adv, r};
  }
  // PPO: -min(r A, clip(r) A); d(r A)/dlogp = r A on the unclipped branch, 0 on the clipped one.
  if (adv == 0) return {0.0, 0.0, r};
  const double unclipped_gain = r * adv, clipped_gain = clipped * adv;
  if (unclipped_gain <= clipped_gain) return {-unclipped_gain, unclipped_gain, r};
  return {-clipped_gain, 0.0, r};
}

// The per-term statistics one worker accumulates. Count is int64_t on the CPU and 32 bits in a device
// thread (fewer than 2^31 terms; fewer registers).
template <class Count>
struct TermTally {
  double loss = 0, ratio = 0, logprob = 0;
  Count terms = 0, clip_high = 0, clip_low = 0, pos = 0, pos_clipped = 0, neg = 0, neg_clipped = 0;

  FORGE_HD void add_term(const PolicyParams& p, const TermValue& v, double logp, double adv) {
    loss += v.loss;
    ratio += v.ratio;
    logprob += logp;
    ++terms;
    const bool high = v.ratio > p.hi, low = v.ratio < p.lo;
    clip_high += high;
    clip_low += low;
    if (adv > 0) {
      ++pos;
      pos_clipped += high;
    } else if (adv < 0) {
      ++neg;
      neg_clipped += low;
    }
  }

  FORGE_HD void add_tally(const TermTally& o) {
    loss += o.loss;
    ratio += o.ratio;
    logprob += o.logprob;
    terms += o.terms;
    clip_high += o.clip_high;
    clip_low += o.clip_low;
    pos += o.pos;
    pos_clipped += o.pos_clipped;
    neg += o.neg;
    neg_clipped += o.neg_clipped;
  }
};

// What the reductions combine (CPU chunks in chunk order, device blocks in block order): the terms'
// tally plus the rows' entropy and count.
template <class Count>
struct PolicySums : TermTally<Count> {
  double entropy = 0;
  Count rows = 0;

  FORGE_HD void add_sums(const PolicySums& o) {
    this->add_tally(o);
    entropy += o.entropy;
    rows += o.rows;
  }
};

// The statistics of a whole call from its final sums (host side).
template <class Count>
inline void write_stats(const PolicySums<Count>& t, double inv_z, forge_cispo_stats* stats) {
  auto frac = [](double a, Count b) { return b > 0 ? a / static_cast<double>(b) : 0.0; };
  stats->loss = t.loss * inv_z;
  stats->mean_ratio = frac(t.ratio, t.terms);
  stats->clip_frac_high = frac(static_cast<double>(t.clip_high), t.terms);
  stats->clip_frac_low = frac(static_cast<double>(t.clip_low), t.terms);
  stats->clip_frac_pos_adv = frac(static_cast<double>(t.pos_clipped), t.pos);
  stats->clip_frac_neg_adv = frac(static_cast<double>(t.neg_clipped), t.neg);
  stats->mean_entropy = frac(t.entropy, t.rows);
  stats->mean_logprob = frac(t.logprob, t.terms);
  stats->num_terms = static_cast<int64_t>(t.terms);
  stats->num_rows = static_cast<int64_t>(t.rows);
}

}  // namespace forge::loss
