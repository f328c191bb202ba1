#include "trees.hpp"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "bench_common.hpp"

namespace gpubench {
namespace {

constexpr int32_t kVocab = 151936;  // a real tokenizer's vocabulary (Qwen2)

std::vector<int32_t> random_tokens(Rng& rng, int64_t n, int32_t vocab) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int32_t& t : out) t = static_cast<int32_t>(rng.below(vocab));
  return out;
}

// Splits `total` into `parts` positive pieces of random size (each 0.6x to 1.4x of the mean).
std::vector<int64_t> random_split(Rng& rng, int64_t total, int parts) {
  std::vector<double> weight(static_cast<size_t>(parts));
  double sum = 0;
  for (double& w : weight) sum += (w = 0.6 + 0.8 * rng.uniform());
  std::vector<int64_t> piece(static_cast<size_t>(parts));
  int64_t used = 0;
  for (int i = 0; i < parts; ++i) used += piece[i] = std::max<int64_t>(1, static_cast<int64_t>(total * weight[i] / sum));
  for (int i = 0; used != total; i = (i + 1) % parts) {  // settle the rounding, keeping every piece >= 1
    if (used < total) ++piece[i], ++used;
    else if (piece[i] > 1) --piece[i], --used;
  }
  return piece;
}

}  // namespace

Tree build_tree(const std::vector<std::vector<int32_t>>& samples, std::string description) {
  std::vector<int64_t> offsets(samples.size() + 1, 0);
  std::vector<int32_t> tokens;
  for (size_t s = 0; s < samples.size(); ++s) {
    tokens.insert(tokens.end(), samples[s].begin(), samples[s].end());
    offsets[s + 1] = static_cast<int64_t>(tokens.size());
  }
  forge_sample_batch batch{};
  batch.num_samples = static_cast<int32_t>(samples.size());
  batch.offsets = offsets.data();
  batch.tokens = tokens.data();
  batch.vocab_size = kVocab;

  forge_prefix_tree* raw = nullptr;
  GB_FORGE(forge_prefix_tree_build(&batch, &raw));
  std::unique_ptr<forge_prefix_tree, void (*)(forge_prefix_tree*)> handle(raw, forge_prefix_tree_free);
  forge_prefix_tree_info info{};
  GB_FORGE(forge_prefix_tree_get_info(handle.get(), &info));

  Tree t;
  t.description = std::move(description);
  t.num_nodes = info.num_nodes;
  t.input_tokens = info.input_tokens;
  t.num_samples = info.num_samples;
  t.max_depth = info.max_depth;
  t.parent.resize(static_cast<size_t>(info.num_nodes));
  t.subtree_end.resize(t.parent.size());
  t.position.resize(t.parent.size());
  t.node_of.resize(static_cast<size_t>(info.input_tokens));
  forge_prefix_tree_arrays arrays{};
  arrays.parent = t.parent.data();
  arrays.subtree_end = t.subtree_end.data();
  arrays.position = t.position.data();
  arrays.node_of = t.node_of.data();
  GB_FORGE(forge_prefix_tree_export(handle.get(), &arrays));
  GB_FORGE(forge_tree_validate(t.parent.data(), t.subtree_end.data(), t.num_nodes));
  for (int64_t i = 0; i < t.num_nodes; ++i) {
    t.attended_pairs += t.position[i] + 1;
    t.leaves += t.subtree_end[i] == i + 1;
  }
  return t;
}

Tree agent_tree(const AgentTreeSpec& spec, Rng& rng) {
  if (spec.nodes < spec.prefix + static_cast<int64_t>(spec.branches) * spec.turns)
    throw BenchError("agent_tree: too few nodes for the prefix, branches and turns asked for");
  const std::vector<int32_t> prefix = random_tokens(rng, spec.prefix, kVocab);
  const std::vector<int64_t> branch_len = random_split(rng, spec.nodes - spec.prefix, spec.branches);
  std::set<int32_t> first_tokens;  // distinct first tokens: the branches part right after the prefix
  std::vector<std::vector<int32_t>> samples;
  for (int b = 0; b < spec.branches; ++b) {
    std::vector<int32_t> branch = random_tokens(rng, branch_len[b], kVocab);
    while (!first_tokens.insert(branch[0]).second) branch[0] = static_cast<int32_t>(rng.below(kVocab));
    const int turns = static_cast<int>(std::min<int64_t>(spec.turns, branch_len[b]));
    const std::vector<int64_t> turn_len = random_split(rng, branch_len[b], turns);
    int64_t end = 0;
    for (int t = 0; t < turns; ++t) {  // call t: the prefix and the session's history through turn t
      end += turn_len[t];
      std::vector<int32_t> call(prefix);
      call.insert(call.end(), branch.begin(), branch.begin() + end);
      samples.push_back(std::move(call));
    }
  }
  Tree tree = build_tree(samples, "agent tree: " + std::to_string(spec.prefix) + "-token shared prefix, " +
                                      std::to_string(spec.branches) + " branches x " + std::to_string(spec.turns) +
                                      " turns");
  if (tree.num_nodes != spec.nodes) throw BenchError("agent_tree: built " + std::to_string(tree.num_nodes) +
                                                     " nodes, expected " + std::to_string(spec.nodes));
  return tree;
}

Tree random_fork_tree(int64_t target_nodes, Rng& rng) {
  // A small vocabulary so that appended tokens sometimes coincide with an existing child and merge.
  constexpr int32_t kSmallVocab = 64;
  std::vector<std::vector<int32_t>> samples;
  int64_t new_tokens = 0;  // an upper bound on the nodes made so far
  // Roots up to ~400 tokens and forks adding up to 160, scaled down for small trees so that they
  // still hold several calls (forks) rather than one long root.
  const int64_t root_span = std::clamp<int64_t>(target_nodes / 4, 8, 384);
  const int64_t fork_span = std::clamp<int64_t>(target_nodes / 8, 4, 160);
  while (new_tokens < target_nodes) {
    const double r = rng.uniform();
    if (samples.empty() || r < 0.08) {  // a fresh root: the forest grows a tree
      const int64_t len = 16 + rng.below(root_span);
      samples.push_back(random_tokens(rng, len, kSmallVocab));
      new_tokens += len;
    } else if (r < 0.13) {  // an exact duplicate call
      samples.push_back(samples[static_cast<size_t>(rng.below(static_cast<int64_t>(samples.size())))]);
    } else {  // fork (or extend, when the cut is the whole call) from a random earlier call
      const std::vector<int32_t>& base = samples[static_cast<size_t>(rng.below(static_cast<int64_t>(samples.size())))];
      const int64_t cut = 1 + rng.below(static_cast<int64_t>(base.size()));
      std::vector<int32_t> call(base.begin(), base.begin() + cut);
      const int64_t extra = 1 + rng.below(fork_span);
      const std::vector<int32_t> tail = random_tokens(rng, extra, kSmallVocab);
      call.insert(call.end(), tail.begin(), tail.end());
      samples.push_back(std::move(call));
      new_tokens += extra;
    }
  }
  return build_tree(samples, "random forks of " + std::to_string(samples.size()) + " calls");
}

}  // namespace gpubench
