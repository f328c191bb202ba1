// Which SIMD width the width-templated kernels (GEMM, the loss rows) run at. In the portable x86-64
// build (FORGE_TARGET_CLONES) each kernel is compiled for AVX-512 (16 floats), AVX2 (8) and the
// baseline (4) and the widest the CPU runs is picked once per process; FORGE_VECTOR_WIDTH=4 or 8 caps
// it, so tests reach the narrower paths on a wide machine. Elsewhere the compiler's target decides.
#pragma once

#include <cstdlib>

namespace forge {

#if defined(FORGE_TARGET_CLONES) && defined(__x86_64__) && !defined(__clang__)
#define FORGE_RUNTIME_WIDTH 1
inline int cpu_vector_width() {
  static const int width = [] {
    __builtin_cpu_init();
    int w = __builtin_cpu_supports("x86-64-v4") ? 16 : __builtin_cpu_supports("x86-64-v3") ? 8 : 4;
    if (const char* cap = std::getenv("FORGE_VECTOR_WIDTH")) {
      const int c = std::atoi(cap);
      if (c == 4 || c == 8) w = c < w ? c : w;
    }
    return w;
  }();
  return width;
}
#else
#if defined(__AVX512F__)
constexpr int kNativeWidth = 16;
#elif defined(__AVX2__)
constexpr int kNativeWidth = 8;
#else
constexpr int kNativeWidth = 4;
#endif
inline int cpu_vector_width() { return kNativeWidth; }
#endif

}  // namespace forge
