/*
 * forge_bench.h — benchmark baselines and probes. NOT part of the stable API: these symbols exist so
 * that the benchmarks in bench/ can compare a kernel against a plain implementation compiled with the
 * same compiler, flags and thread pool. They may change or disappear in any release.
 */
#ifndef FORGE_FORGE_BENCH_H
#define FORGE_FORGE_BENCH_H

#include "forge.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Benchmark baseline for forge_cispo_loss: same arguments, same results (to float rounding), computed
 * the straightforward two-pass way: a full [N, V] float32 softmax is materialised first (max pass,
 * exp + sum pass writing it, normalise pass), then the loss, statistics and gradient are read from it.
 * `workspace_bytes` (may be NULL) receives the bytes it allocated. */
FORGE_API forge_status forge_bench_cispo_two_pass(int64_t num_rows, int64_t vocab_size, const float* logits,
                                                  int64_t num_terms, const int32_t* term_node,
                                                  const int32_t* term_target, const float* term_old_logprob,
                                                  const float* term_advantage, const forge_cispo_options* options,
                                                  float* dlogits, float* logprobs_out, forge_cispo_stats* stats,
                                                  int64_t* workspace_bytes);

/* Upper bound of the bytes forge_cispo_loss allocates for a problem of this shape (term index,
 * per-chunk partial sums, target-column fix lists). */
FORGE_API forge_status forge_bench_cispo_fused_workspace(int64_t num_rows, int64_t vocab_size, int64_t num_terms,
                                                         int64_t* workspace_bytes);

/* Benchmark baseline for forge_gemm: same arguments, computed the textbook way (one dot product per
 * element of C, no blocking or packing). */
FORGE_API forge_status forge_bench_gemm_naive(forge_transpose trans_a, forge_transpose trans_b, int64_t m, int64_t n,
                                              int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                                              int64_t ldb, float beta, float* c, int64_t ldc);

#ifdef __cplusplus
}
#endif

#endif /* FORGE_FORGE_BENCH_H */
