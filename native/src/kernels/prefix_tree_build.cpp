// forge_prefix_tree_build: merges the samples of a batch into one trie (forge.h, contract 1).
//
// 1. Insert every sample into a trie whose nodes carry first-child / next-sibling lists in
//    insertion order. A child is found by checking the first child first (shared prefixes are long
//    chains, so this hits almost always), then, only under a node with several children, an
//    open-addressing hash table keyed on (parent, token) packed in 64 bits.
// 2. One stackless walk over the sibling lists numbers the nodes in DFS pre-order and writes the node
//    arrays, subtree ends and segments on the way (depth can be 100k+: no recursion, no stack).
// 3. node_of and the loss terms follow from the packed input in parallel.
// The trie insertion is inherently sequential; it runs on one core at tens of millions of tokens/s.
#include <algorithm>
#include <memory>
#include <vector>

#include "common/error.hpp"
#include "common/thread_pool.hpp"
#include "tree/prefix_tree.hpp"

namespace forge::tree {

namespace {

constexpr int32_t kNone = -1;
constexpr int64_t kGrain = int64_t{1} << 15;

// Trie node in insertion order; id 0 is a virtual root above all real roots.
struct TrieNode {
  int32_t token;
  int32_t parent;
  int32_t first_child = kNone;
  int32_t last_child = kNone;
  int32_t next_sibling = kNone;
};

// (parent, token) -> child, for children of nodes that have more than one child.
class ChildTable {
 public:
  ChildTable() { rehash(1024); }

  int32_t find(int32_t parent, int32_t token) const {
    const uint64_t k = key(parent, token);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (keys_[i] == k) return values_[i];
      if (keys_[i] == kEmpty) return kNone;
    }
  }

  void insert(int32_t parent, int32_t token, int32_t child) {
    if ((size_ + 1) * 2 > keys_.size()) rehash(keys_.size() * 2);  // load <= 1/2: short probes
    place(key(parent, token), child);
    ++size_;
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // parent 0xFFFFFFFF never occurs (ids < 2^31)

  static uint64_t key(int32_t parent, int32_t token) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(parent)) << 32) | static_cast<uint32_t>(token);
  }
  size_t slot(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_); }

  void place(uint64_t k, int32_t v) {
    size_t i = slot(k);
    while (keys_[i] != kEmpty) i = (i + 1) & mask_;
    keys_[i] = k;
    values_[i] = v;
  }

  void rehash(size_t capacity) {
    std::vector<uint64_t> old_keys(capacity, kEmpty);
    std::vector<int32_t> old_values(capacity);
    old_keys.swap(keys_);
    old_values.swap(values_);
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;  // capacity is a power of two
    for (size_t i = 0; i < old_keys.size(); ++i)
      if (old_keys[i] != kEmpty) place(old_keys[i], old_values[i]);
  }

  std::vector<uint64_t> keys_;
  std::vector<int32_t> values_;
  size_t mask_ = 0;
  int shift_ = 0;
  size_t size_ = 0;
};

class Trie {
 public:
  explicit Trie(int64_t expected_nodes) {
    nodes_.reserve(static_cast<size_t>(expected_nodes) + 1);
    nodes_.push_back({kNone, kNone});
  }

  const std::vector<TrieNode>& nodes() const { return nodes_; }

  // Child of `parent` with `token`, created (as the last child) when missing.
  int32_t child(int32_t parent, int32_t token) {
    const int32_t first = nodes_[parent].first_child;
    if (first == kNone) return add(parent, token);
    if (nodes_[first].token == token) return first;
    if (nodes_[first].next_sibling == kNone) {
      // Second child: from now on this parent's children are looked up in the table.
      children_.insert(parent, nodes_[first].token, first);
      return add(parent, token);
    }
    const int32_t found = children_.find(parent, token);
    return found != kNone ? found : add(parent, token);
  }

 private:
  int32_t add(int32_t parent, int32_t token) {
    const int32_t id = static_cast<int32_t>(nodes_.size());
    nodes_.push_back({token, parent});
    TrieNode& p = nodes_[parent];
    if (p.first_child == kNone) {
      p.first_child = id;
    } else {
      nodes_[p.last_child].next_sibling = id;
      children_.insert(parent, token, id);
    }
    p.last_child = id;
    return id;
  }

  std::vector<TrieNode> nodes_;
  ChildTable children_;
};

// Step 2: pre-order numbering. Fills the node and segment arrays of `out`; returns the pre-order id
// of every trie node (index 0, the virtual root, maps to -1).
std::vector<int32_t> number_nodes(const std::vector<TrieNode>& nodes, forge_prefix_tree& out) {
  const size_t N = nodes.size() - 1;
  std::vector<int32_t> pre(nodes.size(), kNone);
  out.token.resize(N);
  out.parent.resize(N);
  out.position.resize(N);
  out.subtree_end.resize(N);
  out.segment_of.resize(N);
  int32_t counter = 0;
  int32_t max_position = 0;
  int32_t x = nodes[0].first_child;
  while (x != kNone) {
    const TrieNode& node = nodes[x];
    const int32_t p = counter++;
    pre[x] = p;
    const int32_t up = pre[node.parent];  // the parent was numbered before its children
    out.token[p] = node.token;
    out.parent[p] = up;
    out.position[p] = up == kNone ? 0 : out.position[up] + 1;
    max_position = std::max(max_position, out.position[p]);
    // A segment starts at a root or below a branching node; otherwise the node continues the
    // segment of its parent, which is node p - 1 (an only child comes right after its parent).
    if (up == kNone || nodes[nodes[node.parent].first_child].next_sibling != kNone) {
      out.segment_of[p] = static_cast<int32_t>(out.seg_start.size());
      out.seg_start.push_back(p);
      out.seg_len.push_back(1);
      out.seg_parent.push_back(up == kNone ? kNone : out.segment_of[up]);
    } else {
      out.segment_of[p] = out.segment_of[p - 1];
      ++out.seg_len.back();
    }
    if (node.first_child != kNone) {
      x = node.first_child;
      continue;
    }
    // A leaf: close it and every ancestor whose last child it ends, then move to the next sibling.
    for (;;) {
      out.subtree_end[pre[x]] = counter;
      if (nodes[x].next_sibling != kNone) {
        x = nodes[x].next_sibling;
        break;
      }
      x = nodes[x].parent;
      if (x == 0) {
        x = kNone;
        break;
      }
    }
  }
  out.max_depth = max_position + 1;
  return pre;
}

// Step 3b: one term per trainable packed position (position 0 of a sample is never trainable, so
// position i - 1 is in the same sample). Chunks count their terms, then fill their own ranges.
void emit_terms(const forge_sample_batch& b, forge_prefix_tree& out) {
  const int64_t T = b.offsets[b.num_samples];
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(T / kGrain, int64_t{num_threads()} * 4));
  std::vector<int64_t> first_term(static_cast<size_t>(chunks) + 1, 0);
  auto chunk_begin = [&](int64_t c) { return T * c / chunks; };
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      int64_t count = 0;
      for (int64_t i = chunk_begin(c); i < chunk_begin(c + 1); ++i) count += b.trainable[i] != 0;
      first_term[c + 1] = count;
    }
  });
  for (int64_t c = 0; c < chunks; ++c) first_term[c + 1] += first_term[c];
  const size_t J = static_cast<size_t>(first_term[chunks]);
  out.term_node.resize(J);
  out.term_target.resize(J);
  out.term_old_logprob.resize(J);
  out.term_advantage.resize(J);
  out.term_sample.resize(J);
  out.term_position.resize(J);
  out.term_version.resize(J);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = chunk_begin(c);
      int64_t s = std::upper_bound(b.offsets, b.offsets + b.num_samples + 1, begin) - b.offsets - 1;
      int64_t j = first_term[c];
      for (int64_t i = begin; i < chunk_begin(c + 1); ++i) {
        while (i >= b.offsets[s + 1]) ++s;
        // The bounds re-checks only matter if the caller changes the mask while we run (shared
        // memory): then the terms are wrong, but nothing is written out of bounds.
        if (!b.trainable[i] || i == b.offsets[s] || j == first_term[c + 1]) continue;
        out.term_node[j] = out.node_of[i - 1];
        out.term_target[j] = b.tokens[i];
        out.term_old_logprob[j] = b.old_logprobs ? b.old_logprobs[i] : 0.0f;
        out.term_advantage[j] = b.advantages ? b.advantages[i] : b.sample_advantages ? b.sample_advantages[s] : 0.0f;
        out.term_sample[j] = static_cast<int32_t>(s);
        out.term_position[j] = static_cast<int32_t>(i - b.offsets[s]);
        out.term_version[j] = b.versions ? b.versions[s] : 0;
        ++j;
      }
    }
  });
}

forge_status build(const forge_sample_batch* batch, forge_prefix_tree** out) {
  if (!out) return fail(FORGE_ERR_INVALID_ARGUMENT, "out: null pointer");
  *out = nullptr;
  if (!batch) return fail(FORGE_ERR_INVALID_ARGUMENT, "batch: null pointer");
  const forge_sample_batch& b = *batch;
  if (forge_status s = check_sample_batch(b); s != FORGE_OK) return s;

  const int64_t T = b.offsets[b.num_samples];
  auto tree = std::make_unique<forge_prefix_tree>();
  tree->num_samples = b.num_samples;
  tree->input_tokens = T;
  tree->node_of.resize(static_cast<size_t>(T));
  {
    // Step 1. node_of holds trie ids until step 3a maps them to pre-order ids.
    Trie trie(std::min<int64_t>(T, int64_t{1} << 20));
    for (int32_t s = 0; s < b.num_samples; ++s) {
      int32_t at = 0;
      for (int64_t i = b.offsets[s]; i < b.offsets[s + 1]; ++i) tree->node_of[i] = at = trie.child(at, b.tokens[i]);
    }
    const std::vector<int32_t> pre = number_nodes(trie.nodes(), *tree);
    // Step 3a.
    int32_t* node_of = tree->node_of.data();
    parallel_for(T, kGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) node_of[i] = pre[node_of[i]];
    });
  }
  if (b.trainable) emit_terms(b, *tree);
  *out = tree.release();
  return FORGE_OK;
}

}  // namespace

}  // namespace forge::tree

extern "C" FORGE_API forge_status forge_prefix_tree_build(const forge_sample_batch* batch, forge_prefix_tree** out) {
  return forge::guarded("forge_prefix_tree_build", [&] { return forge::tree::build(batch, out); });
}
