// Embedding gather / scatter-add. The backward groups nodes by token (a stable counting sort) so
// that each table row is summed by one task, in node order, without atomics.
#include "model/embedding.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/thread_pool.hpp"

namespace forge::model {

void embedding_forward(int64_t n, int64_t dim, const int32_t* tokens, const float* table, float* out) {
  parallel_for(n, std::max<int64_t>(1, 16384 / dim), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      std::memcpy(out + i * dim, table + static_cast<int64_t>(tokens[i]) * dim, sizeof(float) * dim);
  });
}

void embedding_backward(int64_t n, int64_t dim, int64_t vocab, const int32_t* tokens, const float* d_out,
                        float* dtable) {
  std::vector<int64_t> start(static_cast<size_t>(vocab) + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(tokens[i]) + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(next[tokens[i]]++)] = i;
  parallel_for(vocab, std::max<int64_t>(1, 16384 / dim), [&](int64_t b, int64_t e) {
    for (int64_t v = b; v < e; ++v) {
      float* row = dtable + v * dim;
      for (int64_t k = start[v]; k < start[v + 1]; ++k) {
        const float* src = d_out + order[static_cast<size_t>(k)] * dim;
        for (int64_t j = 0; j < dim; ++j) row[j] += src[j];
      }
    }
  });
}

}  // namespace forge::model
