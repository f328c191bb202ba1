// SwiGLU forward / backward. The sigmoid needs an exp per element (n x ffn per layer, as many as the
// logits row of a small vocabulary), so it uses the vectorised exp of the loss kernels and their
// per-ISA width dispatch (loss/online_logsumexp.hpp) rather than libm's scalar expf.
#include "model/swiglu.hpp"

#include <algorithm>

#include "common/thread_pool.hpp"
#include "loss/online_logsumexp.hpp"

namespace forge::model {

namespace {

using loss::Vec;

constexpr int64_t kGrain = 8192;  // elements per task; below that one thread does it all

template <int W>
FORGE_LOSS_INLINE typename Vec<W>::f vsigmoid(const typename Vec<W>::f& g) {
  // exp(-g) saturates at exp(88) for g < -88 (sigmoid ~ 6e-39 instead of ~0) and gives 0 for g > 87.
  return 1.0f / (1.0f + loss::vexp<W>(-g));
}
FORGE_LOSS_INLINE float ssigmoid(float g) { return 1.0f / (1.0f + loss::sexp(-g)); }

struct Forward {
  template <int W>
  FORGE_LOSS_INLINE static void run(int64_t b, int64_t e, const float* gate, const float* up, float* act) {
    using F = typename Vec<W>::f;
    int64_t i = b;
    for (; i + W <= e; i += W) {
      const F g = loss::load<W>(gate + i);
      loss::store<W>(act + i, g * vsigmoid<W>(g) * loss::load<W>(up + i));
    }
    for (; i < e; ++i) act[i] = gate[i] * ssigmoid(gate[i]) * up[i];
  }
};

struct Backward {
  template <int W>
  FORGE_LOSS_INLINE static void run(int64_t b, int64_t e, const float* gate, const float* up, const float* d_act,
                                    float* d_gate, float* d_up) {
    using F = typename Vec<W>::f;
    int64_t i = b;
    for (; i + W <= e; i += W) {
      const F g = loss::load<W>(gate + i), u = loss::load<W>(up + i), da = loss::load<W>(d_act + i);
      const F s = vsigmoid<W>(g);
      loss::store<W>(d_gate + i, da * u * s * (1.0f + g * (1.0f - s)));
      loss::store<W>(d_up + i, da * g * s);
    }
    for (; i < e; ++i) {
      const float g = gate[i], u = up[i], da = d_act[i], s = ssigmoid(g);
      d_gate[i] = da * u * s * (1.0f + g * (1.0f - s));
      d_up[i] = da * g * s;
    }
  }
};

}  // namespace

void swiglu_forward(int64_t count, const float* gate, const float* up, float* act) {
  parallel_for(count, kGrain, [&](int64_t b, int64_t e) { loss::dispatch_width<Forward>(b, e, gate, up, act); });
}

void swiglu_backward(int64_t count, const float* gate, const float* up, const float* d_act, float* d_gate,
                     float* d_up) {
  parallel_for(count, kGrain,
               [&](int64_t b, int64_t e) { loss::dispatch_width<Backward>(b, e, gate, up, d_act, d_gate, d_up); });
}

}  // namespace forge::model
