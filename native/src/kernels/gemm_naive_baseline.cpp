// forge_bench_gemm_naive: the benchmark baseline of forge_gemm. Same arguments, computed the textbook
// way: for each C element a dot product over k in float, no blocking, no packing; rows are split over
// the same thread pool, so a speed-up against it is per-thread work, not thread count.
// Not part of the stable API (a forge_bench.h kind of symbol; declared where it is used, in
// addon/model_binding.cpp, since forge_bench.h belongs to another kernel family).
#include <forge/forge.h>
#include <forge/forge_bench.h>

#include <cstdint>
#include <string>

#include "common/error.hpp"
#include "common/thread_pool.hpp"

extern "C" FORGE_API forge_status forge_bench_gemm_naive(forge_transpose trans_a, forge_transpose trans_b, int64_t m,
                                                         int64_t n, int64_t k, float alpha, const float* a,
                                                         int64_t lda, const float* b, int64_t ldb, float beta,
                                                         float* c, int64_t ldc) {
  return forge::guarded("forge_bench_gemm_naive", [&] {
    // Only what memory safety needs (forge_gemm has the full checks with messages).
    const bool ta = trans_a == FORGE_TRANS, tb = trans_b == FORGE_TRANS;
    if ((trans_a != FORGE_NO_TRANS && !ta) || (trans_b != FORGE_NO_TRANS && !tb))
      return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "trans_a / trans_b: expected 0 or 1");
    if (m < 0 || n < 0 || k < 0) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "m, n, k: expected >= 0");
    if (lda < (ta ? m : k) || ldb < (tb ? k : n) || ldc < n || lda < 1 || ldb < 1 || ldc < 1)
      return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "lda / ldb / ldc: shorter than a stored row");
    if ((m * k > 0 && !a) || (k * n > 0 && !b) || (m * n > 0 && !c))
      return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "a / b / c: null pointer");
    forge::parallel_for(m, 8, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < n; ++j) {
          float sum = 0.0f;
          for (int64_t p = 0; p < k; ++p)
            sum += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
          float& out = c[i * ldc + j];
          out = beta == 0.0f ? alpha * sum : alpha * sum + beta * out;
        }
    });
    return FORGE_OK;
  });
}
