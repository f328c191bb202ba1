// forge_tree_attention_backward: gradients of tree attention (FlashAttention-2 math), on the CPU.
//
//   Delta_q = rowsum(dO_q * O_q);  p = exp(scale q.k - lse_q);  dV_a += p dO_q;  dp = dO_q . V_a;
//   ds = p (dp - Delta_q);  dQ_q += scale ds K_a;  dK_a += scale ds Q_q
//
// Two passes, so no two threads ever add into the same row (no atomics):
//   1. query-tile-major (the forward's tiling): each task owns its queries' dQ rows and Delta.
//   2. key-tile-major: a key tile [k0, k1) is seen exactly by the queries [k0, max subtree_end), its
//      keys' descendants; the task streams those queries once (all heads of the kv group) and owns
//      its keys' dK and dV rows.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "attention/block_math.hpp"
#include "attention/tiles.hpp"
#include "common/error.hpp"
#include "common/simd.hpp"

namespace forge::attention {
namespace {

struct Inputs {
  const float *q, *k, *v, *o, *lse, *d_o;
  float *dq, *dk, *dv;
  float* delta;  // [N, Hq], written by pass 1, read by pass 2
};

// ---- pass 1: dQ and Delta ------------------------------------------------------------------------

constexpr int kMaxGroups = kQueryTile * kMaxGroupChunk / kRows;

struct QueryScratch {
  std::vector<int32_t> keys;
  FloatBuffer q_lanes, do_lanes, dq;  // per lane group: dim x kRows
  KeyRows block;
  alignas(64) int32_t qid[kMaxGroups][kRows];
  alignas(64) Lanes lse[kMaxGroups], delta[kMaxGroups];
  alignas(64) Lanes x[kKeyBlock], dp[kKeyBlock], ds[kKeyBlock];
  const float* rows[kRows];
  const float* active_k[kKeyBlock];
  int32_t active[kKeyBlock];

  explicit QueryScratch(const Problem& p)
      : q_lanes(static_cast<size_t>(kMaxGroups) * p.dim * kRows), do_lanes(q_lanes.size()), dq(q_lanes.size()) {}
};

FORGE_HOT void dq_tile(const Problem& p, const Task& t, const Inputs& in, QueryScratch& s) {
  const TileRows tile(t);
  const int kv = t.head / p.group;
  const size_t group_size = static_cast<size_t>(p.dim) * kRows;
  for (int g = 0; g < tile.groups; ++g) {
    alignas(64) float lse_lanes[kRows] = {}, delta_lanes[kRows] = {};
    for (int r = 0; r < tile.group_rows(g); ++r) {
      const int row = g * kRows + r;
      const size_t at = p.q_offset(tile.query(row), tile.head(row));
      const size_t unit = static_cast<size_t>(tile.query(row)) * p.hq + tile.head(row);
      double sum = 0.0;
      for (int c = 0; c < p.dim; ++c) sum += static_cast<double>(in.d_o[at + c]) * in.o[at + c];
      delta_lanes[r] = static_cast<float>(sum);
      in.delta[unit] = delta_lanes[r];
      lse_lanes[r] = in.lse[unit];
    }
    std::memcpy(&s.lse[g], lse_lanes, sizeof lse_lanes);
    std::memcpy(&s.delta[g], delta_lanes, sizeof delta_lanes);
    tile.row_pointers(p, in.q, g, s.rows);
    to_lanes(s.rows, tile.group_rows(g), p.dim, s.q_lanes.data() + g * group_size);
    tile.row_pointers(p, in.d_o, g, s.rows);
    to_lanes(s.rows, tile.group_rows(g), p.dim, s.do_lanes.data() + g * group_size);
    std::fill(s.dq.begin() + g * group_size, s.dq.begin() + (g + 1) * group_size, 0.0f);
    tile.lane_queries(g, s.qid[g]);
  }
  tile_keys(p, t.begin, t.end, s.keys);

  for (size_t kb = 0; kb < s.keys.size(); kb += kKeyBlock) {
    const int n = static_cast<int>(std::min<size_t>(kKeyBlock, s.keys.size() - kb));
    s.block.load(p, s.keys.data() + kb, n, kv, in.k, in.v);
    if (kb + kKeyBlock < s.keys.size()) {  // the next block's rows arrive while this one computes
      KeyRows next;
      next.load(p, s.keys.data() + kb + kKeyBlock, std::min<int>(kKeyBlock, static_cast<int>(s.keys.size() - kb) - kKeyBlock), kv, in.k, in.v);
      prefetch_rows(next.k, next.count, p.dim);
      prefetch_rows(next.v, next.count, p.dim);
    }
    for (int g = 0; g < tile.groups; ++g) {
      const int count = active_keys(s.block, tile.first_query(g), tile.last_query(g), s.active);
      if (count == 0) continue;
      vi qid[kRowVecs];
      std::memcpy(qid, s.qid[g], sizeof qid);
      for (int i = 0; i < count; i += 2) {
        const int i1 = i + 1 < count ? i + 1 : i;
        const int j0 = s.active[i], j1 = s.active[i1];
        dot_lanes2(s.block.k[j0], s.block.k[j1], s.q_lanes.data() + g * group_size, p.dim, s.x[i], s.x[i1]);
        dot_lanes2(s.block.v[j0], s.block.v[j1], s.do_lanes.data() + g * group_size, p.dim, s.dp[i], s.dp[i1]);
      }
      for (int i = 0; i < count; ++i) {
        const int j = s.active[i];
        mask_key(s.x[i], qid, s.block.lo[j], s.block.hi[j], p.scale, s.lse[g]);
        softmax_grad(s.x[i], s.dp[i], s.delta[g], 1.0f, s.ds[i]);
        s.active_k[i] = s.block.k[j];
      }
      accumulate_lanes(s.dq.data() + g * group_size, nullptr, s.ds, s.active_k, count, p.dim);
    }
  }

  for (int g = 0; g < tile.groups; ++g)
    for (int r = 0; r < tile.group_rows(g); ++r) {
      const int row = g * kRows + r;
      float* dst = in.dq + p.q_offset(tile.query(row), tile.head(row));
      const float* src = s.dq.data() + g * group_size + r;
      for (int c = 0; c < p.dim; ++c) dst[c] = p.scale * src[static_cast<size_t>(c) * kRows];
    }
}

// ---- pass 2: dK and dV ---------------------------------------------------------------------------

constexpr int kRowChunk = 32;  // query rows scored before their sums are added into dK and dV

struct KeyScratch {
  FloatBuffer k_lanes, v_lanes, dk, dv;  // dim x kRows, the tile's keys in lanes
  alignas(64) int32_t lo[kRows], hi[kRows];
  alignas(64) Lanes p[kRowChunk], ds[kRowChunk], dp[kRowChunk];
  const float* q_rows[kRowChunk];
  const float* do_rows[kRowChunk];
  int32_t query[kRowChunk];
  float lse[kRowChunk], delta[kRowChunk];
  const float* rows[kRows];

  explicit KeyScratch(const Problem& p)
      : k_lanes(static_cast<size_t>(p.dim) * kRows), v_lanes(k_lanes.size()), dk(k_lanes.size()), dv(k_lanes.size()) {}
};

// Scores the staged rows [0, n) against the tile's keys and adds them into dV and dK.
FORGE_ALWAYS_INLINE void flush_rows(const Problem& p, KeyScratch& s, int n) {
  vi lo[kRowVecs], hi[kRowVecs];
  std::memcpy(lo, s.lo, sizeof lo);
  std::memcpy(hi, s.hi, sizeof hi);
  for (int i = 0; i < n; i += 2) {
    const int i1 = i + 1 < n ? i + 1 : i;
    dot_lanes2(s.q_rows[i], s.q_rows[i1], s.k_lanes.data(), p.dim, s.p[i], s.p[i1]);
    dot_lanes2(s.do_rows[i], s.do_rows[i1], s.v_lanes.data(), p.dim, s.dp[i], s.dp[i1]);
  }
  for (int i = 0; i < n; ++i) {
    mask_query(s.p[i], lo, hi, s.query[i], p.scale, s.lse[i]);
    softmax_grad(s.p[i], s.dp[i], splat_lanes(s.delta[i]), p.scale, s.ds[i]);
  }
  accumulate_lanes(s.dv.data(), nullptr, s.p, s.do_rows, n, p.dim);
  accumulate_lanes(s.dk.data(), nullptr, s.ds, s.q_rows, n, p.dim);
}

FORGE_HOT void dkdv_tile(const Problem& p, const Task& t, const Inputs& in, KeyScratch& s) {
  const int kv = t.head;
  const int n = static_cast<int>(t.end - t.begin);
  for (int j = 0; j < kRows; ++j) {
    s.lo[j] = j < n ? static_cast<int32_t>(t.begin + j) : INT32_MAX;
    s.hi[j] = j < n ? p.subtree_end[t.begin + j] : INT32_MIN;
  }
  for (int j = 0; j < n; ++j) s.rows[j] = in.k + p.kv_offset(t.begin + j, kv);
  to_lanes(s.rows, n, p.dim, s.k_lanes.data());
  for (int j = 0; j < n; ++j) s.rows[j] = in.v + p.kv_offset(t.begin + j, kv);
  to_lanes(s.rows, n, p.dim, s.v_lanes.data());
  std::fill(s.dk.begin(), s.dk.end(), 0.0f);
  std::fill(s.dv.begin(), s.dv.end(), 0.0f);

  // The keys' descendants [begin, q_end) are exactly the queries that see some key of the tile.
  const int64_t q_end = *std::max_element(s.hi, s.hi + n);
  int staged = 0;
  for (int64_t qn = t.begin; qn < q_end; ++qn) {
    for (int g = 0; g < p.group; ++g) {
      const int h = kv * p.group + g;
      const size_t at = p.q_offset(qn, h), unit = static_cast<size_t>(qn) * p.hq + h;
      s.q_rows[staged] = in.q + at;
      s.do_rows[staged] = in.d_o + at;
      s.query[staged] = static_cast<int32_t>(qn);
      s.lse[staged] = in.lse[unit];
      s.delta[staged] = in.delta[unit];
      if (++staged == kRowChunk) {
        flush_rows(p, s, staged);
        staged = 0;
      }
    }
  }
  if (staged) flush_rows(p, s, staged);

  for (int j = 0; j < n; ++j) {
    const size_t at = p.kv_offset(t.begin + j, kv);
    for (int c = 0; c < p.dim; ++c) {
      in.dk[at + c] = s.dk[static_cast<size_t>(c) * kRows + j];
      in.dv[at + c] = s.dv[static_cast<size_t>(c) * kRows + j];
    }
  }
}

// Key tiles x kv heads; a tile's work is its keys times the queries it streams.
std::vector<Task> key_tile_tasks(const Problem& p) {
  std::vector<Task> tasks;
  for (int64_t k0 = 0; k0 < p.n; k0 += kKeyTile) {
    const int64_t k1 = std::min<int64_t>(p.n, k0 + kKeyTile);
    int64_t q_end = k1;
    for (int64_t a = k0; a < k1; ++a) q_end = std::max<int64_t>(q_end, p.subtree_end[a]);
    const double work = static_cast<double>(k1 - k0) * static_cast<double>(q_end - k0) * p.group * p.dim;
    for (int kv = 0; kv < p.hkv; ++kv) tasks.push_back({k0, k1, kv, p.group, work});
  }
  return tasks;
}

forge_status backward(const forge_attention_shape* shape, Inputs in, const int32_t* parent,
                      const int32_t* subtree_end) {
  const std::pair<const void*, const char*> pointers[] = {
      {in.q, "q"}, {in.k, "k"}, {in.v, "v"}, {in.o, "o"}, {in.lse, "lse"}, {in.d_o, "d_o"},
      {in.dq, "dq"}, {in.dk, "dk"}, {in.dv, "dv"}};
  for (const auto& [ptr, name] : pointers)
    if (!ptr) return null_pointer(name);
  Problem p;
  if (forge_status st = check_problem(shape, parent, subtree_end, p); st != FORGE_OK) return st;
  for (const auto& [x, heads, name] : {std::tuple{in.q, p.hq, "q"}, {in.k, p.hkv, "k"}, {in.v, p.hkv, "v"},
                                       {in.o, p.hq, "o"}, {in.d_o, p.hq, "d_o"}})
    if (forge_status st = check_finite(x, p.n, heads, p.dim, name); st != FORGE_OK) return st;
  // lse enters exp(s - lse): a non-finite one would turn every gradient of its row into NaN or Inf.
  const size_t lse_count = static_cast<size_t>(p.n) * p.hq;
  for (size_t i = 0; i < lse_count; ++i)
    if (!std::isfinite(in.lse[i]))
      return fail(FORGE_ERR_NON_FINITE,
                  "lse[" + std::to_string(i) + "]: expected a finite number, got " + std::to_string(in.lse[i]));

  std::vector<float> delta(lse_count);
  in.delta = delta.data();
  std::vector<Task> query_tasks = query_tile_tasks(p);
  run_tasks(
      query_tasks, [&] { return QueryScratch(p); },
      [&](const Task& t, QueryScratch& s) { dq_tile(p, t, in, s); });
  std::vector<Task> key_tasks = key_tile_tasks(p);
  run_tasks(
      key_tasks, [&] { return KeyScratch(p); }, [&](const Task& t, KeyScratch& s) { dkdv_tile(p, t, in, s); });
  return FORGE_OK;
}

}  // namespace
}  // namespace forge::attention

extern "C" FORGE_API forge_status forge_tree_attention_backward(const forge_attention_shape* shape, const float* q,
                                                                const float* k, const float* v,
                                                                const int32_t* parent, const int32_t* subtree_end,
                                                                const float* o, const float* lse, const float* d_o,
                                                                float* dq, float* dk, float* dv) {
  return forge::guarded("forge_tree_attention_backward", [&] {
    return forge::attention::backward(shape, {q, k, v, o, lse, d_o, dq, dk, dv, nullptr}, parent, subtree_end);
  });
}
