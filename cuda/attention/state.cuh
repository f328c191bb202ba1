// The online-softmax attention state on the device (the CUDA twin of native/src/attention/state.hpp),
// written once and used by the merge kernels and tree attention.
//
// One State summarises attention of one query row (one head) over a set of keys, for the N channels
// of the head this thread owns:
//   m = max score seen (natural-log units; -inf: empty), d = sum exp(score - m),
//   o[c] = sum exp(score - m) * v[c] (unnormalised until normalize()).
// States over disjoint key sets merge exactly; lse = m + log d. Normalised states (o / d, lse) are what
// kernels return and what merge_normalized takes: (o, lse) is the state m = lse, d = 1.
// Every thread of a head holds the same m and d (they depend on the scores only), so no cross-thread
// communication is needed here; reductions of scores across threads are the caller's.
#pragma once

#include <cuda_runtime.h>
#include <cmath>

namespace forge {
namespace cuda {
namespace attention {

// exp(m_old - m_new), with the empty state (m_old = -inf) giving 0 rather than exp(-inf - -inf) = NaN.
__device__ __forceinline__ float rescale_factor(float m_old, float m_new) {
  return m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
}

template <int N>
struct State {
  float o[N];
  float m;
  float d;

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int c = 0; c < N; ++c) o[c] = 0.0f;
    m = -INFINITY;
    d = 0.0f;
  }

  // Folds in one key with (already scaled) score s and values v; s = -inf (masked) is a no-op.
  __device__ __forceinline__ void update(float s, const float (&v)[N]) {
    if (s == -INFINITY) return;
    const float m_new = fmaxf(m, s);
    const float alpha = rescale_factor(m, m_new);
    const float p = expf(s - m_new);
    d = d * alpha + p;
#pragma unroll
    for (int c = 0; c < N; ++c) o[c] = o[c] * alpha + p * v[c];
    m = m_new;
  }

  // Merges another unnormalised state over a disjoint key set.
  __device__ __forceinline__ void merge(float other_m, float other_d, const float (&other_o)[N]) {
    if (other_m == -INFINITY) return;  // empty: its o is never read
    const float m_new = fmaxf(m, other_m);
    const float a = rescale_factor(m, m_new), b = expf(other_m - m_new);
    d = d * a + other_d * b;
#pragma unroll
    for (int c = 0; c < N; ++c) o[c] = o[c] * a + other_o[c] * b;
    m = m_new;
  }
  __device__ __forceinline__ void merge(const State& other) { merge(other.m, other.d, other.o); }

  // Merges a normalised state (o, lse); lse = -inf is the empty state. lse must not be NaN or +inf
  // (callers check: the result would be NaN).
  __device__ __forceinline__ void merge_normalized(const float (&other_o)[N], float lse) { merge(lse, 1.0f, other_o); }

  __device__ __forceinline__ bool empty() const { return !(d > 0.0f); }

  // o /= d in place (o = 0 for the empty state); m and d are kept, so lse() stays valid.
  __device__ __forceinline__ void normalize() {
    const float inv = empty() ? 0.0f : 1.0f / d;
#pragma unroll
    for (int c = 0; c < N; ++c) o[c] *= inv;
  }

  // Natural-log sum of exp(scores): m + log d, or -inf for the empty state.
  __device__ __forceinline__ float lse() const { return empty() ? -INFINITY : m + logf(d); }
};

}  // namespace attention
}  // namespace cuda
}  // namespace forge
