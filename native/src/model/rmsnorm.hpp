// RMSNorm over rows of [n, dim]: y = x / sqrt(mean(x^2) + eps) * weight, and its backward.
#pragma once

#include <cstdint>

namespace forge::model {

// y [n, dim] and inv_rms [n] (1 / sqrt(mean(x^2) + eps), kept for the backward). Sums in float64.
void rmsnorm_forward(int64_t n, int64_t dim, float eps, const float* x, const float* weight, float* y,
                     float* inv_rms);

// Given dy [n, dim]: dx [n, dim] += d loss / dx (added: dx is the residual stream's gradient), and
// dweight [dim] = d loss / d weight (overwritten). dweight is reduced over fixed row chunks in float64
// and combined in chunk order, so it does not depend on the thread count.
void rmsnorm_backward(int64_t n, int64_t dim, const float* x, const float* weight, const float* inv_rms,
                      const float* dy, float* dx, float* dweight);

}  // namespace forge::model
