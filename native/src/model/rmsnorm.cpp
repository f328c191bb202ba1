// RMSNorm forward and backward, row-parallel. With r = inv_rms and xhat = x r:
//   y_j = xhat_j w_j
//   dx_j = r (dy_j w_j - xhat_j mean_k(dy_k w_k xhat_k)),  dw_j = sum_rows dy_j xhat_j
#include "model/rmsnorm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/simd.hpp"
#include "common/thread_pool.hpp"

namespace forge::model {

namespace {

constexpr int64_t kChunkRows = 64;  // fixed row chunk of the dweight reduction (thread-count independent)

int64_t grain_rows(int64_t dim) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1)); }

FORGE_HOT void forward_rows(int64_t begin, int64_t end, int64_t dim, float eps, const float* x, const float* w,
                            float* y, float* inv_rms) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xi = x + i * dim;
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    inv_rms[i] = r;
    float* yi = y + i * dim;
    for (int64_t j = 0; j < dim; ++j) yi[j] = xi[j] * r * w[j];
  }
}

// Rows [begin, end): dx += ..., and this chunk's dweight partial (float64) into `dw`.
FORGE_HOT void backward_rows(int64_t begin, int64_t end, int64_t dim, const float* x, const float* w,
                             const float* inv_rms, const float* dy, float* dx, double* dw) {
  for (int64_t i = begin; i < end; ++i) {
    const float* xi = x + i * dim;
    const float* gi = dy + i * dim;
    const double r = inv_rms[i];
    double dot = 0.0;  // sum_k dy_k w_k xhat_k
    for (int64_t j = 0; j < dim; ++j) {
      const double xhat = xi[j] * r;
      dot += static_cast<double>(gi[j]) * w[j] * xhat;
      dw[j] += static_cast<double>(gi[j]) * xhat;
    }
    const double mean = dot / static_cast<double>(dim);
    float* di = dx + i * dim;
    for (int64_t j = 0; j < dim; ++j)
      di[j] += static_cast<float>(r * (static_cast<double>(gi[j]) * w[j] - xi[j] * r * mean));
  }
}

}  // namespace

void rmsnorm_forward(int64_t n, int64_t dim, float eps, const float* x, const float* weight, float* y,
                     float* inv_rms) {
  parallel_for(n, grain_rows(dim),
               [&](int64_t b, int64_t e) { forward_rows(b, e, dim, eps, x, weight, y, inv_rms); });
}

void rmsnorm_backward(int64_t n, int64_t dim, const float* x, const float* weight, const float* inv_rms,
                      const float* dy, float* dx, float* dweight) {
  const int64_t chunks = (n + kChunkRows - 1) / kChunkRows;
  std::vector<double> partial(static_cast<size_t>(chunks * dim), 0.0);
  const int64_t chunk_grain = std::max<int64_t>(1, grain_rows(dim) / kChunkRows);
  parallel_for(chunks, chunk_grain, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c)
      backward_rows(c * kChunkRows, std::min(n, (c + 1) * kChunkRows), dim, x, weight, inv_rms, dy, dx,
                    partial.data() + c * dim);
  });
  for (int64_t j = 0; j < dim; ++j) {
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[static_cast<size_t>(c * dim + j)];
    dweight[j] = static_cast<float>(s);
  }
}

}  // namespace forge::model
