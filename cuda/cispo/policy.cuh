// The per-term policy-gradient formulas on the device, the twin of native/src/loss/policy_terms.hpp
// (policy_term): one place to compare when either changes. float64 throughout (few terms per row).
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

namespace forge {
namespace cuda {
namespace cispo {

// Resolved options (host side): clip(r) = min(max(r, lo), hi), 1 / Z.
struct PolicyParams {
  int mode;  // forge_pg_mode
  double lo, hi;
  double inv_z;
};

// loss: the term's loss before 1/Z; coef: c with dlogits = -(1/Z) sum_j c_j (onehot(y_j) - softmax).
struct TermValue {
  double loss, coef, ratio;
};

__device__ __forceinline__ TermValue term_value(const PolicyParams& p, double logp, double old_logprob, double adv) {
  const double r = exp(logp - old_logprob);
  const double floored = r < p.lo ? p.lo : r;  // std::min(std::max(r, lo), hi), as on the CPU
  const double clipped = p.hi < floored ? p.hi : floored;
  if (p.mode == FORGE_PG_CROSS_ENTROPY) return {-adv * logp, adv, r};
  if (p.mode == FORGE_PG_CISPO) {
    // w = clip(r) is a stop-gradient weight: d/dlogp (w A logp) = w A.
    if (adv == 0) return {0.0, 0.0, r};
    return {-clipped * adv * logp, clipped * adv, r};
  }
  // PPO: -min(r A, clip(r) A); the gradient flows only through the unclipped branch.
  if (adv == 0) return {0.0, 0.0, r};
  const double unclipped_gain = r * adv, clipped_gain = clipped * adv;
  if (unclipped_gain <= clipped_gain) return {-unclipped_gain, unclipped_gain, r};
  return {-clipped_gain, 0.0, r};
}

// Per-block statistics, reduced in float64 / integers (deterministic for a given launch shape).
struct Totals {
  double loss, ratio, logprob, entropy;
  unsigned long long terms, rows, clip_high, clip_low, pos, pos_clipped, neg, neg_clipped;
};

}  // namespace cispo
}  // namespace cuda
}  // namespace forge
