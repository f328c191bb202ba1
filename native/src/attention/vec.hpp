// Fixed-width SIMD for the attention loops, written with GCC/Clang vector extensions.
//
// Why not plain loops: the build keeps -ftrapping-math, under which GCC will not if-convert the
// selects of masking and exp, so those loops stay scalar. A 16-float vector type lowers to one
// AVX-512 register, two AVX2 registers or four SSE registers, so one source serves every
// FORGE_HOT clone. Also here: an exp that vectorises (libm's expf is a call) and aligned scratch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

// Passing 64-byte vectors between non-inlined functions would depend on the ISA; these helpers are
// all inline, so the ABI note GCC prints for them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

// Every helper the hot loops call is forced inline: FORGE_HOT clones the kernel function for AVX2 and
// AVX-512, and a helper left out of line would be compiled once, for the baseline ISA only.
#define FORGE_ALWAYS_INLINE inline __attribute__((always_inline))

namespace forge::attention {

constexpr int kLanes = 16;
// The alignment is explicit: GCC otherwise caps it at what the base ISA has (16 bytes), while the
// AVX-512 clone would still use 64-byte aligned moves on these types in memory.
typedef float vf __attribute__((vector_size(64), aligned(64)));
typedef int32_t vi __attribute__((vector_size(64), aligned(64)));

FORGE_ALWAYS_INLINE vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FORGE_ALWAYS_INLINE void vstore(float* p, const vf& v) { std::memcpy(p, &v, sizeof v); }
// A lane-0 vector shuffled to every lane compiles to one broadcast (`vf{} + x` would add 0.0f first,
// which is not the identity for x = -0.0f, and the spelled-out forms build the vector lane by lane).
#if defined(__clang__)
FORGE_ALWAYS_INLINE vf vsplat(float x) {
  const vf v = {x};
  return __builtin_shufflevector(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
FORGE_ALWAYS_INLINE vi vsplat_i(int32_t x) {
  const vi v = {x};
  return __builtin_shufflevector(v, v, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
}
#else
FORGE_ALWAYS_INLINE vf vsplat(float x) { return __builtin_shuffle(vf{x}, vi{}); }
FORGE_ALWAYS_INLINE vi vsplat_i(int32_t x) { return __builtin_shuffle(vi{x}, vi{}); }
#endif
FORGE_ALWAYS_INLINE vf vmax(const vf& a, const vf& b) { return a > b ? a : b; }

// exp(x) per lane for x <= 88, larger x clamped there (Cephes range reduction + degree-6 polynomial,
// relative error < 1e-7);
// x < -87 (including -inf, a masked score) gives exactly 0; NaN stays NaN.
FORGE_ALWAYS_INLINE vf vexp(const vf& x) {
  const vf lo = vsplat(-87.0f), hi = vsplat(88.0f);
  vf xc = x > lo ? x : lo;  // NaN lanes clamp too, so the int conversion below is always defined
  xc = xc < hi ? xc : hi;
  // Round to nearest by adding and removing 1.5 * 2^23.
  const vf magic = vsplat(12582912.0f);
  const vf n = (xc * 1.44269504088896341f + magic) - magic;
  vf r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vsplat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n from the exponent field; n is in [-126, 127] after the clamp.
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  vf y = p * two_n;
  y = x >= lo ? y : vf{};
  return x == x ? y : x;
}

// 64-byte aligned storage for float scratch, so vector loads never split a cache line.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
using FloatBuffer = std::vector<float, AlignedAllocator<float>>;

}  // namespace forge::attention
