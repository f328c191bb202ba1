// forge_cispo_loss (contract 3): the CISPO / PPO-clip policy-gradient loss and its gradient over the
// logits rows of a prefix tree. Each row that carries terms is read from memory once, in an online
// pass (running max, sum of exponentials, entropy accumulator) that also keeps the row's exponentials
// in a per-thread row buffer; the gradient pass turns those into dlogits with one multiply each. No
// [N, V] softmax exists at any point. Rows without terms are only checked finite (zero gradient).
// Rows are processed in fixed chunks on the thread pool; the statistics are reduced per chunk in
// float64 and combined in chunk order, so the result does not depend on thread count or timing.
#include <forge/forge.h>
#include <forge/forge_bench.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "common/error.hpp"
#include "common/thread_pool.hpp"
#include "loss/online_logsumexp.hpp"
#include "loss/policy_terms.hpp"

namespace forge::loss {
namespace {

// The gradient value of one target column, computed before the row is overwritten (in place).
struct TargetFix {
  int64_t col;
  float value;
};

// Per-thread scratch of the gradient pass: one row of kept exponentials and the max of each block
// when it was read (allocated only when dlogits is requested), and the target-column fixes.
struct RowScratch {
  std::vector<float> exps, block_max;
  std::vector<TargetFix> fixes;

  RowScratch(int64_t vocab_size, bool grad) {
    if (!grad) return;
    exps.resize(static_cast<size_t>(vocab_size));
    block_max.resize(static_cast<size_t>((vocab_size + kBlock - 1) / kBlock));
  }
};

// Rows [row_begin, row_end): stats into `cs`, logp into logprobs_out, gradient rows into dlogits.
// Stops at the first non-finite row (recorded in cs); the caller turns it into the error.
struct ProcessRows {
  template <int W>
  FORGE_LOSS_INLINE static void run(const PolicyLossArgs& a, const PolicyParams& p, TermIndex& ix, int64_t row_begin,
                                    int64_t row_end, ChunkStats& cs, RowScratch& scratch) {
    const int64_t V = a.vocab_size;
    for (int64_t row = row_begin; row < row_end; ++row) {
      const float* z = a.logits + row * V;
      float* dl = a.dlogits ? a.dlogits + row * V : nullptr;
      int32_t* tb = ix.order.data() + ix.offsets[row];
      int32_t* te = ix.order.data() + ix.offsets[row + 1];
      if (tb == te) {
        if (!row_finite<W>(z, V)) return cs.set_bad(row, z, V);
        if (dl) std::memset(dl, 0, static_cast<size_t>(V) * sizeof(float));
        continue;
      }

      // With a gradient to write, the exponentials are kept (one row, in L2) so that the gradient
      // pass multiplies instead of recomputing them.
      const RowSummary s = dl ? online_row<W, true>(z, V, scratch.exps.data(), scratch.block_max.data())
                              : online_row<W>(z, V);
      if (!s.finite) return cs.set_bad(row, z, V);
      const double lse = s.lse();
      ++cs.rows;
      cs.entropy += s.entropy();

      // Terms sorted by target so that those sharing a column form one run.
      sort_row_terms(tb, te, a.term_target);
      double total_coef = 0;  // C = sum_j c_j over the row
      for (const int32_t* t = tb; t != te; ++t) {
        const int32_t j = *t;
        const double logp = static_cast<double>(z[a.term_target[j]]) - lse;
        const double adv = a.term_advantage[j];
        const TermValue v = policy_term(p, logp, a.term_old_logprob[j], adv);
        cs.add_term(p, v, logp, adv);
        total_coef += v.coef;
        if (a.logprobs_out) a.logprobs_out[j] = static_cast<float>(logp);
      }
      if (!dl) continue;

      // dlogits_v = (C softmax_v - S_v) / Z with S_v = sum of c_j over the terms targeting v. The
      // target columns are computed in double as (C - S) p + S (p - 1), with p - 1 = expm1(logp) exact
      // even when p is close to 1, where C p - S in float would cancel. They are computed before the
      // row is written, since in place that overwrites z.
      std::vector<TargetFix>& fixes = scratch.fixes;
      fixes.clear();
      fixes.reserve(static_cast<size_t>(te - tb));  // exact capacity: the workspace bound relies on it
      for (const int32_t* t = tb; t != te;) {
        const int32_t y = a.term_target[*t];
        const double logp = static_cast<double>(z[y]) - lse;
        double same = 0;
        for (; t != te && a.term_target[*t] == y; ++t)
          same += policy_term(p, logp, a.term_old_logprob[*t], a.term_advantage[*t]).coef;
        const double g = ((total_coef - same) * std::exp(logp) + same * std::expm1(logp)) * p.inv_z;
        fixes.push_back({y, static_cast<float>(g)});
      }
      if (total_coef == 0)
        std::memset(dl, 0, static_cast<size_t>(V) * sizeof(float));
      else
        rescale_exps<W>(scratch.exps.data(), scratch.block_max.data(), dl, V, s.m, total_coef * p.inv_z / s.d);
      for (const TargetFix& f : fixes) dl[f.col] = f.value;
    }
  }
};

forge_status cispo_loss(const PolicyLossArgs& a, forge_cispo_stats* stats) {
  PolicyParams p;
  if (forge_status st = validate_policy_args(a, p); st != FORGE_OK) return st;
  TermIndex ix = index_terms(a);
  const int64_t rpc = rows_per_chunk(a.vocab_size);
  const int64_t chunks = (a.num_rows + rpc - 1) / rpc;
  std::vector<ChunkStats> parts(static_cast<size_t>(chunks));
  // Chunks after one that met a non-finite row cannot hold the first one: they skip their work.
  std::atomic<int64_t> first_bad_chunk{std::numeric_limits<int64_t>::max()};
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    RowScratch scratch(a.vocab_size, a.dlogits != nullptr);
    for (int64_t c = cb; c < ce; ++c) {
      if (c > first_bad_chunk.load(std::memory_order_relaxed)) return;
      ChunkStats& cs = parts[static_cast<size_t>(c)];
      dispatch_width<ProcessRows>(a, p, ix, c * rpc, std::min(a.num_rows, (c + 1) * rpc), cs, scratch);
      if (cs.bad_row >= 0) {
        int64_t seen = first_bad_chunk.load();
        while (c < seen && !first_bad_chunk.compare_exchange_weak(seen, c)) {
        }
        return;
      }
    }
  });
  return finish_stats(parts, p, stats);
}

}  // namespace
}  // namespace forge::loss

extern "C" {

FORGE_API forge_status forge_cispo_loss(int64_t num_rows, int64_t vocab_size, const float* logits, int64_t num_terms,
                                        const int32_t* term_node, const int32_t* term_target,
                                        const float* term_old_logprob, const float* term_advantage,
                                        const forge_cispo_options* options, float* dlogits, float* logprobs_out,
                                        forge_cispo_stats* stats) {
  return forge::guarded("forge_cispo_loss", [&] {
    const forge::loss::PolicyLossArgs a{num_rows,         vocab_size,     logits,  num_terms, term_node,   term_target,
                                        term_old_logprob, term_advantage, options, dlogits,   logprobs_out};
    return forge::loss::cispo_loss(a, stats);
  });
}

FORGE_API forge_status forge_bench_cispo_fused_workspace(int64_t num_rows, int64_t vocab_size, int64_t num_terms,
                                                         int64_t* workspace_bytes) {
  return forge::guarded("forge_bench_cispo_fused_workspace", [&] {
    if (num_rows < 0 || vocab_size < 1 || num_terms < 0)
      return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "forge_bench_cispo_fused_workspace: negative or empty shape");
    if (!workspace_bytes) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "workspace_bytes: null pointer");
    const int64_t rpc = forge::loss::rows_per_chunk(vocab_size);
    const int64_t chunks = (num_rows + rpc - 1) / rpc;
    // Term index + per-chunk partials + per thread one row of exponentials and its block maxima, and
    // the target-column fix lists (their capacities add up to at most one entry per term, since
    // concurrent chunks own disjoint rows).
    const int64_t blocks = (vocab_size + forge::loss::kBlock - 1) / forge::loss::kBlock;
    *workspace_bytes = forge::loss::TermIndex::bytes(num_rows, num_terms) +
                       chunks * static_cast<int64_t>(sizeof(forge::loss::ChunkStats)) +
                       forge::num_threads() * (vocab_size + blocks) * static_cast<int64_t>(sizeof(float)) +
                       num_terms * static_cast<int64_t>(sizeof(forge::loss::TargetFix));
    return FORGE_OK;
  });
}

}
