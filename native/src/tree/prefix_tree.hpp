// The built prefix tree behind the opaque forge_prefix_tree handle (forge.h, contract 1). Plain
// arrays in the exact layout forge_prefix_tree_export copies out, so export is a set of memcpys.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <vector>

struct forge_prefix_tree {
  int32_t num_samples = 0;
  int64_t input_tokens = 0;  // T
  int32_t max_depth = 0;     // max position + 1

  // Nodes [N], DFS pre-order.
  std::vector<int32_t> token, parent, position, subtree_end, segment_of;
  // Segments [G]: maximal chains without branching, contiguous in pre-order.
  std::vector<int32_t> seg_start, seg_len, seg_parent;
  // Loss terms [J], ordered by sample, then position.
  std::vector<int32_t> term_node, term_target, term_sample, term_position, term_version;
  std::vector<float> term_old_logprob, term_advantage;
  // Node of each packed input position [T].
  std::vector<int32_t> node_of;
};

namespace forge::tree {

// Validates everything forge_prefix_tree_build reads from `batch` (sizes, offsets, token ids,
// trainable mask, finiteness of what the loss terms carry). Records the message on failure.
forge_status check_sample_batch(const forge_sample_batch& batch);

}  // namespace forge::tree
