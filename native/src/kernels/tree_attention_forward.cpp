// forge_tree_attention_forward: FlashAttention-style attention over a prefix tree, on the CPU.
//
// Task = (query tile of kQueryTile nodes, kv head, chunk of that group's query heads). Its (query,
// head) rows sit in SIMD lanes (block_math.hpp); the task walks its key list (root path of the
// tile's first node + the tile, see tiles.hpp) in blocks of kKeyBlock keys, and each key row is read
// once per block for every row of the tile and all heads of the group, not once per query and head.
#include <forge/forge.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "attention/block_math.hpp"
#include "attention/state.hpp"
#include "attention/tiles.hpp"
#include "common/error.hpp"
#include "common/simd.hpp"

namespace forge::attention {
namespace {

constexpr int kMaxGroups = kQueryTile * kMaxGroupChunk / kRows;

struct ForwardScratch {
  std::vector<int32_t> keys;
  FloatBuffer q_lanes, acc;  // per lane group: dim x kRows
  std::vector<LaneState> state;
  KeyRows block;
  alignas(64) int32_t qid[kMaxGroups][kRows];
  alignas(64) Lanes scores[kKeyBlock];
  const float* rows[kRows];
  const float* active_v[kKeyBlock];
  int32_t active[kKeyBlock];

  explicit ForwardScratch(const Problem& p)
      : q_lanes(static_cast<size_t>(kMaxGroups) * p.dim * kRows), acc(q_lanes.size()), state(kMaxGroups) {}
};

FORGE_HOT void forward_tile(const Problem& p, const Task& t, const float* q, const float* k, const float* v,
                            float* o, float* lse, ForwardScratch& s) {
  const TileRows tile(t);
  const int kv = t.head / p.group;
  const size_t group_size = static_cast<size_t>(p.dim) * kRows;
  for (int g = 0; g < tile.groups; ++g) {
    tile.row_pointers(p, q, g, s.rows);
    to_lanes(s.rows, tile.group_rows(g), p.dim, s.q_lanes.data() + g * group_size);
    std::fill(s.acc.begin() + g * group_size, s.acc.begin() + (g + 1) * group_size, 0.0f);
    s.state[g].reset();
    tile.lane_queries(g, s.qid[g]);
  }
  tile_keys(p, t.begin, t.end, s.keys);
  const Lanes no_shift{};

  for (size_t kb = 0; kb < s.keys.size(); kb += kKeyBlock) {
    const int n = static_cast<int>(std::min<size_t>(kKeyBlock, s.keys.size() - kb));
    s.block.load(p, s.keys.data() + kb, n, kv, k, v);
    if (kb + kKeyBlock < s.keys.size()) {  // the next block's rows arrive while this one computes
      KeyRows next;
      next.load(p, s.keys.data() + kb + kKeyBlock, std::min<int>(kKeyBlock, static_cast<int>(s.keys.size() - kb) - kKeyBlock), kv, k, v);
      prefetch_rows(next.k, next.count, p.dim);
      prefetch_rows(next.v, next.count, p.dim);
    }
    for (int g = 0; g < tile.groups; ++g) {
      const int count = active_keys(s.block, tile.first_query(g), tile.last_query(g), s.active);
      if (count == 0) continue;
      const float* lanes = s.q_lanes.data() + g * group_size;
      vi qid[kRowVecs];
      std::memcpy(qid, s.qid[g], sizeof qid);
      for (int i = 0; i < count; i += 2) {
        const int j0 = s.active[i], j1 = s.active[i + 1 < count ? i + 1 : i];
        dot_lanes2(s.block.k[j0], s.block.k[j1], lanes, p.dim, s.scores[i], s.scores[i + 1 < count ? i + 1 : i]);
      }
      for (int i = 0; i < count; ++i) {
        const int j = s.active[i];
        mask_key(s.scores[i], qid, s.block.lo[j], s.block.hi[j], p.scale, no_shift);
        s.active_v[i] = s.block.v[j];
      }
      Lanes alpha;
      lane_state_fold(s.state[g], s.scores, count, alpha);
      accumulate_lanes(s.acc.data() + g * group_size, &alpha, s.scores, s.active_v, count, p.dim);
    }
  }

  for (int g = 0; g < tile.groups; ++g)
    for (int r = 0; r < tile.group_rows(g); ++r) {
      const int row = g * kRows + r;
      const int64_t qn = tile.query(row);
      const int h = tile.head(row);
      lane_state_finish(s.state[g], s.acc.data() + g * group_size, r, p.dim, o + p.q_offset(qn, h),
                        lse + static_cast<size_t>(qn) * p.hq + h);
    }
}

forge_status forward(const forge_attention_shape* shape, const float* q, const float* k, const float* v,
                     const int32_t* parent, const int32_t* subtree_end, float* o, float* lse) {
  if (!q) return null_pointer("q");
  if (!k) return null_pointer("k");
  if (!v) return null_pointer("v");
  if (!o) return null_pointer("o");
  if (!lse) return null_pointer("lse");
  Problem p;
  if (forge_status st = check_problem(shape, parent, subtree_end, p); st != FORGE_OK) return st;
  for (const auto& [x, heads, name] : {std::tuple{q, p.hq, "q"}, {k, p.hkv, "k"}, {v, p.hkv, "v"}})
    if (forge_status st = check_finite(x, p.n, heads, p.dim, name); st != FORGE_OK) return st;
  std::vector<Task> tasks = query_tile_tasks(p);
  run_tasks(
      tasks, [&] { return ForwardScratch(p); },
      [&](const Task& t, ForwardScratch& s) { forward_tile(p, t, q, k, v, o, lse, s); });
  return FORGE_OK;
}

}  // namespace
}  // namespace forge::attention

extern "C" FORGE_API forge_status forge_tree_attention_forward(const forge_attention_shape* shape, const float* q,
                                                               const float* k, const float* v,
                                                               const int32_t* parent, const int32_t* subtree_end,
                                                               float* o, float* lse) {
  return forge::guarded("forge_tree_attention_forward",
                        [&] { return forge::attention::forward(shape, q, k, v, parent, subtree_end, o, lse); });
}
