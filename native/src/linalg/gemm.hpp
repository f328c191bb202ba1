// The CPU single-precision matrix multiply the nano policy (and anything else) runs on:
//   C[m, n] = alpha * op(A) op(B) + beta * C
// with op(A) [m, k] either A itself (row-major, leading dimension lda >= k) or the transpose of an A
// stored [k, m] (lda >= m), and likewise op(B) [k, n] from B [k, n] or B stored [n, k]. beta = 0
// never reads C (it may hold garbage or NaN). Blocked and packed (kernels/gemm.cpp), multi-threaded
// over output tiles; each output element is produced by one thread in a fixed order, so the result
// does not depend on the thread count.
//
// No argument checks here: callers inside the library pass shapes they built themselves; the C ABI
// entry point forge_gemm validates before calling.
#pragma once

#include <cstdint>

namespace forge::linalg {

enum class Op { N, T };

void gemm(Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Shorthands for the dense, contiguous cases the model uses (leading dimensions from the shapes).
// C [m, n] = A [m, k] B [k, n]  (+ C when accumulate)
inline void matmul_nn(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                      bool accumulate = false) {
  gemm(Op::N, Op::N, m, n, k, 1.0f, a, k, b, n, accumulate ? 1.0f : 0.0f, c, n);
}
// C [m, n] = A [m, k] B^T, B stored [n, k]
inline void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                      bool accumulate = false) {
  gemm(Op::N, Op::T, m, n, k, 1.0f, a, k, b, k, accumulate ? 1.0f : 0.0f, c, n);
}
// C [m, n] = A^T B [k, n], A stored [k, m]
inline void matmul_tn(int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                      bool accumulate = false) {
  gemm(Op::T, Op::N, m, n, k, 1.0f, a, m, b, n, accumulate ? 1.0f : 0.0f, c, n);
}

}  // namespace forge::linalg
