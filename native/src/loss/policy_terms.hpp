// The parts of the policy-gradient loss that do not touch the logits rows: argument validation, the
// grouping of terms by node (CSR), the per-term CISPO / PPO-clip / cross-entropy coefficient, the
// fixed row chunking and the deterministic reduction of per-chunk statistics. Shared by the fused kernel
// (kernels/cispo_loss.cpp) and its benchmark baseline (kernels/cispo_two_pass_baseline.cpp), so both
// compute the same thing and differ only in how they read the logits.
#pragma once

#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "loss/online_logsumexp.hpp"

namespace forge::loss {

inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

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

// Resolved options: clip bounds as ratios and the normaliser Z.
struct PolicyParams {
  forge_pg_mode mode;
  double lo, hi;  // clip(r) = min(max(r, lo), hi); lo may be -inf, hi +inf
  double inv_z;   // 1 / Z
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
  if (!a.options) return fail(FORGE_ERR_INVALID_ARGUMENT, "options: null pointer");
  const forge_cispo_options& o = *a.options;
  if (o.mode != FORGE_PG_CISPO && o.mode != FORGE_PG_PPO_CLIP && o.mode != FORGE_PG_CROSS_ENTROPY)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "options.mode: expected FORGE_PG_CISPO (0), FORGE_PG_PPO_CLIP (1) or FORGE_PG_CROSS_ENTROPY (2), got " +
                    std::to_string(static_cast<int>(o.mode)));
  // +inf is a valid epsilon (no bound on that side); NaN and negatives are not.
  if (std::isnan(o.eps_low)) return fail(FORGE_ERR_NON_FINITE, "options.eps_low: expected a number >= 0, got nan");
  if (o.eps_low < 0)
    return fail(FORGE_ERR_OUT_OF_RANGE, "options.eps_low: expected a number >= 0, got " + num(o.eps_low));
  if (std::isnan(o.eps_high)) return fail(FORGE_ERR_NON_FINITE, "options.eps_high: expected a number >= 0, got nan");
  if (o.eps_high < 0)
    return fail(FORGE_ERR_OUT_OF_RANGE, "options.eps_high: expected a number >= 0, got " + num(o.eps_high));
  if (!std::isfinite(o.normalizer))
    return fail(FORGE_ERR_NON_FINITE, "options.normalizer: expected a finite number, got " + num(o.normalizer));

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

  p.mode = o.mode;
  p.lo = 1.0 - static_cast<double>(o.eps_low);
  p.hi = 1.0 + static_cast<double>(o.eps_high);
  if (o.mode == FORGE_PG_CROSS_ENTROPY) {  // nothing is clipped: the clip fractions stay 0
    p.lo = -std::numeric_limits<double>::infinity();
    p.hi = std::numeric_limits<double>::infinity();
  }
  const double z = o.normalizer > 0 ? o.normalizer : static_cast<double>(a.num_terms);
  p.inv_z = z > 0 ? 1.0 / z : 0.0;  // no terms: nothing is normalised
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

// One term: its loss contribution (before 1/Z), its gradient coefficient c = dloss_j / dlogp_j * (-1)
// (so dlogits = -(1/Z) sum_j c_j (onehot(y_j) - softmax)), and its ratio.
struct TermValue {
  double loss, coef, ratio;
};

inline TermValue policy_term(const PolicyParams& p, double logp, double old_logprob, double adv) {
  const double r = std::exp(logp - old_logprob);
  const double clipped = std::min(std::max(r, p.lo), p.hi);
  if (p.mode == FORGE_PG_CROSS_ENTROPY) return {-adv * logp, adv, r};  // weight 1: d/dlogp (A logp) = A
  if (p.mode == FORGE_PG_CISPO) {
    // w = clip(r) is a stop-gradient weight: d/dlogp (w A logp) = w A.
    if (adv == 0) return {0.0, 0.0, r};
    return {-clipped * adv * logp, clipped * adv, r};
  }
  // PPO: -min(r A, clip(r) A); d(r A)/dlogp = r A on the unclipped branch, 0 on the clipped one.
  if (adv == 0) return {0.0, 0.0, r};
  const double unclipped_gain = r * adv, clipped_gain = clipped * adv;
  if (unclipped_gain <= clipped_gain) return {-unclipped_gain, unclipped_gain, r};
  return {-clipped_gain, 0.0, r};
}

// Rows are processed in fixed chunks whose size depends only on the shape, never on the thread count,
// so the per-chunk partial sums (combined in chunk order) make the result bitwise reproducible.
inline int64_t rows_per_chunk(int64_t vocab_size) {
  constexpr int64_t kChunkElements = int64_t{1} << 16;  // below this a thread hand-off costs more than it saves
  return std::max<int64_t>(1, kChunkElements / vocab_size);
}

struct ChunkStats {
  double loss = 0, ratio = 0, logprob = 0, entropy = 0;
  int64_t terms = 0, rows = 0, clip_high = 0, clip_low = 0, pos = 0, pos_clipped = 0, neg = 0, neg_clipped = 0;
  int64_t bad_row = -1, bad_col = -1;  // first non-finite logit met in this chunk
  float bad_value = 0;

  void add_term(const PolicyParams& p, const TermValue& v, double logp, double adv) {
    loss += v.loss;
    ratio += v.ratio;
    logprob += logp;
    ++terms;
    const bool high = v.ratio > p.hi, low = v.ratio < p.lo;
    clip_high += high;
    clip_low += low;
    if (adv > 0) {
      ++pos;
      pos_clipped += high;
    } else if (adv < 0) {
      ++neg;
      neg_clipped += low;
    }
  }

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
  ChunkStats t;
  for (const ChunkStats& c : chunks) {
    t.loss += c.loss;
    t.ratio += c.ratio;
    t.logprob += c.logprob;
    t.entropy += c.entropy;
    t.terms += c.terms;
    t.rows += c.rows;
    t.clip_high += c.clip_high;
    t.clip_low += c.clip_low;
    t.pos += c.pos;
    t.pos_clipped += c.pos_clipped;
    t.neg += c.neg;
    t.neg_clipped += c.neg_clipped;
  }
  if (!stats) return FORGE_OK;
  auto frac = [](double a, int64_t b) { return b > 0 ? a / static_cast<double>(b) : 0.0; };
  stats->loss = t.loss * p.inv_z;
  stats->mean_ratio = frac(t.ratio, t.terms);
  stats->clip_frac_high = frac(static_cast<double>(t.clip_high), t.terms);
  stats->clip_frac_low = frac(static_cast<double>(t.clip_low), t.terms);
  stats->clip_frac_pos_adv = frac(static_cast<double>(t.pos_clipped), t.pos);
  stats->clip_frac_neg_adv = frac(static_cast<double>(t.neg_clipped), t.neg);
  stats->mean_entropy = frac(t.entropy, t.rows);
  stats->mean_logprob = frac(t.logprob, t.terms);
  stats->num_terms = t.terms;
  stats->num_rows = t.rows;
  return FORGE_OK;
}

}  // namespace forge::loss
