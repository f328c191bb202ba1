// Moving values between the tree layout [N, C] and the packed per-sample layout [T, C] (forge.h,
// contract 1): gather copies node rows out to positions, scatter sums position rows into nodes, merge
// copies the row of each node's first position into the node.
//
// Scatter groups positions by node first (a counting sort of node_of, stable so sums run in position
// order), then each node sums its rows in float64 and writes its row once: threads own disjoint
// output rows, so there are no races and the result does not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/simd.hpp"
#include "common/thread_pool.hpp"

namespace {

constexpr int64_t kMaxElements = (int64_t{1} << 62) / static_cast<int64_t>(sizeof(float));
constexpr int64_t kMaxIds = int64_t{1} << 31;  // node_of holds int32 ids

int64_t grain_for(int64_t channels) { return std::max<int64_t>(1, (int64_t{1} << 15) / channels); }

forge_status check_shapes(int64_t num_nodes, int64_t channels, int64_t num_positions) {
  if (channels < 1)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "channels: expected at least 1, got " + std::to_string(channels));
  if (num_nodes < 1 || num_nodes > kMaxIds)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                       "num_nodes: expected an integer in [1, 2^31], got " + std::to_string(num_nodes));
  if (num_positions < 0)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                       "num_positions: expected at least 0, got " + std::to_string(num_positions));
  if (num_nodes > kMaxElements / channels || num_positions > kMaxElements / channels)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "channels: " + std::to_string(channels) +
                                                       " channels times the number of rows overflows a buffer size");
  return FORGE_OK;
}

// First index in [begin, end) whose node id is outside [0, num_nodes), or end.
FORGE_HOT int64_t first_bad_node(const int32_t* node_of, int64_t begin, int64_t end, int64_t num_nodes) {
  for (int64_t i = begin; i < end; ++i)
    if (node_of[i] < 0 || node_of[i] >= num_nodes) return i;
  return end;
}

forge_status check_node_of(const int32_t* node_of, int64_t num_positions, int64_t num_nodes) {
  std::atomic<int64_t> first{num_positions};
  forge::parallel_for(num_positions, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    const int64_t bad = first_bad_node(node_of, begin, end, num_nodes);
    if (bad == end) return;
    int64_t seen = first.load(std::memory_order_relaxed);
    while (bad < seen && !first.compare_exchange_weak(seen, bad, std::memory_order_relaxed)) {
    }
  });
  const int64_t bad = first.load();
  if (bad == num_positions) return FORGE_OK;
  return forge::fail(FORGE_ERR_OUT_OF_RANGE, "node_of[" + std::to_string(bad) + "]: node " +
                                                 std::to_string(node_of[bad]) + " out of range [0, " +
                                                 std::to_string(num_nodes) + ")");
}

// A null pointer is only accepted for a buffer of zero elements (an empty TypedArray may have none).
forge_status check_pointer(const void* data, int64_t elements, const char* name) {
  if (!data && elements > 0) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer");
  return FORGE_OK;
}

// Each id is read once and bounds-checked again: node_of was validated, but a caller sharing the
// memory with another thread could change it meanwhile, and that must not become an invalid read.
FORGE_HOT void gather_rows(const float* node_values, int64_t num_nodes, int64_t channels, const int32_t* node_of,
                           float* out, int64_t begin, int64_t end) {
  const size_t row_bytes = static_cast<size_t>(channels) * sizeof(float);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t n = node_of[i];
    if (n < 0 || n >= num_nodes) continue;
    if (channels == 1) out[i] = node_values[n];
    else std::memcpy(out + i * channels, node_values + n * channels, row_bytes);
  }
}

// Node n sums the rows of positions order[start[n]..start[n+1]).
FORGE_HOT void sum_rows(const float* sample_values, int64_t channels, const int64_t* start, const int64_t* order,
                        float* out, int64_t begin, int64_t end) {
  std::vector<double> acc(static_cast<size_t>(channels));
  for (int64_t n = begin; n < end; ++n) {
    float* row = out + n * channels;
    const int64_t lo = start[n], hi = start[n + 1];
    if (hi - lo <= 1) {
      // The common case (a position of its own, or none): a copy, or zeros.
      if (hi == lo) std::fill(row, row + channels, 0.0f);
      else std::memcpy(row, sample_values + order[lo] * channels, channels * sizeof(float));
      continue;
    }
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int64_t k = lo; k < hi; ++k) {
      const float* src = sample_values + order[k] * channels;
      for (int64_t c = 0; c < channels; ++c) acc[c] += src[c];
    }
    for (int64_t c = 0; c < channels; ++c) row[c] = static_cast<float>(acc[c]);
  }
}

// Node n takes the row of position first[n], or zeros when first[n] is -1 (no position).
FORGE_HOT void copy_first_rows(const float* values, int64_t channels, const int64_t* first, float* out, int64_t begin,
                               int64_t end) {
  const size_t row_bytes = static_cast<size_t>(channels) * sizeof(float);
  for (int64_t n = begin; n < end; ++n) {
    float* row = out + n * channels;
    if (first[n] < 0) std::fill(row, row + channels, 0.0f);
    else std::memcpy(row, values + first[n] * channels, row_bytes);
  }
}

forge_status gather(const float* node_values, int64_t num_nodes, int64_t channels, const int32_t* node_of,
                    int64_t num_positions, float* out) {
  if (forge_status s = check_shapes(num_nodes, channels, num_positions); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(node_values, num_nodes * channels, "node_values"); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(node_of, num_positions, "node_of"); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(out, num_positions * channels, "out"); s != FORGE_OK) return s;
  if (forge_status s = check_node_of(node_of, num_positions, num_nodes); s != FORGE_OK) return s;
  forge::parallel_for(num_positions, grain_for(channels), [&](int64_t begin, int64_t end) {
    gather_rows(node_values, num_nodes, channels, node_of, out, begin, end);
  });
  return FORGE_OK;
}

// The checks of the samples -> tree calls (values [T, C], node_of [T], out [N, C]), and `ids`: a
// private copy of node_of, validated once and read several times (the caller's memory could change
// under us if it is shared with another thread).
forge_status samples_to_tree_args(const float* values, const char* values_name, int64_t num_positions,
                                  int64_t channels, const int32_t* node_of, int64_t num_nodes, const float* out,
                                  std::vector<int32_t>& ids) {
  if (forge_status s = check_shapes(num_nodes, channels, num_positions); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(values, num_positions * channels, values_name); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(node_of, num_positions, "node_of"); s != FORGE_OK) return s;
  if (forge_status s = check_pointer(out, num_nodes * channels, "out"); s != FORGE_OK) return s;
  ids.assign(node_of, node_of + num_positions);
  return check_node_of(ids.data(), num_positions, num_nodes);
}

forge_status scatter(const float* sample_values, int64_t num_positions, int64_t channels, const int32_t* node_of,
                     int64_t num_nodes, float* out) {
  std::vector<int32_t> ids;
  if (forge_status s = samples_to_tree_args(sample_values, "sample_values", num_positions, channels, node_of,
                                            num_nodes, out, ids);
      s != FORGE_OK)
    return s;
  // Counting sort of positions by node (ids only, O(T + N), cheap next to the [T, C] rows).
  std::vector<int64_t> start(static_cast<size_t>(num_nodes) + 1, 0);
  for (int64_t i = 0; i < num_positions; ++i) ++start[ids[i] + 1];
  for (int64_t n = 0; n < num_nodes; ++n) start[n + 1] += start[n];
  std::vector<int64_t> order(static_cast<size_t>(num_positions));
  {
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < num_positions; ++i) order[next[ids[i]]++] = i;
  }
  forge::parallel_for(num_nodes, grain_for(channels), [&](int64_t begin, int64_t end) {
    sum_rows(sample_values, channels, start.data(), order.data(), out, begin, end);
  });
  return FORGE_OK;
}

forge_status merge(const float* values, int64_t num_positions, int64_t channels, const int32_t* node_of,
                   int64_t num_nodes, float* out) {
  std::vector<int32_t> ids;
  if (forge_status s = samples_to_tree_args(values, "values", num_positions, channels, node_of, num_nodes, out, ids);
      s != FORGE_OK)
    return s;
  // Walking backwards leaves each node with its lowest position (the deterministic "first").
  std::vector<int64_t> first(static_cast<size_t>(num_nodes), -1);
  for (int64_t i = num_positions - 1; i >= 0; --i) first[ids[i]] = i;
  forge::parallel_for(num_nodes, grain_for(channels), [&](int64_t begin, int64_t end) {
    copy_first_rows(values, channels, first.data(), out, begin, end);
  });
  return FORGE_OK;
}

}  // namespace

extern "C" {

FORGE_API forge_status forge_gather_to_samples(const float* node_values, int64_t num_nodes, int64_t channels,
                                               const int32_t* node_of, int64_t num_positions, float* out) {
  return forge::guarded("forge_gather_to_samples",
                        [&] { return gather(node_values, num_nodes, channels, node_of, num_positions, out); });
}

FORGE_API forge_status forge_scatter_from_samples(const float* sample_values, int64_t num_positions,
                                                  int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                  float* out) {
  return forge::guarded("forge_scatter_from_samples",
                        [&] { return scatter(sample_values, num_positions, channels, node_of, num_nodes, out); });
}

FORGE_API forge_status forge_merge_to_tree(const float* values, int64_t num_positions, int64_t channels,
                                           const int32_t* node_of, int64_t num_nodes, float* out) {
  return forge::guarded("forge_merge_to_tree",
                        [&] { return merge(values, num_positions, channels, node_of, num_nodes, out); });
}

}  // extern "C"
