// forge_adamw_step and forge_grad_sq_norm: the optimizer of the embedded trainer. Both are memory
// bound streams over flat float32 buffers, so each reads its arrays once per pass: the AdamW update
// reads params, grads, m and v and writes params, m and v in one fused loop. The gradients are read
// once more beforehand, to check them, because a non-finite gradient must leave every buffer untouched
// and the fused loop cannot take back what it has written.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/simd.hpp"
#include "common/thread_pool.hpp"

namespace forge::optim {
namespace {

// Reductions run over fixed blocks summed in block order, so their value does not depend on how
// blocks are shared among threads.
constexpr int64_t kBlock = int64_t{1} << 14;
// Parallel grain: below ~64K elements waking the pool costs more than the stream itself.
constexpr int64_t kBlocksPerTask = 4;
constexpr int64_t kUpdateGrain = int64_t{1} << 16;
// Larger arrays could not be addressed as float[n].
constexpr int64_t kMaxElements = PTRDIFF_MAX / static_cast<int64_t>(sizeof(float));

int64_t num_blocks(int64_t n) { return (n + kBlock - 1) / kBlock; }

bool is_finite_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}

// Sum of squares in float64 with 8 independent accumulators (vectorisable without reassociating).
FORGE_HOT double block_sq_sum(const float* __restrict x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double d = x[i + k];
      acc[k] += d * d;
    }
  double tail = 0;
  for (; i < n; ++i) {
    const double d = x[i];
    tail += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// True when every x[i] * scale is finite. An exponent-bits test (integer ops) vectorises where a
// floating-point flag would not.
FORGE_HOT bool block_scaled_finite(const float* __restrict x, int64_t n, float scale) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float y = x[i] * scale;
    uint32_t bits;
    std::memcpy(&bits, &y, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

struct Coefficients {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float step_size;     // lr / (1 - beta1^t)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^t)
  float eps;
  float decay;  // 1 - lr * weight_decay
  float scale;  // grad_scale
};

FORGE_HOT void update_block(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                            int64_t n, const Coefficients c) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * c.scale;
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) * c.inv_sqrt_bc2 + c.eps;
    p[i] = p[i] * c.decay - c.step_size * mi / denom;
  }
}

std::string num(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

forge_status check_length(int64_t n) {
  if (n < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "n: expected a length >= 0, got " + std::to_string(n));
  if (n > kMaxElements)
    return fail(FORGE_ERR_OUT_OF_RANGE, "n: " + std::to_string(n) + " elements cannot be addressed");
  return FORGE_OK;
}

forge_status check_array(const void* data, int64_t n, const char* name) {
  if (n > 0 && data == nullptr)
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": NULL with n = " + std::to_string(n));
  return FORGE_OK;
}

bool overlap(const void* a, const void* b, int64_t n) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  const auto bytes = static_cast<uintptr_t>(n) * sizeof(float);
  return n > 0 && x < y + bytes && y < x + bytes;
}

forge_status check_options(const forge_adamw_options* o) {
  if (o == nullptr) return fail(FORGE_ERR_INVALID_ARGUMENT, "options: NULL");
  auto bad = [](const char* name, float x, const char* expected) {
    return fail(std::isfinite(x) ? FORGE_ERR_OUT_OF_RANGE : FORGE_ERR_NON_FINITE,
                std::string("options.") + name + ": expected " + expected + ", got " + num(x));
  };
  if (!(std::isfinite(o->lr) && o->lr >= 0)) return bad("lr", o->lr, "a finite number >= 0");
  if (!(o->beta1 >= 0 && o->beta1 < 1)) return bad("beta1", o->beta1, "a number in [0, 1)");
  if (!(o->beta2 >= 0 && o->beta2 < 1)) return bad("beta2", o->beta2, "a number in [0, 1)");
  if (!(std::isfinite(o->eps) && o->eps > 0)) return bad("eps", o->eps, "a finite number > 0");
  if (!(std::isfinite(o->weight_decay) && o->weight_decay >= 0))
    return bad("weight_decay", o->weight_decay, "a finite number >= 0");
  return FORGE_OK;
}

// Index of the first i with grads[i] * scale non-finite, or -1. Blocks are checked in parallel; the
// first bad block is then searched serially.
int64_t first_bad_gradient(const float* grads, int64_t n, float scale) {
  const int64_t blocks = num_blocks(n);
  std::vector<uint8_t> ok(static_cast<size_t>(blocks));
  parallel_for(blocks, kBlocksPerTask, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t begin = k * kBlock;
      ok[static_cast<size_t>(k)] = block_scaled_finite(grads + begin, std::min(kBlock, n - begin), scale);
    }
  });
  for (int64_t k = 0; k < blocks; ++k) {
    if (ok[static_cast<size_t>(k)]) continue;
    const int64_t end = std::min(n, (k + 1) * kBlock);
    for (int64_t i = k * kBlock; i < end; ++i)
      if (!is_finite_bits(grads[i] * scale)) return i;
  }
  return -1;
}

forge_status non_finite_gradient(const float* grads, int64_t i, float scale) {
  const std::string at = "grads[" + std::to_string(i) + "]";
  if (!std::isfinite(grads[i]))
    return fail(FORGE_ERR_NON_FINITE, at + ": expected a finite gradient, got " + num(grads[i]));
  return fail(FORGE_ERR_NON_FINITE, at + " * grad_scale: " + num(grads[i]) + " * " + num(scale) +
                                        " overflows float32 (or grad_scale is 0 and the gradient is not finite)");
}

}  // namespace
}  // namespace forge::optim

using namespace forge::optim;

extern "C" forge_status forge_grad_sq_norm(int64_t n, const float* grads, double* out) {
  return forge::guarded("forge_grad_sq_norm", [&]() -> forge_status {
    if (out == nullptr) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "out: NULL");
    *out = 0;
    if (forge_status st = check_length(n); st != FORGE_OK) return st;
    if (forge_status st = check_array(grads, n, "grads"); st != FORGE_OK) return st;
    const int64_t blocks = num_blocks(n);
    std::vector<double> sums(static_cast<size_t>(blocks));
    forge::parallel_for(blocks, kBlocksPerTask, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t begin = k * kBlock;
        sums[static_cast<size_t>(k)] = block_sq_sum(grads + begin, std::min(kBlock, n - begin));
      }
    });
    // Squares of finite floats stay far below the float64 range, so a non-finite block sum means a
    // non-finite gradient in that block.
    double total = 0;
    for (int64_t k = 0; k < blocks; ++k) {
      if (!std::isfinite(sums[static_cast<size_t>(k)])) {
        const int64_t end = std::min(n, (k + 1) * kBlock);
        for (int64_t i = k * kBlock; i < end; ++i)
          if (!std::isfinite(grads[i]))
            return forge::fail(FORGE_ERR_NON_FINITE,
                               "grads[" + std::to_string(i) + "]: expected a finite gradient, got " + num(grads[i]));
      }
      total += sums[static_cast<size_t>(k)];
    }
    *out = total;
    return FORGE_OK;
  });
}

extern "C" forge_status forge_adamw_step(int64_t n, float* params, const float* grads, float* m, float* v,
                                         int64_t step, float grad_scale, const forge_adamw_options* options) {
  return forge::guarded("forge_adamw_step", [&]() -> forge_status {
    if (forge_status st = check_length(n); st != FORGE_OK) return st;
    if (forge_status st = check_array(params, n, "params"); st != FORGE_OK) return st;
    if (forge_status st = check_array(grads, n, "grads"); st != FORGE_OK) return st;
    if (forge_status st = check_array(m, n, "m"); st != FORGE_OK) return st;
    if (forge_status st = check_array(v, n, "v"); st != FORGE_OK) return st;
    // The fused loop assumes distinct arrays (restrict); overlapping ones would give garbage.
    const void* arrays[4] = {params, grads, m, v};
    const char* names[4] = {"params", "grads", "m", "v"};
    for (int a = 0; a < 4; ++a)
      for (int b = a + 1; b < 4; ++b)
        if (overlap(arrays[a], arrays[b], n))
          return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                             std::string(names[a]) + " and " + names[b] + ": the arrays overlap");
    if (step < 1)
      return forge::fail(FORGE_ERR_OUT_OF_RANGE, "step: expected a 1-based step >= 1, got " + std::to_string(step));
    if (!std::isfinite(grad_scale))
      return forge::fail(FORGE_ERR_NON_FINITE, "grad_scale: expected a finite number >= 0, got " + num(grad_scale));
    if (grad_scale < 0)
      return forge::fail(FORGE_ERR_OUT_OF_RANGE, "grad_scale: expected a finite number >= 0, got " + num(grad_scale));
    if (forge_status st = check_options(options); st != FORGE_OK) return st;
    if (n == 0) return FORGE_OK;
    if (int64_t bad = first_bad_gradient(grads, n, grad_scale); bad >= 0)
      return non_finite_gradient(grads, bad, grad_scale);

    // Scalars in float64 from the float32 options: 1 - beta is exact there, and beta^t for beta near 1
    // and small t would lose most of its digits as 1 - beta^t in float32.
    const forge_adamw_options& o = *options;
    const double b1 = o.beta1, b2 = o.beta2, t = static_cast<double>(step);
    Coefficients c;
    c.beta1 = o.beta1;
    c.beta2 = o.beta2;
    c.one_minus_beta1 = static_cast<float>(1.0 - b1);
    c.one_minus_beta2 = static_cast<float>(1.0 - b2);
    c.step_size = static_cast<float>(static_cast<double>(o.lr) / (1.0 - std::pow(b1, t)));
    c.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(b2, t)));
    c.eps = o.eps;
    c.decay = static_cast<float>(1.0 - static_cast<double>(o.lr) * o.weight_decay);
    c.scale = grad_scale;
    forge::parallel_for(n, kUpdateGrain, [&](int64_t b, int64_t e) {
      update_block(params + b, grads + b, m + b, v + b, e - b, c);
    });
    return FORGE_OK;
  });
}
