// The online-softmax attention state, written once and used by tree attention and state merging.
//
// A state summarises attention of one query row over some set of keys:
//   m = max score seen, d = sum exp(score - m) (float64), o = sum exp(score - m) * v (unnormalised)
// Two states over disjoint key sets merge exactly; lse = m + log d. An empty state has m = -inf,
// d = 0 and o = 0. The kernels keep it for a lane group of rows at once (LaneState); normalised
// states (o / d, lse) are what they return and what the merges take.
#pragma once

#include <cmath>
#include <cstdint>

#include "attention/block_math.hpp"

namespace forge::attention {

// The online-softmax state of one lane group of rows (see block_math.hpp): m per lane as vectors,
// d per row in float64.
struct LaneState {
  vf m[kRowVecs];
  double d[kRows];

  void reset() {
    for (int v = 0; v < kRowVecs; ++v) m[v] = vsplat(kNegInf);
    for (int r = 0; r < kRows; ++r) d[r] = 0.0;
  }
};

// Folds `count` keys' score vectors (already scaled; -inf where masked) into the state. On return
// scores[i] holds the probabilities exp(score - m_new) and `alpha` the factor by which the caller
// must rescale its output accumulator before adding sum_i p_i v_i.
FORGE_ALWAYS_INLINE void lane_state_fold(LaneState& s, Lanes* scores, int count, Lanes& alpha) {
  alignas(64) float block_sum[kRows], alpha_lanes[kRows];
  for (int v = 0; v < kRowVecs; ++v) {
    vf block_max = vsplat(kNegInf);
    for (int i = 0; i < count; ++i) block_max = vmax(block_max, scores[i].v[v]);
    const vf new_m = vmax(s.m[v], block_max);
    // A lane that has seen nothing yet keeps m = -inf; subtracting 0 then keeps exp(-inf) = 0.
    const vf base = new_m == vsplat(kNegInf) ? vf{} : new_m;
    alpha.v[v] = vexp(s.m[v] - base);
    vf sum = {};
    for (int i = 0; i < count; ++i) {
      scores[i].v[v] = vexp(scores[i].v[v] - base);
      sum += scores[i].v[v];
    }
    s.m[v] = new_m;
    vstore(block_sum + v * kLanes, sum);
    vstore(alpha_lanes + v * kLanes, alpha.v[v]);
  }
  for (int r = 0; r < kRows; ++r) s.d[r] = s.d[r] * alpha_lanes[r] + block_sum[r];
}

// Row r of the group: writes o[0:dim] = acc[c][r] / d and *lse = m + log d (o = 0, lse = -inf for a
// row that saw no key). `acc` is the group's unnormalised output in lane layout.
FORGE_ALWAYS_INLINE void lane_state_finish(const LaneState& s, const float* acc, int r, int dim, float* o, float* lse) {
  const double d = s.d[r];
  if (!(d > 0.0)) {
    for (int c = 0; c < dim; ++c) o[c] = 0.0f;
    *lse = kNegInf;
    return;
  }
  const double inv = 1.0 / d;
  for (int c = 0; c < dim; ++c) o[c] = static_cast<float>(acc[static_cast<size_t>(c) * kRows + r] * inv);
  *lse = static_cast<float>(static_cast<double>(s.m[r / kLanes][r % kLanes]) + std::log(d));
}

// Merges normalised states a and b into out: lse = log(e^la + e^lb), o = (e^la oa + e^lb ob) / (...).
// Element-wise, so `out` may be the same buffer as `oa` or `ob`. lse = -inf is the empty state; an
// empty side's o is never read.
FORGE_ALWAYS_INLINE void state_merge_pair(const float* oa, float la, const float* ob, float lb, int dim, float* out,
                             float* lse_out) {
  if (la == kNegInf || lb == kNegInf) {
    const float* src = la == kNegInf ? (lb == kNegInf ? nullptr : ob) : oa;
    for (int c = 0; c < dim; ++c) out[c] = src ? src[c] : 0.0f;
    *lse_out = la == kNegInf ? lb : la;
    return;
  }
  const double m = la > lb ? la : lb;
  const double wa = std::exp(static_cast<double>(la) - m), wb = std::exp(static_cast<double>(lb) - m);
  const double inv = 1.0 / (wa + wb);
  const double fa = wa * inv, fb = wb * inv;
  for (int c = 0; c < dim; ++c) out[c] = static_cast<float>(fa * oa[c] + fb * ob[c]);
  *lse_out = static_cast<float>(m + std::log(wa + wb));
}

// N-way merge of normalised states (o_i = o_at(i), lse_i = lse_at(i)) into out: the same formula
// with every weight e^(lse_i - max) summed and applied in float64. `acc` is scratch of dim doubles.
template <class OAt, class LseAt>
FORGE_ALWAYS_INLINE void state_merge_many(int64_t count, OAt o_at, LseAt lse_at, int dim, double* acc, float* out,
                             float* lse_out) {
  float m = kNegInf;
  for (int64_t i = 0; i < count; ++i) m = lse_at(i) > m ? lse_at(i) : m;
  for (int c = 0; c < dim; ++c) acc[c] = 0.0;
  if (m == kNegInf) {  // every state empty (or none)
    for (int c = 0; c < dim; ++c) out[c] = 0.0f;
    *lse_out = kNegInf;
    return;
  }
  double total = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const float l = lse_at(i);
    if (l == kNegInf) continue;
    const double w = std::exp(static_cast<double>(l) - m);
    total += w;
    const float* o = o_at(i);
    for (int c = 0; c < dim; ++c) acc[c] += w * o[c];
  }
  const double inv = 1.0 / total;
  for (int c = 0; c < dim; ++c) out[c] = static_cast<float>(acc[c] * inv);
  *lse_out = static_cast<float>(m + std::log(total));
}

}  // namespace forge::attention
