// BENCHMARK BASELINE, not part of the stable API (declared in forge/forge_bench.h).
//
// forge_bench_cispo_two_pass computes exactly what forge_cispo_loss computes, the straightforward way
// a framework would (log_softmax / softmax over the whole logits tensor, then gather): a full [N, V]
// float32 softmax is materialised first (a max pass, an exp-and-sum pass writing it, a normalise
// pass), then the entropy, the loss terms and the gradient are read from it. The softmax buffer is
// cached across calls (see two_pass), like a framework's caching allocator. It shares the argument
// checks, term grouping, chunking, vector width and exp with the fused kernel, so the benchmark
// measures the cost of materialising the softmax and of the extra passes, nothing else.
#include <forge/forge.h>
#include <forge/forge_bench.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/error.hpp"
#include "common/thread_pool.hpp"
#include "loss/online_logsumexp.hpp"
#include "loss/policy_terms.hpp"

namespace forge::loss {
namespace {

// Pass 1: row max, with the finiteness check riding along.
template <int W>
FORGE_LOSS_INLINE float row_max(const float* z, int64_t n, bool& finite) {
  using F = typename Vec<W>::f;
  F mx = splat<W>(kNegInf), fin = {};
  const F zero = {};
  const int64_t full = n - n % W;
  for (int64_t i = 0; i < full; i += W) {
    const F v = load<W>(z + i);
    mx = v > mx ? v : mx;
    fin += v * zero;
  }
  float m = kNegInf, f = 0.0f;
  for (int k = 0; k < W; ++k) {
    m = mx[k] > m ? mx[k] : m;
    f += fin[k];
  }
  for (int64_t i = full; i < n; ++i) {
    m = z[i] > m ? z[i] : m;
    f += z[i] * 0.0f;
  }
  finite = f == 0.0f && m != kNegInf;
  return m;
}

// Pass 2: p = exp(z - m) written out, sum in float64.
template <int W>
FORGE_LOSS_INLINE double exp_store_sum(const float* z, float* p, int64_t n, float m) {
  using F = typename Vec<W>::f;
  using D = typename Vec<W>::d;
  const F vm = splat<W>(m);
  D lo = {}, hi = {};
  const int64_t full = n - n % W;
  for (int64_t i = 0; i < full; i += W) {
    const F e = vexp<W>(load<W>(z + i) - vm);
    store<W>(p + i, e);
    lo += widen_lo<W>(e);
    hi += widen_hi<W>(e);
  }
  double s = 0;
  for (int k = 0; k < W / 2; ++k) s += lo[k] + hi[k];
  for (int64_t i = full; i < n; ++i) {
    p[i] = sexp(z[i] - m);
    s += p[i];
  }
  return s;
}

// out = c * p (out may equal p).
template <int W>
FORGE_LOSS_INLINE void scale_into(const float* p, float* out, int64_t n, float c) {
  using F = typename Vec<W>::f;
  const F vc = splat<W>(c);
  const int64_t full = n - n % W;
  for (int64_t i = 0; i < full; i += W) store<W>(out + i, vc * load<W>(p + i));
  for (int64_t i = full; i < n; ++i) out[i] = c * p[i];
}

// sum_v p_v z_v in float64 (for the entropy lse - E[z]).
template <int W>
FORGE_LOSS_INLINE double dot(const float* p, const float* z, int64_t n) {
  using F = typename Vec<W>::f;
  using D = typename Vec<W>::d;
  D lo = {}, hi = {};
  const int64_t full = n - n % W;
  for (int64_t i = 0; i < full; i += W) {
    const F pz = load<W>(p + i) * load<W>(z + i);
    lo += widen_lo<W>(pz);
    hi += widen_hi<W>(pz);
  }
  double s = 0;
  for (int k = 0; k < W / 2; ++k) s += lo[k] + hi[k];
  for (int64_t i = full; i < n; ++i) s += static_cast<double>(p[i]) * z[i];
  return s;
}

// Phase 1 over rows [row_begin, row_end): the softmax rows, and each row's lse in `lse`.
struct SoftmaxRows {
  template <int W>
  FORGE_LOSS_INLINE static void run(const PolicyLossArgs& a, float* softmax, double* lse, int64_t row_begin,
                                    int64_t row_end, ChunkStats& cs) {
    const int64_t V = a.vocab_size;
    for (int64_t row = row_begin; row < row_end; ++row) {
      const float* z = a.logits + row * V;
      float* p = softmax + row * V;
      bool finite = true;
      const float m = row_max<W>(z, V, finite);
      if (!finite) return cs.set_bad(row, z, V);
      const double sum = exp_store_sum<W>(z, p, V, m);
      scale_into<W>(p, p, V, static_cast<float>(1.0 / sum));
      lse[row] = static_cast<double>(m) + std::log(sum);
    }
  }
};

// Phase 2 over rows: entropy, loss terms and gradient, all read from the softmax.
struct LossRows {
  template <int W>
  FORGE_LOSS_INLINE static void run(const PolicyLossArgs& a, const PolicyParams& p, TermIndex& ix,
                                    const float* softmax, const double* lse, double* coef, int64_t row_begin,
                                    int64_t row_end, ChunkStats& cs) {
    const int64_t V = a.vocab_size;
    for (int64_t row = row_begin; row < row_end; ++row) {
      const float* z = a.logits + row * V;
      const float* sm = softmax + row * V;
      float* dl = a.dlogits ? a.dlogits + row * V : nullptr;
      int32_t* tb = ix.order.data() + ix.offsets[row];
      int32_t* te = ix.order.data() + ix.offsets[row + 1];
      if (tb == te) {
        if (dl) std::memset(dl, 0, static_cast<size_t>(V) * sizeof(float));
        continue;
      }
      ++cs.rows;
      cs.entropy += lse[row] - dot<W>(sm, z, V);
      sort_row_terms(tb, te, a.term_target);
      double total_coef = 0;
      for (const int32_t* t = tb; t != te; ++t) {
        const int32_t j = *t;
        const double logp = static_cast<double>(z[a.term_target[j]]) - lse[row];  // log_softmax gather
        const double adv = a.term_advantage[j];
        const TermValue v = policy_term(p, logp, a.term_old_logprob[j], adv);
        cs.add_term(p, v, logp, adv);
        total_coef += v.coef;
        coef[j] = v.coef;  // kept: in place, the logits are gone once dlogits is written
        if (a.logprobs_out) a.logprobs_out[j] = static_cast<float>(logp);
      }
      if (!dl) continue;
      scale_into<W>(sm, dl, V, static_cast<float>(total_coef * p.inv_z));
      for (const int32_t* t = tb; t != te;) {
        const int32_t y = a.term_target[*t];
        double same = 0;
        for (; t != te && a.term_target[*t] == y; ++t) same += coef[*t];
        dl[y] = static_cast<float>((total_coef * sm[y] - same) * p.inv_z);
      }
    }
  }
};

forge_status two_pass(const PolicyLossArgs& a, forge_cispo_stats* stats, int64_t* workspace_bytes) {
  PolicyParams p;
  if (forge_status st = validate_policy_args(a, p); st != FORGE_OK) return st;
  TermIndex ix = index_terms(a);
  const int64_t elements = a.num_rows * a.vocab_size;
  // The softmax lives in a buffer kept from call to call, as a framework's caching allocator would keep
  // it: repeated calls then pay no page faults for it, so the timing compares the passes alone (the
  // less flattering comparison for the fused kernel). One baseline call at a time holds it.
  static std::mutex cache_mutex;
  static std::vector<float> cache;
  std::lock_guard<std::mutex> hold(cache_mutex);
  if (cache.size() < static_cast<size_t>(elements)) {
    cache = std::vector<float>();  // release the old buffer before the new one exists
    cache.resize(static_cast<size_t>(elements));
  }
  float* softmax = cache.data();
  std::vector<double> lse(static_cast<size_t>(a.num_rows)), coef(static_cast<size_t>(a.num_terms));
  const int64_t rpc = rows_per_chunk(a.vocab_size);
  const int64_t chunks = (a.num_rows + rpc - 1) / rpc;
  std::vector<ChunkStats> parts(static_cast<size_t>(chunks));
  if (workspace_bytes)
    *workspace_bytes = elements * static_cast<int64_t>(sizeof(float)) +
                       (a.num_rows + a.num_terms) * static_cast<int64_t>(sizeof(double)) +
                       TermIndex::bytes(a.num_rows, a.num_terms) + chunks * static_cast<int64_t>(sizeof(ChunkStats));

  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c)
      dispatch_width<SoftmaxRows>(a, softmax, lse.data(), c * rpc, std::min(a.num_rows, (c + 1) * rpc),
                                  parts[static_cast<size_t>(c)]);
  });
  for (const ChunkStats& c : parts)
    if (c.bad_row >= 0) return finish_stats(parts, p, stats);  // reports the first non-finite row
  parallel_for(chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c)
      dispatch_width<LossRows>(a, p, ix, softmax, lse.data(), coef.data(), c * rpc, std::min(a.num_rows, (c + 1) * rpc),
                               parts[static_cast<size_t>(c)]);
  });
  return finish_stats(parts, p, stats);
}

}  // namespace
}  // namespace forge::loss

extern "C" {

FORGE_API forge_status forge_bench_cispo_two_pass(int64_t num_rows, int64_t vocab_size, const float* logits,
                                                  int64_t num_terms, const int32_t* term_node,
                                                  const int32_t* term_target, const float* term_old_logprob,
                                                  const float* term_advantage, const forge_cispo_options* options,
                                                  float* dlogits, float* logprobs_out, forge_cispo_stats* stats,
                                                  int64_t* workspace_bytes) {
  return forge::guarded("forge_bench_cispo_two_pass", [&] {
    const forge::loss::PolicyLossArgs a{num_rows,         vocab_size,     logits,  num_terms, term_node,   term_target,
                                        term_old_logprob, term_advantage, options, dlogits,   logprobs_out};
    return forge::loss::two_pass(a, stats, workspace_bytes);
  });
}

}
