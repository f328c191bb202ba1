// The parts of the policy-gradient loss that do not touch the logits rows: argument validation, the
// grouping of terms by node (CSR), the fixed row chunking and the deterministic reduction of per-chunk
// statistics (the per-term formula itself, shared with the device kernel, is policy_term_math.hpp; the
// options' checks, shared with cuda/cispo.cu, are policy_options.hpp). Shared by the fused kernel
// (kernels/cispo_loss.cpp) and its benchmark baseline (kernels/cispo_two_pass_baseline.cpp), so both
// compute the same thing and differ only in how they read the logits.
#pragma once

#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "loss/online_logsumexp.hpp"
#include "loss/policy_options.hpp"
#include "loss/policy_term_math.hpp"

namespace forge::loss {

// Everything the kernel receives, in one place so the two implementations share the checks.
struct PolicyLossArgs {
  int64_t num_rows;
  int64_t vocab_size;
  const float* logits;
  int64_t num_terms;
  const int32_t* term_node;
  const int32_t* term_target;
  const float* term_old_logprob;
  const float* term_advantage;
  const forge_cispo_options* options;
  float* dlogits;
  float* logprobs_out;
};

// Validates every pointer, size, index and value except the logits themselves (their finiteness is
// checked row by row inside the passes that read them anyway).
inline forge_status validate_policy_args(const PolicyLossArgs& a, PolicyParams& p) {
  if (a.num_rows < 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_rows: expected >= 0, got " + std::to_string(a.num_rows));
  if (a.vocab_size < 1 || a.vocab_size > std::numeric_limits<int32_t>::max())
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "vocab_size: expected an integer in [1, 2147483647], got " + std::to_string(a.vocab_size));
  // Element counts must fit in int64 and in bytes, so no index computation below can overflow.
  if (a.num_rows > std::numeric_limits<int64_t>::max() / 4 / a.vocab_size)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_rows * vocab_size: " + std::to_string(a.num_rows) + " x " +
                                                std::to_string(a.vocab_size) + " elements overflow");
  if (a.num_terms < 0 || a.num_terms > std::numeric_limits<int32_t>::max())
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "num_terms: expected an integer in [0, 2147483647], got " + std::to_string(a.num_terms));
  const int64_t elements = a.num_rows * a.vocab_size;
  if (!a.logits && elements > 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "logits: null pointer for " + std::to_string(a.num_rows) + " x " +
                                                std::to_string(a.vocab_size) + " values");
  if (a.dlogits && a.dlogits != a.logits && elements > 0) {
    // Partial overlap would read logits the gradient pass already overwrote.
    const float *lb = a.logits, *le = a.logits + elements, *db = a.dlogits, *de = a.dlogits + elements;
    if (db < le && lb < de)
      return fail(FORGE_ERR_INVALID_ARGUMENT, "dlogits: overlaps logits without being equal to it");
  }
  if (a.num_terms > 0) {
    if (!a.term_node) return fail(FORGE_ERR_INVALID_ARGUMENT, "term_node: null pointer with num_terms > 0");
    if (!a.term_target) return fail(FORGE_ERR_INVALID_ARGUMENT, "term_target: null pointer with num_terms > 0");
    if (!a.term_old_logprob)
      return fail(FORGE_ERR_INVALID_ARGUMENT, "term_old_logprob: null pointer with num_terms > 0");
    if (!a.term_advantage) return fail(FORGE_ERR_INVALID_ARGUMENT, "term_advantage: null pointer with num_terms > 0");
  }
  if (forge_status s = resolve_policy_options(a.options, a.num_terms, p); s != FORGE_OK) return s;

  for (int64_t j = 0; j < a.num_terms; ++j) {
    const int32_t n = a.term_node[j];
    if (n < 0 || n >= a.num_rows)
      return fail(FORGE_ERR_OUT_OF_RANGE, "term_node[" + std::to_string(j) + "]: node " + std::to_string(n) +
                                              " out of range [0, " + std::to_string(a.num_rows) + ")");
    const int32_t y = a.term_target[j];
    if (y < 0 || y >= a.vocab_size)
      return fail(FORGE_ERR_OUT_OF_RANGE, "term_target[" + std::to_string(j) + "]: token id " + std::to_string(y) +
                                              " out of range [0, " + std::to_string(a.vocab_size) + ")");
    if (!std::isfinite(a.term_old_logprob[j]))
      return fail(FORGE_ERR_NON_FINITE, "term_old_logprob[" + std::to_string(j) + "]: expected a finite number, got " +
                                            num(a.term_old_logprob[j]));
    if (!std::isfinite(a.term_advantage[j]))
      return fail(FORGE_ERR_NON_FINITE, "term_advantage[" + std::to_string(j) + "]: expected a finite number, got " +
                                            num(a.term_advantage[j]));
  }
  return FORGE_OK;
}

// Terms grouped by node: the terms of row n are order[offsets[n] .. offsets[n+1]), sorted by target
// (then by term index) so that terms sharing a target are adjacent for the gradient fix-up.
struct TermIndex {
  std::vector<int64_t> offsets;
  std::vector<int32_t> order;

  static int64_t bytes(int64_t num_rows, int64_t num_terms) {
    return (num_rows + 1) * static_cast<int64_t>(sizeof(int64_t)) + num_terms * static_cast<int64_t>(sizeof(int32_t));
  }
};

// Counting sort of term_node (stable, so ties keep term order). The per-row sort by target happens
// in the parallel passes, each row's segment being owned by one chunk.
inline TermIndex index_terms(const PolicyLossArgs& a) {
  TermIndex ix;
  ix.offsets.assign(static_cast<size_t>(a.num_rows) + 1, 0);
  ix.order.resize(static_cast<size_t>(a.num_terms));
  for (int64_t j = 0; j < a.num_terms; ++j) ++ix.offsets[static_cast<size_t>(a.term_node[j]) + 1];
  for (int64_t n = 0; n < a.num_rows; ++n) ix.offsets[n + 1] += ix.offsets[n];
  std::vector<int64_t> next(ix.offsets.begin(), ix.offsets.end() - 1);
  for (int64_t j = 0; j < a.num_terms; ++j)
    ix.order[static_cast<size_t>(next[a.term_node[j]]++)] = static_cast<int32_t>(j);
  return ix;
}

inline void sort_row_terms(int32_t* begin, int32_t* end, const int32_t* target) {
  if (end - begin < 2) return;
  std::sort(begin, end,
            [target](int32_t x, int32_t y) { return target[x] != target[y] ? target[x] < target[y] : x < y; });
}

// Rows are processed in fixed chunks whose size depends only on the shape, never on the thread count,
// so the per-chunk partial sums (combined in chunk order) make the result bitwise reproducible.
inline int64_t rows_per_chunk(int64_t vocab_size) {
  constexpr int64_t kChunkElements = int64_t{1} << 16;  // below this a thread hand-off costs more than it saves
  return std::max<int64_t>(1, kChunkElements / vocab_size);
}

// One chunk's sums (add_term, policy_term_math.hpp) and its first non-finite logit.
struct ChunkStats : PolicySums<int64_t> {
  int64_t bad_row = -1, bad_col = -1;  // first non-finite logit met in this chunk
  float bad_value = 0;

  void set_bad(int64_t row, const float* z, int64_t vocab_size) {
    bad_row = row;
    bad_col = first_non_finite(z, vocab_size);
    bad_value = bad_col >= 0 ? z[bad_col] : 0.0f;
  }
};

// Combines the chunks in order into the stats; reports the first non-finite row.
inline forge_status finish_stats(const std::vector<ChunkStats>& chunks, const PolicyParams& p,
                                 forge_cispo_stats* stats) {
  for (const ChunkStats& c : chunks)
    if (c.bad_row >= 0)
      return fail(FORGE_ERR_NON_FINITE, "logits[row " + std::to_string(c.bad_row) + ", column " +
                                            std::to_string(c.bad_col) + "]: expected a finite number, got " +
                                            num(c.bad_value));
  PolicySums<int64_t> t;
  for (const ChunkStats& c : chunks) t.add_sums(c);
  if (stats) write_stats(t, p.inv_z, stats);
  return FORGE_OK;
}

}  // namespace forge::loss
