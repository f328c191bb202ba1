// The online-softmax attention state, written once and used by tree attention and state merging.
//
// A state summarises attention of one query row over some set of keys:
//   m = max score seen, d = sum exp(score - m), o = sum exp(score - m) * v   (unnormalised)
// Two states over disjoint key sets merge exactly; lse = m + log d. An empty state has m = -inf,
// d = 0 and o = 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace forge::attention {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct StateScalars {
  float m = kNegInf;
  double d = 0.0;

  // Rescale factor for the old accumulator when the running max moves to `new_m`.
  static float rescale(float old_m, float new_m) {
    return old_m == kNegInf ? 0.0f : std::exp(old_m - new_m);
  }

  double lse() const { return d > 0.0 ? static_cast<double>(m) + std::log(d) : -INFINITY; }
};

// Folds a block of `count` scores (already scaled) with their value rows into (scalars, o[dim]).
// `p` is scratch of `count` floats; values[i] points at the value row of score i.
inline void state_update_block(StateScalars& s, float* o, int dim, const float* scores, int count,
                               const float* const* values, float* p) {
  float block_max = kNegInf;
  for (int i = 0; i < count; ++i) block_max = scores[i] > block_max ? scores[i] : block_max;
  if (block_max == kNegInf) return;
  float new_m = block_max > s.m ? block_max : s.m;
  float alpha = StateScalars::rescale(s.m, new_m);
  double block_sum = 0.0;
  for (int i = 0; i < count; ++i) {
    p[i] = scores[i] == kNegInf ? 0.0f : std::exp(scores[i] - new_m);
    block_sum += p[i];
  }
  if (alpha != 1.0f)
    for (int c = 0; c < dim; ++c) o[c] *= alpha;
  for (int i = 0; i < count; ++i) {
    if (p[i] == 0.0f) continue;
    const float* v = values[i];
    const float pi = p[i];
    for (int c = 0; c < dim; ++c) o[c] += pi * v[c];
  }
  s.d = s.d * alpha + block_sum;
  s.m = new_m;
}

// Merges normalised state (ob, lse_b) into normalised state (oa, lse_a) in place:
//   lse = log(e^la + e^lb), o = (e^la oa + e^lb ob) / (e^la + e^lb).
inline void state_merge_normalized(float* oa, float& lse_a, const float* ob, float lse_b, int dim) {
  if (lse_b == kNegInf) return;
  if (lse_a == kNegInf) {
    for (int c = 0; c < dim; ++c) oa[c] = ob[c];
    lse_a = lse_b;
    return;
  }
  const double m = lse_a > lse_b ? lse_a : lse_b;
  const double wa = std::exp(static_cast<double>(lse_a) - m);
  const double wb = std::exp(static_cast<double>(lse_b) - m);
  const double inv = 1.0 / (wa + wb);
  const float fa = static_cast<float>(wa * inv), fb = static_cast<float>(wb * inv);
  for (int c = 0; c < dim; ++c) oa[c] = fa * oa[c] + fb * ob[c];
  lse_a = static_cast<float>(m + std::log(wa + wb));
}

}  // namespace forge::attention
