// RoPE tables and the in-place rotation (see rope.hpp), row-parallel.
#include "model/rope.hpp"

#include <algorithm>
#include <cmath>

#include "common/simd.hpp"
#include "common/thread_pool.hpp"

namespace forge::model {

void rope_table(int64_t n, const int32_t* positions, int64_t head_dim, float theta, RopeTable& t) {
  const int64_t half = head_dim / 2;
  t.half = half;
  t.cos.resize(static_cast<size_t>(n * half));
  t.sin.resize(static_cast<size_t>(n * half));
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  parallel_for(n, std::max<int64_t>(1, 2048 / half), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<double>(positions[r]) * inv_freq[i];
        t.cos[r * half + i] = static_cast<float>(std::cos(angle));
        t.sin[r * half + i] = static_cast<float>(std::sin(angle));
      }
  });
}

namespace {

FORGE_HOT void rotate_rows(int64_t begin, int64_t end, int64_t heads, int64_t half, const float* cos_table,
                           const float* sin_table, float* x, float sign) {
  const int64_t head_dim = 2 * half;
  for (int64_t r = begin; r < end; ++r) {
    const float* c = cos_table + r * half;
    const float* s = sin_table + r * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* lo = x + (r * heads + h) * head_dim;
      float* hi = lo + half;
      for (int64_t i = 0; i < half; ++i) {
        const float a = lo[i], b = hi[i], sn = sign * s[i];
        lo[i] = a * c[i] - b * sn;
        hi[i] = b * c[i] + a * sn;
      }
    }
  }
}

}  // namespace

void rope_apply(const RopeTable& t, int64_t n, int64_t heads, float* x, bool inverse) {
  const float sign = inverse ? -1.0f : 1.0f;
  parallel_for(n, std::max<int64_t>(1, 8192 / (heads * 2 * t.half)), [&](int64_t b, int64_t e) {
    rotate_rows(b, e, heads, t.half, t.cos.data(), t.sin.data(), x, sign);
  });
}

}  // namespace forge::model
