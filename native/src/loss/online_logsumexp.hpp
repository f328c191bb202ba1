// Row primitives of the policy-gradient loss kernels: a vectorised float exp, the one-pass online
// log-sum-exp of a logits row (running max, sum of exponentials, entropy accumulator), the finiteness
// scan and the rescaling map of the gradient pass; plus the choice of vector width per CPU.
//
// Why not FORGE_HOT: these loops are float max / sum reductions, which GCC does not auto-vectorise
// without -ffast-math, so they are written with GCC/Clang vector extensions. A vector type must match
// the register width of the instruction set it is compiled for (GCC lowers a wider one lane by lane,
// measured 5-10x slower), while target_clones compiles one source for every ISA. So the primitives
// are templates on the width W (floats per vector), always inlined into a kernel template, and
// dispatch_width() runs the kernel's instantiation for the widest ISA the CPU has: AVX-512 (W = 16),
// AVX2 (W = 8) or the baseline (W = 4).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "common/vector_width.hpp"

#if !defined(__GNUC__)
#error "the forge loss kernels need GCC or Clang vector extensions"
#endif
#define FORGE_LOSS_INLINE inline __attribute__((always_inline))

// Vector types wider than the baseline ISA "change the ABI" of calls that never happen (everything here
// is inlined); GCC reports it when the instantiating file ends, so the warning stays off for the
// rest of the including file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace forge::loss {

constexpr int64_t kBlock = 1024;  // 4 KiB: read once for the block max, again from L1 for the exps
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

template <int W>
struct Vec {
  typedef float f __attribute__((vector_size(W * sizeof(float))));
  typedef int32_t i __attribute__((vector_size(W * sizeof(int32_t))));
  typedef double d __attribute__((vector_size(W / 2 * sizeof(double))));  // half the lanes, same bytes
};

template <int W>
FORGE_LOSS_INLINE typename Vec<W>::f splat(float x) {
  typename Vec<W>::f v;
  for (int k = 0; k < W; ++k) v[k] = x;
  return v;
}
template <int W>
FORGE_LOSS_INLINE typename Vec<W>::f load(const float* p) {
  typename Vec<W>::f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <int W>
FORGE_LOSS_INLINE void store(float* p, const typename Vec<W>::f& v) {
  std::memcpy(p, &v, sizeof v);
}

// The low and high halves of a float vector, widened to double.
template <int W, size_t Offset, size_t... K>
FORGE_LOSS_INLINE typename Vec<W>::d widen_part(const typename Vec<W>::f& x, std::index_sequence<K...>) {
  return __builtin_convertvector(__builtin_shufflevector(x, x, (K + Offset)...), typename Vec<W>::d);
}
template <int W>
FORGE_LOSS_INLINE typename Vec<W>::d widen_lo(const typename Vec<W>::f& x) {
  return widen_part<W, 0>(x, std::make_index_sequence<W / 2>());
}
template <int W>
FORGE_LOSS_INLINE typename Vec<W>::d widen_hi(const typename Vec<W>::f& x) {
  return widen_part<W, W / 2>(x, std::make_index_sequence<W / 2>());
}

// exp(x) in float, within 1e-7 relative (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6
// polynomial, scaled by 2^n through the exponent bits). Results below FLT_MIN flush to exactly 0;
// x > 88 gives exp(88) (the kernels only pass x = z - max <= 0); NaN stays NaN. F is a float vector
// (I its int32 twin) or plain float: the same arithmetic, so a row's scalar tail matches its body.
// ln(FLT_MIN), and a top that keeps the exponent field of 2^n below 255 (Inf).
constexpr float kExpLo = -87.3365447504019f, kExpHi = 88.0f;

template <class F, class I>
FORGE_LOSS_INLINE F exp_body(const F& x, const F& lo, const F& hi, const F& zero) {
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  F xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const F t = xc * 1.44269504088896341f + kRound;
  const F n = t - kRound;
  F r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  I ti;
  std::memcpy(&ti, &t, sizeof ti);  // a register move for vectors and scalars alike
  const I bits = (ti - 0x4B400000 + 127) << 23;  // n + 127 in the exponent field
  F scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const F y = p * scale;
  return x < lo ? zero : y;
}

template <int W>
FORGE_LOSS_INLINE typename Vec<W>::f vexp(const typename Vec<W>::f& x) {
  return exp_body<typename Vec<W>::f, typename Vec<W>::i>(x, splat<W>(kExpLo), splat<W>(kExpHi), splat<W>(0.0f));
}
FORGE_LOSS_INLINE float sexp(float x) {
  return exp_body<float, int32_t>(x, kExpLo, kExpHi, 0.0f);
}

// Summary of one logits row z[0..V): m = max z, d = sum exp(z - m), t = sum exp(z - m) (z - m).
// Then lse = m + log d and the softmax entropy H = lse - E[z] = log d - t / d; keeping t relative to
// m avoids the cancellation of lse - E[z] when the logits carry a large offset.
struct RowSummary {
  float m = kNegInf;
  double d = 0.0;
  double t = 0.0;
  bool finite = true;

  double lse() const { return static_cast<double>(m) + std::log(d); }
  double entropy() const { return std::log(d) - t / d; }
};

// The online pass: the row is read once from memory, in blocks of kBlock values: the block max
// first, then (rescaling the accumulators when the max moved) the exponentials of the block from L1.
// Two vectors' exponentials are added in float before joining the float64 accumulators: one rounding
// (~6e-8 relative, the size of exp's own error) for half the conversion work; the running sums are
// float64, so their error does not grow with V. Finiteness rides along (z * 0 is NaN exactly when z
// is NaN or Inf); when `finite` is false the other fields are meaningless.
//
// With kKeep, the exponentials are also kept for the gradient pass: e[i] = exp(z[i] - block_max[b])
// for i in block b, block_max[b] being the running max when block b was read (rescale_exps turns
// them into the softmax with one multiply each). A row is ~V * 4 bytes, small enough to stay in L2.
template <int W, bool kKeep = false>
FORGE_LOSS_INLINE RowSummary online_row(const float* z, int64_t n, float* e_keep = nullptr,
                                        float* block_max = nullptr) {
  using F = typename Vec<W>::f;
  using D = typename Vec<W>::d;
  float m = kNegInf;
  D d_lo = {}, d_hi = {}, t_lo = {}, t_hi = {};
  F fin = {};
  const F zero = {};
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = n - start < kBlock ? n - start : kBlock;
    const float* b = z + start;
    const int64_t full = len - len % W;
    F mx = splat<W>(kNegInf);
    for (int64_t i = 0; i < full; i += W) {
      const F v = load<W>(b + i);
      mx = v > mx ? v : mx;
      fin += v * zero;
    }
    float bm = mx[0];
    for (int k = 1; k < W; ++k) bm = mx[k] > bm ? mx[k] : bm;
    for (int64_t i = full; i < len; ++i) {
      bm = b[i] > bm ? b[i] : bm;
      fin[0] += b[i] * 0.0f;
    }
    if (bm > m) {
      if (m != kNegInf) {
        // t_new = a (t + (m_old - m_new) d), d_new = a d with a = exp(m_old - m_new).
        const double delta = static_cast<double>(m) - static_cast<double>(bm);
        const double a = std::exp(delta);
        t_lo = a * (t_lo + delta * d_lo);
        t_hi = a * (t_hi + delta * d_hi);
        d_lo = a * d_lo;
        d_hi = a * d_hi;
      }
      m = bm;
    }
    if (kKeep) block_max[start / kBlock] = m;
    if (m == kNegInf) continue;  // nothing but -inf or NaN so far: flagged by fin
    const F vm = splat<W>(m);
    float* keep = kKeep ? e_keep + start : nullptr;
    int64_t i = 0;
    for (; i + 2 * W <= full; i += 2 * W) {
      const F x0 = load<W>(b + i) - vm, x1 = load<W>(b + i + W) - vm;
      const F e0 = vexp<W>(x0), e1 = vexp<W>(x1);
      if (kKeep) {
        store<W>(keep + i, e0);
        store<W>(keep + i + W, e1);
      }
      const F e = e0 + e1, ex = e0 * x0 + e1 * x1;
      d_lo += widen_lo<W>(e);
      d_hi += widen_hi<W>(e);
      t_lo += widen_lo<W>(ex);
      t_hi += widen_hi<W>(ex);
    }
    for (; i < full; i += W) {
      const F x = load<W>(b + i) - vm;
      const F e = vexp<W>(x), ex = e * x;
      if (kKeep) store<W>(keep + i, e);
      d_lo += widen_lo<W>(e);
      d_hi += widen_hi<W>(e);
      t_lo += widen_lo<W>(ex);
      t_hi += widen_hi<W>(ex);
    }
    for (i = full; i < len; ++i) {
      const float x = b[i] - m;
      const float e = sexp(x);
      if (kKeep) keep[i] = e;
      d_lo[0] += static_cast<double>(e);
      t_lo[0] += static_cast<double>(e * x);
    }
  }
  RowSummary s;
  s.m = m;
  for (int k = 0; k < W / 2; ++k) {
    s.d += d_lo[k] + d_hi[k];
    s.t += t_lo[k] + t_hi[k];
  }
  float f = 0.0f;
  for (int k = 0; k < W; ++k) f += fin[k];
  s.finite = f == 0.0f && m != kNegInf;
  return s;
}

// True when every z[0..n) is finite (the same z * 0 trick).
template <int W>
FORGE_LOSS_INLINE bool row_finite(const float* z, int64_t n) {
  using F = typename Vec<W>::f;
  F fin = {};
  const F zero = {};
  const int64_t full = n - n % W;
  for (int64_t i = 0; i < full; i += W) fin += load<W>(z + i) * zero;
  float f = 0.0f;
  for (int64_t i = full; i < n; ++i) f += z[i] * 0.0f;
  for (int k = 0; k < W; ++k) f += fin[k];
  return f == 0.0f;
}

// Column of the first NaN/Inf in z[0..n), or -1 (the slow path, only after a check failed).
inline int64_t first_non_finite(const float* z, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(z[i])) return i;
  return -1;
}

// out[i] = scale * softmax-numerator from the kept exponentials of online_row<W, true>:
// scale * e[i] * exp(block_max[b] - m) with m the row's final max. One multiply per element instead
// of an exp; `out` may be the logits row (in place: the logits are no longer read).
template <int W>
FORGE_LOSS_INLINE void rescale_exps(const float* e, const float* block_max, float* out, int64_t n, float m,
                                    double scale) {
  using F = typename Vec<W>::f;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = n - start < kBlock ? n - start : kBlock;
    const float f = static_cast<float>(scale * std::exp(static_cast<double>(block_max[start / kBlock]) - m));
    const F vf = splat<W>(f);
    const float* eb = e + start;
    float* ob = out + start;
    const int64_t full = len - len % W;
    for (int64_t i = 0; i < full; i += W) store<W>(ob + i, vf * load<W>(eb + i));
    for (int64_t i = full; i < len; ++i) ob[i] = f * eb[i];
  }
}

// ---- Width dispatch --------------------------------------------------------------------------------
// Kernel is a struct with `template <int W> static void run(Args...)` (always inline). In the portable
// x86-64 build (FORGE_TARGET_CLONES) each width is compiled for its ISA and picked once per process;
// elsewhere the compiler's own target decides.
#if FORGE_RUNTIME_WIDTH
template <class Kernel, class... Args>
__attribute__((target("arch=x86-64-v4"))) void run_w16(Args&&... args) {
  Kernel::template run<16>(std::forward<Args>(args)...);
}
template <class Kernel, class... Args>
__attribute__((target("arch=x86-64-v3"))) void run_w8(Args&&... args) {
  Kernel::template run<8>(std::forward<Args>(args)...);
}
template <class Kernel, class... Args>
void run_w4(Args&&... args) {
  Kernel::template run<4>(std::forward<Args>(args)...);
}
template <class Kernel, class... Args>
void dispatch_width(Args&&... args) {
  switch (cpu_vector_width()) {
    case 16: return run_w16<Kernel>(std::forward<Args>(args)...);
    case 8: return run_w8<Kernel>(std::forward<Args>(args)...);
    default: return run_w4<Kernel>(std::forward<Args>(args)...);
  }
}
#else
template <class Kernel, class... Args>
void dispatch_width(Args&&... args) {
  Kernel::template run<kNativeWidth>(std::forward<Args>(args)...);
}
#endif

}  // namespace forge::loss
