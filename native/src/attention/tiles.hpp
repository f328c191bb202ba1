// What the tree-attention kernels share around the block math: argument checks, the key list of a
// query tile, the rows of a task, and running tasks on the pool.
//
// Nodes are in DFS pre-order, so key a is visible to query q iff a <= q < subtree_end[a]. For a tile
// of queries [t0, t1), every ancestor of a query in the tile is inside the tile or on the root path
// of t0: an ancestor a < t0 of q has a < t0 <= q < subtree_end[a], so t0 is in a's subtree. The key
// list of a tile is therefore that root path followed by the tile's own nodes.
#pragma once

#include <forge/forge.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attention/block_math.hpp"
#include "common/error.hpp"
#include "common/thread_pool.hpp"

namespace forge::attention {

constexpr int kMaxHeadDim = 1024;
constexpr int kMaxGroupChunk = 8;  // query heads of one GQA group sharing a forward / dQ task
// Below this many multiply-adds a call runs on the caller's thread (waking the pool costs more).
constexpr double kSerialWork = 2e5;

struct Problem {
  int64_t n = 0;
  int hq = 0, hkv = 0, dim = 0, group = 0;
  float scale = 0.0f;
  const int32_t* parent = nullptr;
  const int32_t* subtree_end = nullptr;

  size_t q_offset(int64_t node, int head) const { return (static_cast<size_t>(node) * hq + head) * dim; }
  size_t kv_offset(int64_t node, int head) const { return (static_cast<size_t>(node) * hkv + head) * dim; }
};

inline forge_status null_pointer(const char* name) {
  return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer");
}

// Checks the shape and the tree (forge_tree_validate) and fills `p`.
inline forge_status check_problem(const forge_attention_shape* shape, const int32_t* parent,
                                  const int32_t* subtree_end, Problem& p) {
  if (!shape) return null_pointer("shape");
  const forge_attention_shape& s = *shape;
  if (s.num_nodes < 1 || s.num_nodes > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "shape.num_nodes: expected an integer in [1, 2^31), got " + std::to_string(s.num_nodes));
  if (s.num_heads < 1)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_heads: expected >= 1, got " + std::to_string(s.num_heads));
  if (s.num_kv_heads < 1 || s.num_heads % s.num_kv_heads != 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_kv_heads: expected a divisor of num_heads (" +
                                                std::to_string(s.num_heads) + "), got " +
                                                std::to_string(s.num_kv_heads));
  if (s.head_dim < 1)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.head_dim: expected >= 1, got " + std::to_string(s.head_dim));
  if (s.head_dim > kMaxHeadDim)
    return fail(FORGE_ERR_UNSUPPORTED, "shape.head_dim: at most " + std::to_string(kMaxHeadDim) +
                                           " is supported, got " + std::to_string(s.head_dim));
  // N * Hq * D elements must be addressable (N < 2^31, D <= 2^10: Hq < 2^21 keeps it under 2^62).
  if (s.num_heads >= (1 << 21))
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_heads: expected < 2^21, got " + std::to_string(s.num_heads));
  if (std::isinf(s.scale))
    return fail(FORGE_ERR_NON_FINITE, "shape.scale: expected a finite number (<= 0 or NaN selects 1/sqrt(D)), got " +
                                          std::string(s.scale > 0 ? "inf" : "-inf"));
  if (!parent) return null_pointer("parent");
  if (!subtree_end) return null_pointer("subtree_end");
  // A malformed tree is an error before any index in it is followed; its message names the node.
  if (forge_status st = forge_tree_validate(parent, subtree_end, s.num_nodes); st != FORGE_OK) return st;

  p.n = s.num_nodes;
  p.hq = s.num_heads;
  p.hkv = s.num_kv_heads;
  p.dim = s.head_dim;
  p.group = s.num_heads / s.num_kv_heads;
  p.scale = s.scale > 0.0f ? s.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  p.parent = parent;
  p.subtree_end = subtree_end;
  return FORGE_OK;
}

// Checks that a [N, heads, dim] tensor is finite. A NaN or Inf in one key row would otherwise reach
// rows that never see it (0 * Inf inside a shared tile), so inputs are refused instead. The error
// names the first bad element whichever thread finds it.
inline forge_status check_finite(const float* x, int64_t n, int heads, int dim, const char* name) {
  const int64_t count = n * heads * dim;
  std::atomic<int64_t> first{count};
  parallel_for(count, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool bad = false;
    for (int64_t i = begin; i < end; ++i) bad |= !std::isfinite(x[i]);
    if (!bad) return;
    for (int64_t i = begin; i < end; ++i)
      if (!std::isfinite(x[i])) {
        int64_t seen = first.load();
        while (i < seen && !first.compare_exchange_weak(seen, i)) {
        }
        return;
      }
  });
  const int64_t i = first.load();
  if (i == count) return FORGE_OK;
  const int64_t row = i / dim;
  return fail(FORGE_ERR_NON_FINITE, std::string(name) + "[" + std::to_string(row / heads) + ", " +
                                        std::to_string(row % heads) + ", " + std::to_string(i % dim) +
                                        "]: expected a finite number, got " + std::to_string(x[i]));
}

// Keys a query tile [t0, t1) reads: the ancestors of t0, root first, then the tile's own nodes.
inline void tile_keys(const Problem& p, int64_t t0, int64_t t1, std::vector<int32_t>& keys) {
  keys.clear();
  for (int32_t a = p.parent[t0]; a >= 0; a = p.parent[a]) keys.push_back(a);
  std::reverse(keys.begin(), keys.end());
  for (int64_t q = t0; q < t1; ++q) keys.push_back(static_cast<int32_t>(q));
}

// A block of keys: pointers to their K and V rows at kv head h, read in place, and the mask bounds
// lo = key, hi = its subtree_end (the key is visible to query q iff lo <= q < hi).
struct KeyRows {
  const float* k[kKeyBlock];
  const float* v[kKeyBlock];
  int32_t lo[kKeyBlock], hi[kKeyBlock];
  int count = 0;

  void load(const Problem& p, const int32_t* keys, int n, int h, const float* kbase, const float* vbase) {
    count = n;
    for (int j = 0; j < n; ++j) {
      k[j] = kbase + p.kv_offset(keys[j], h);
      v[j] = vbase + p.kv_offset(keys[j], h);
      lo[j] = keys[j];
      hi[j] = p.subtree_end[keys[j]];
    }
  }
};

struct Task {
  int64_t begin = 0, end = 0;  // node range of the tile
  int head = 0;                // first query head (forward, dQ) or the kv head (dK/dV)
  int heads = 0;               // query heads in the task
  double work = 0.0;           // estimated multiply-adds, for ordering and the serial cut-off
};

// The (query, head) rows of a query-tile task (forward, dQ), in lane groups of kRows:
// row r is query t0 + r / heads at head h0 + r % heads.
struct TileRows {
  int64_t t0 = 0;
  int heads = 0, h0 = 0, rows = 0, groups = 0;

  explicit TileRows(const Task& t)
      : t0(t.begin), heads(t.heads), h0(t.head), rows(static_cast<int>(t.end - t.begin) * t.heads),
        groups((rows + kRows - 1) / kRows) {}

  int64_t query(int r) const { return t0 + r / heads; }
  int head(int r) const { return h0 + r % heads; }
  int group_rows(int g) const { return std::min(kRows, rows - g * kRows); }
  int32_t first_query(int g) const { return static_cast<int32_t>(query(g * kRows)); }
  int32_t last_query(int g) const { return static_cast<int32_t>(query(g * kRows + group_rows(g) - 1)); }

  // Query id of each lane of group g (-1 past the last row: no key is visible to it).
  void lane_queries(int g, int32_t* qid) const {
    for (int r = 0; r < kRows; ++r) qid[r] = r < group_rows(g) ? static_cast<int32_t>(query(g * kRows + r)) : -1;
  }
  // Pointers to group g's rows of a [N, Hq, D] tensor.
  void row_pointers(const Problem& p, const float* base, int g, const float** out) const {
    for (int r = 0; r < group_rows(g); ++r) out[r] = base + p.q_offset(query(g * kRows + r), head(g * kRows + r));
  }
};

// Indices j < keys.count of the keys that some query of [first, last] can see.
inline int active_keys(const KeyRows& keys, int32_t first, int32_t last, int32_t* idx) {
  int n = 0;
  for (int j = 0; j < keys.count; ++j)
    if (keys.lo[j] <= last && keys.hi[j] > first) idx[n++] = j;
  return n;
}

// Runs the tasks on the pool, largest first so the long ones do not finish last; on the caller's
// thread when the whole call is small. `body(task, scratch)` gets a per-chunk scratch from make().
template <class MakeScratch, class Body>
void run_tasks(std::vector<Task>& tasks, MakeScratch make, Body body) {
  double total = 0.0;
  for (const Task& t : tasks) total += t.work;
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.work > b.work; });
  const int64_t n = static_cast<int64_t>(tasks.size());
  parallel_for(n, total < kSerialWork ? n : 1, [&](int64_t begin, int64_t end) {
    auto scratch = make();
    for (int64_t i = begin; i < end; ++i) body(tasks[static_cast<size_t>(i)], scratch);
  });
}

// Depth of every node (root = 0), for the length of a tile's key list.
inline std::vector<int32_t> node_depths(const Problem& p) {
  std::vector<int32_t> depth(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.n; ++i) depth[i] = p.parent[i] < 0 ? 0 : depth[p.parent[i]] + 1;
  return depth;
}

// Query tiles x head chunks: the task list of the forward and of backward pass 1.
inline std::vector<Task> query_tile_tasks(const Problem& p) {
  const std::vector<int32_t> depth = node_depths(p);
  const int chunk = std::min(p.group, kMaxGroupChunk);
  std::vector<Task> tasks;
  for (int64_t t0 = 0; t0 < p.n; t0 += kQueryTile) {
    const int64_t t1 = std::min<int64_t>(p.n, t0 + kQueryTile);
    const double keys = static_cast<double>(depth[t0]) + static_cast<double>(t1 - t0);
    for (int kv = 0; kv < p.hkv; ++kv)
      for (int g = 0; g < p.group; g += chunk) {
        const int heads = std::min(chunk, p.group - g);
        tasks.push_back({t0, t1, kv * p.group + g, heads, keys * static_cast<double>((t1 - t0) * heads) * p.dim});
      }
  }
  return tasks;
}

}  // namespace forge::attention
