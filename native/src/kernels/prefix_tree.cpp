// The prefix tree handle: info, export into caller-owned arrays, free (forge.h, contract 1). The
// build itself is in prefix_tree_build.cpp, its input checks in prefix_tree_check.cpp.
#include <cstring>
#include <vector>

#include "common/error.hpp"
#include "tree/prefix_tree.hpp"

namespace {

template <class T>
void copy_out(T* dst, const std::vector<T>& src) {
  if (dst && !src.empty()) std::memcpy(dst, src.data(), src.size() * sizeof(T));
}

}  // namespace

extern "C" {

FORGE_API void forge_prefix_tree_free(forge_prefix_tree* tree) { delete tree; }

FORGE_API forge_status forge_prefix_tree_get_info(const forge_prefix_tree* tree, forge_prefix_tree_info* info) {
  return forge::guarded("forge_prefix_tree_get_info", [&] {
    if (!tree) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "tree: null pointer");
    if (!info) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "info: null pointer");
    info->num_nodes = static_cast<int64_t>(tree->token.size());
    info->num_segments = static_cast<int64_t>(tree->seg_start.size());
    info->num_terms = static_cast<int64_t>(tree->term_node.size());
    info->input_tokens = tree->input_tokens;
    info->num_samples = tree->num_samples;
    info->max_depth = tree->max_depth;
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_prefix_tree_export(const forge_prefix_tree* tree, const forge_prefix_tree_arrays* out) {
  return forge::guarded("forge_prefix_tree_export", [&] {
    if (!tree) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "tree: null pointer");
    if (!out) return forge::fail(FORGE_ERR_INVALID_ARGUMENT, "out: null pointer");
    const forge_prefix_tree& t = *tree;
    copy_out(out->token, t.token);
    copy_out(out->parent, t.parent);
    copy_out(out->position, t.position);
    copy_out(out->subtree_end, t.subtree_end);
    copy_out(out->segment_of, t.segment_of);
    copy_out(out->seg_start, t.seg_start);
    copy_out(out->seg_len, t.seg_len);
    copy_out(out->seg_parent, t.seg_parent);
    copy_out(out->term_node, t.term_node);
    copy_out(out->term_target, t.term_target);
    copy_out(out->term_old_logprob, t.term_old_logprob);
    copy_out(out->term_advantage, t.term_advantage);
    copy_out(out->term_sample, t.term_sample);
    copy_out(out->term_position, t.term_position);
    copy_out(out->term_version, t.term_version);
    copy_out(out->node_of, t.node_of);
    return FORGE_OK;
  });
}

}  // extern "C"
