// Prefix trees for the attention and layout problems, made the way the trainer makes them: token
// samples (calls) merged by forge_prefix_tree_build on the host, which also validates the result.
//   agent_tree: one shared prefix (system prompt + task), then `branches` sessions of several turns
//     each; every turn is one call whose prompt is the whole history so far (so the calls of a session
//     extend each other and merge into one chain per branch).
//   random_fork_tree: calls forking off random earlier calls at random points, exact duplicates and
//     fresh roots (a forest): irregular shapes for the correctness checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host_data.hpp"

namespace gpubench {

struct Tree {
  std::string description;
  int64_t num_nodes = 0;
  int64_t input_tokens = 0;   // tokens of all samples before merging
  int32_t num_samples = 0;
  int32_t max_depth = 0;
  int64_t leaves = 0;
  int64_t attended_pairs = 0; // sum over nodes of (depth + 1): the (query, key) pairs attention computes
  std::vector<int32_t> parent, subtree_end, position, node_of;
};

// Merges the samples (each non-empty) into a tree and exports it.
Tree build_tree(const std::vector<std::vector<int32_t>>& samples, std::string description);

struct AgentTreeSpec {
  int64_t nodes;    // tree tokens wanted (exact)
  int64_t prefix;   // shared prefix length
  int branches;
  int turns;        // calls per branch
};
Tree agent_tree(const AgentTreeSpec& spec, Rng& rng);

Tree random_fork_tree(int64_t target_nodes, Rng& rng);

}  // namespace gpubench
