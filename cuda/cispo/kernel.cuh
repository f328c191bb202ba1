// The fused CISPO / PPO-clip / cross-entropy row kernel: one block per logits row (rows strided over
// the grid). For a row carrying terms: one online pass over the row (max, sum of exponentials,
// entropy), the terms (logp, ratio, coefficient, statistics), then one pass writing
//   dlogits_v = (C softmax_v - S_v) / Z,  C = sum_j c_j over the row, S_v = sum of c_j targeting v,
// in the logits dtype. The target columns are computed in float64 before the row is written (the
// write may be in place) as ((C - S) p + S expm1(logp)) / Z, as on the CPU, and written last.
// Terms arrive grouped by row and sorted by target inside a row (csr_by_key), so each distinct
// target has one leader: the first term of its run.
#pragma once

#include <cuda_runtime.h>
#include <cmath>

#include <cstdint>

#include "../common/block_reduce.cuh"
#include "../common/dtype.cuh"
#include "policy.cuh"
#include "row.cuh"

namespace forge {
namespace cuda {
namespace cispo {

constexpr int kRowThreads = 256;  // with 3 blocks per SM: ~68 registers, no spills (sm_90)

template <class T>
struct RowKernelArgs {
  const T* logits;         // [N, V]
  T* dlogits;              // [N, V] or NULL; may equal logits
  int64_t num_rows, vocab_size;
  const int32_t* order;    // [J] terms grouped by row, by target inside a row
  const int32_t* start;    // [N + 1]
  const int32_t* target;   // [J]
  const float* old_logprob;
  const float* advantage;
  float* logprobs_out;     // [J] or NULL
  float* fix;              // [J] scratch: the target column's gradient, at its leader's slot
  PolicyParams params;
  bool check_all_rows;     // scan rows without terms for non-finite values too
  Totals* partials;        // [gridDim.x]
  unsigned long long* bad_at;  // first non-finite logit as row << 32 | column (atomicMin)
};

struct KernelShared {
  RowShared row;
  double sum_d[32];
  unsigned long long sum_u[32];
};

__device__ __forceinline__ bool valid_target(int32_t y, int64_t vocab_size) { return y >= 0 && y < vocab_size; }

// Offers the row's first non-finite column: each thread its first, and the atomicMin over
// row << 32 | column keeps the lowest (row, column), the one the CPU kernel names. Read before any
// in-place write of the row.
template <class T>
__device__ __forceinline__ void mark_non_finite(const T* z, int64_t V, int64_t row, unsigned long long* bad_at) {
  int64_t first = V;
  row_chunks(z, V, true, [&](int64_t c0, const auto& x) {
    int64_t c = c0;
    for (float v : x) {
      if (!isfinite(v) && c < first) first = c;
      ++c;
    }
  });
  if (first < V) atomicMin(bad_at, (static_cast<unsigned long long>(row) << 32) | static_cast<unsigned long long>(first));
}

template <class T>
__global__ void __launch_bounds__(kRowThreads, 3) cispo_rows_kernel(RowKernelArgs<T> a) {
  __shared__ KernelShared sh;
  const PolicyParams& p = a.params;
  const int64_t V = a.vocab_size;
  // This thread's share of the statistics (counts in 32 bits: fewer than 2^31 terms; fewer registers).
  PolicySums<unsigned> my;

  for (int64_t row = blockIdx.x; row < a.num_rows; row += gridDim.x) {
    const T* z = a.logits + row * V;
    T* dl = a.dlogits ? a.dlogits + row * V : nullptr;
    const int32_t begin = a.start[row], end = a.start[row + 1];

    if (begin == end) {
      if (a.check_all_rows) {
        mark_non_finite(z, V, row, a.bad_at);
        __syncthreads();
      }
      // In place, the zeros overwrite logits this block has finished reading (synchronised above or
      // never read).
      if (dl) fill_row(dl, V, 0.0f);
      continue;
    }

    // Pass 1: the online summary of the row.
    OnlineRow acc;
    row_chunks(z, V, true, [&](int64_t, const auto& x) { acc.add(x); });
    const RowSummary s = block_row_summary(acc, sh.row);
    if (!s.finite) {
      mark_non_finite(z, V, row, a.bad_at);
      __syncthreads();  // the column is found before an in-place fill overwrites it
      if (a.logprobs_out)
        for (int32_t i = begin + threadIdx.x; i < end; i += blockDim.x) a.logprobs_out[a.order[i]] = NAN;
      if (dl) fill_row(dl, V, NAN);  // visible when the caller does not ask for the error
      continue;
    }
    const double lse = s.lse();

    // The terms: logp, statistics, and C.
    double coef = 0.0;
    unsigned long long valid = 0;  // 64-bit only for block_sum's shared buffer
    for (int32_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int32_t j = a.order[i];
      const int32_t y = a.target[j];
      if (!valid_target(y, V)) continue;  // trusted input; skipped rather than read out of bounds
      const double logp = static_cast<double>(to_float(z[y])) - lse;
      const double adv = a.advantage[j];
      const TermValue v = policy_term(p, logp, a.old_logprob[j], adv);
      my.add_term(p, v, logp, adv);
      coef += v.coef;
      ++valid;
      if (a.logprobs_out) a.logprobs_out[j] = static_cast<float>(logp);
    }
    const double total_coef = block_sum(coef, sh.sum_d);
    const unsigned long long row_terms = block_sum(valid, sh.sum_u);
    if (threadIdx.x == 0 && row_terms > 0) {
      ++my.rows;
      my.entropy += s.entropy();
    }
    if (!dl) continue;

    // The target columns, from the logits before the row is written.
    for (int32_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int32_t y = a.target[a.order[i]];
      if (!valid_target(y, V) || (i > begin && a.target[a.order[i - 1]] == y)) continue;  // not a leader
      const double logp = static_cast<double>(to_float(z[y])) - lse;
      double same = 0.0;
      for (int32_t k = i; k < end && a.target[a.order[k]] == y; ++k) {
        const int32_t j = a.order[k];
        same += policy_term(p, logp, a.old_logprob[j], a.advantage[j]).coef;
      }
      a.fix[i] = static_cast<float>(((total_coef - same) * exp(logp) + same * expm1(logp)) * p.inv_z);
    }
    __syncthreads();  // every read of z is done before the row is written (in place)

    // Pass 2: C softmax_v / Z everywhere; the vector path needs both rows at the same alignment.
    const float scale = static_cast<float>(total_coef * p.inv_z / s.d);
    const float m = s.m;
    const bool same_alignment = ((reinterpret_cast<uintptr_t>(dl) - reinterpret_cast<uintptr_t>(z)) & 15u) == 0;
    row_chunks(z, V, same_alignment, [&](int64_t col, const auto& x) {
      constexpr int K = sizeof(x) / sizeof(float);
      float g[K];
#pragma unroll
      for (int k = 0; k < K; ++k) g[k] = scale * expf(x[k] - m);
      store_chunk<T, K>(dl, col, g);
    });
    __syncthreads();  // the target columns overwrite pass 2's values

    for (int32_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
      const int32_t y = a.target[a.order[i]];
      if (!valid_target(y, V) || (i > begin && a.target[a.order[i - 1]] == y)) continue;
      store_float(dl + y, a.fix[i]);
    }
    __syncthreads();  // before the next row's shared-memory reductions and writes
  }

  // This block's statistics, reduced in a fixed order.
  using u64 = unsigned long long;
  Totals t;
  t.loss = block_sum(my.loss, sh.sum_d);
  t.ratio = block_sum(my.ratio, sh.sum_d);
  t.logprob = block_sum(my.logprob, sh.sum_d);
  t.entropy = block_sum(my.entropy, sh.sum_d);
  t.terms = block_sum(static_cast<u64>(my.terms), sh.sum_u);
  t.rows = block_sum(static_cast<u64>(my.rows), sh.sum_u);
  t.clip_high = block_sum(static_cast<u64>(my.clip_high), sh.sum_u);
  t.clip_low = block_sum(static_cast<u64>(my.clip_low), sh.sum_u);
  t.pos = block_sum(static_cast<u64>(my.pos), sh.sum_u);
  t.pos_clipped = block_sum(static_cast<u64>(my.pos_clipped), sh.sum_u);
  t.neg = block_sum(static_cast<u64>(my.neg), sh.sum_u);
  t.neg_clipped = block_sum(static_cast<u64>(my.neg_clipped), sh.sum_u);
  if (threadIdx.x == 0) a.partials[blockIdx.x] = t;
}

// One thread sums the blocks' partials in block order.
__global__ void cispo_totals_kernel(const Totals* partials, int blocks, Totals* out) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  Totals t{};
  for (int b = 0; b < blocks; ++b) t.add_sums(partials[b]);
  *out = t;
}

}  // namespace cispo
}  // namespace cuda
}  // namespace forge
