// forge_tree_validate: checks that (parent, subtree_end) describe a forest numbered in DFS pre-order.
//
// One pass with a stack holding the root path of node i-1. In pre-order the parent of i must be on
// that path; every node popped off the path below it has its subtree closed at i, so subtree_end of
// a popped node must be exactly i. Nodes still on the path at the end close at N. O(N) time, O(N)
// scratch (each node's depth, for an O(1) "is p on the path" test); no recursion, so any depth works.
#include <forge/forge.h>

#include <string>
#include <vector>

#include "common/error.hpp"

namespace {

constexpr int64_t kMaxNodes = int64_t{1} << 31;  // node ids are int32

forge_status check_closed(const int32_t* subtree_end, int32_t node, int64_t expected) {
  if (subtree_end[node] != expected)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                       "subtree_end[" + std::to_string(node) + "]: expected " + std::to_string(expected) +
                           " (node + 1 + number of descendants), got " + std::to_string(subtree_end[node]));
  return FORGE_OK;
}

forge_status validate(const int32_t* parent, const int32_t* subtree_end, int64_t num_nodes) {
  if (num_nodes < 1 || num_nodes >= kMaxNodes)
    return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                       "num_nodes: expected an integer in [1, 2^31), got " + std::to_string(num_nodes));
  if (!parent) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "parent: null pointer");
  if (!subtree_end) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "subtree_end: null pointer");

  std::vector<int32_t> path;   // root path of the previous node, root first (ids increase)
  std::vector<int32_t> depth(static_cast<size_t>(num_nodes));  // index of each node on the path
  for (int64_t i = 0; i < num_nodes; ++i) {
    const int32_t p = parent[i];
    if (p < -1 || p >= i)
      return forge::fail(FORGE_ERR_OUT_OF_RANGE, "parent[" + std::to_string(i) + "]: " + std::to_string(p) +
                                                     " out of range [-1, " + std::to_string(i) + ")");
    // Check membership first so a bad parent is reported as such, not as a subtree_end mismatch.
    size_t keep = 0;
    if (p != -1) {
      keep = static_cast<size_t>(depth[p]) + 1;
      if (keep > path.size() || path[keep - 1] != p)
        return forge::fail(FORGE_ERR_INVALID_ARGUMENT,
                           "parent[" + std::to_string(i) + "]: node " + std::to_string(p) +
                               " is not on the root path of node " + std::to_string(i - 1) +
                               ", so the nodes are not in DFS pre-order");
    }
    // Everything below p on the path ends its subtree right before i.
    while (path.size() > keep) {
      if (forge_status s = check_closed(subtree_end, path.back(), i); s != FORGE_OK) return s;
      path.pop_back();
    }
    depth[i] = static_cast<int32_t>(path.size());
    path.push_back(static_cast<int32_t>(i));
  }
  while (!path.empty()) {
    if (forge_status s = check_closed(subtree_end, path.back(), num_nodes); s != FORGE_OK) return s;
    path.pop_back();
  }
  return FORGE_OK;
}

}  // namespace

extern "C" FORGE_API forge_status forge_tree_validate(const int32_t* parent, const int32_t* subtree_end,
                                                      int64_t num_nodes) {
  return forge::guarded("forge_tree_validate", [&] { return validate(parent, subtree_end, num_nodes); });
}
