// The C ABI of the nano policy (forge.h, "Nano policy model"): argument checks, then the network.
// Every entry point validates the config, every pointer, the token ids, positions, the tree and the
// loss terms before computing anything, and runs inside forge::guarded.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/thread_pool.hpp"
#include "loss/online_logsumexp.hpp"
#include "loss/policy_terms.hpp"
#include "model/config.hpp"
#include "model/init.hpp"
#include "model/layer.hpp"
#include "model/network.hpp"

namespace forge::model {
namespace {

std::string str(int64_t x) { return std::to_string(x); }

forge_status null_arg(const char* name) {
  return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer");
}

// Non-finite parameters would only surface deep inside (as a non-finite q in attention): refuse them
// up front, naming the tensor and element. Chunks are scanned with the loss kernels' vector check.
struct FiniteCheck {
  template <int W>
  FORGE_LOSS_INLINE static void run(const float* p, int64_t count, bool& ok) {
    ok = forge::loss::row_finite<W>(p, count);
  }
};

forge_status check_params_finite(const Dims& d, const float* params) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  const int64_t count = num_params(d), chunks = (count + kChunk - 1) / kChunk;
  std::vector<uint8_t> bad(static_cast<size_t>(chunks), 0);
  parallel_for(chunks, 4, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t begin = c * kChunk, len = std::min(kChunk, count - begin);
      bool ok = true;
      forge::loss::dispatch_width<FiniteCheck>(params + begin, len, ok);
      bad[static_cast<size_t>(c)] = !ok;
    }
  });
  for (int64_t c = 0; c < chunks; ++c) {
    if (!bad[static_cast<size_t>(c)]) continue;
    const int64_t begin = c * kChunk, end = std::min(count, begin + kChunk);
    for (int64_t i = begin; i < end; ++i) {
      if (std::isfinite(params[i])) continue;
      for (const TensorInfo& t : param_layout(d))
        if (i >= t.offset && i < t.offset + t.size())
          return fail(FORGE_ERR_NON_FINITE, "params[" + str(i) + "] (" + t.name + "[" + str(i - t.offset) +
                                                "]): expected a finite number, got " + forge::loss::num(params[i]));
    }
  }
  return FORGE_OK;
}

// A forward or training call: the config (into d), then the batch: sizes, pointers, token ids,
// positions, the tree and the parameters.
forge_status check_call(const forge_model_config* config, const float* params, int64_t n, const int32_t* tokens,
                        const int32_t* positions, const int32_t* parent, const int32_t* subtree_end, Dims& d,
                        TreeBatch& t) {
  if (forge_status s = check_config(config, d); s != FORGE_OK) return s;
  if (!params) return null_arg("params");
  if (n < 1 || n > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_nodes: expected an integer in [1, 2^31), got " + str(n));
  if (!tokens) return null_arg("tokens");
  if (!positions) return null_arg("positions");
  if (!parent) return null_arg("parent");
  if (!subtree_end) return null_arg("subtree_end");
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= d.vocab)
      return fail(FORGE_ERR_OUT_OF_RANGE, "tokens[" + str(i) + "]: token id " + str(tokens[i]) + " out of range [0, " +
                                              str(d.vocab) + ")");
    if (positions[i] < 0)
      return fail(FORGE_ERR_OUT_OF_RANGE, "positions[" + str(i) + "]: expected >= 0, got " + str(positions[i]));
  }
  if (forge_status s = forge_tree_validate(parent, subtree_end, n); s != FORGE_OK) return s;
  if (forge_status s = check_params_finite(d, params); s != FORGE_OK) return s;
  t = TreeBatch{n, tokens, positions, parent, subtree_end};
  return FORGE_OK;
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a), y = reinterpret_cast<uintptr_t>(b);
  return x < y + b_bytes && y < x + a_bytes;
}

}  // namespace
}  // namespace forge::model

using forge::fail;
using forge::model::Dims;

extern "C" {

FORGE_API forge_status forge_model_num_params(const forge_model_config* config, int64_t* count) {
  return forge::guarded("forge_model_num_params", [&] {
    Dims d;
    if (forge_status s = forge::model::check_config(config, d); s != FORGE_OK) return s;
    if (!count) return forge::model::null_arg("count");
    *count = forge::model::num_params(d);
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_model_param_count(const forge_model_config* config, int32_t* count) {
  return forge::guarded("forge_model_param_count", [&] {
    Dims d;
    if (forge_status s = forge::model::check_config(config, d); s != FORGE_OK) return s;
    if (!count) return forge::model::null_arg("count");
    *count = static_cast<int32_t>(forge::model::param_layout(d).size());
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_model_param_info(const forge_model_config* config, int32_t index, char* name,
                                              int64_t name_capacity, int64_t* offset, int32_t* rank,
                                              int64_t shape[2]) {
  return forge::guarded("forge_model_param_info", [&] {
    Dims d;
    if (forge_status s = forge::model::check_config(config, d); s != FORGE_OK) return s;
    const std::vector<forge::model::TensorInfo> layout = forge::model::param_layout(d);
    if (index < 0 || static_cast<size_t>(index) >= layout.size())
      return fail(FORGE_ERR_OUT_OF_RANGE, "index: expected an integer in [0, " + std::to_string(layout.size()) +
                                              "), got " + std::to_string(index));
    const forge::model::TensorInfo& t = layout[static_cast<size_t>(index)];
    if (name) {
      if (name_capacity < static_cast<int64_t>(t.name.size()) + 1)
        return fail(FORGE_ERR_INVALID_ARGUMENT, "name_capacity: " + std::to_string(name_capacity) +
                                                    " bytes cannot hold '" + t.name + "' and its NUL");
      std::memcpy(name, t.name.c_str(), t.name.size() + 1);
    }
    if (offset) *offset = t.offset;
    if (rank) *rank = t.rank;
    if (shape) {
      shape[0] = t.shape[0];
      shape[1] = t.shape[1];
    }
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_model_init(const forge_model_config* config, uint64_t seed, float* params) {
  return forge::guarded("forge_model_init", [&] {
    Dims d;
    if (forge_status s = forge::model::check_config(config, d); s != FORGE_OK) return s;
    if (!params) return forge::model::null_arg("params");
    forge::model::init_params(d, seed, params);
    return FORGE_OK;
  });
}

FORGE_API forge_status forge_model_forward(const forge_model_config* config, const float* params, int64_t num_nodes,
                                           const int32_t* tokens, const int32_t* positions, const int32_t* parent,
                                           const int32_t* subtree_end, float* logits) {
  return forge::guarded("forge_model_forward", [&] {
    Dims d;
    forge::model::TreeBatch t;
    if (forge_status s =
            forge::model::check_call(config, params, num_nodes, tokens, positions, parent, subtree_end, d, t);
        s != FORGE_OK)
      return s;
    if (!logits) return forge::model::null_arg("logits");
    const forge::model::Weights w(d, params);
    forge::model::Activations acts(d, num_nodes, false);
    return forge::model::network_forward(d, w, t, acts, logits);
  });
}

FORGE_API forge_status forge_model_loss_backward(const forge_model_config* config, const float* params,
                                                 int64_t num_nodes, const int32_t* tokens, const int32_t* positions,
                                                 const int32_t* parent, const int32_t* subtree_end,
                                                 int64_t num_terms, const int32_t* term_node,
                                                 const int32_t* term_target, const float* term_old_logprob,
                                                 const float* term_advantage, const forge_cispo_options* options,
                                                 float* grads, float* logprobs_out, forge_cispo_stats* stats) {
  return forge::guarded("forge_model_loss_backward", [&] {
    Dims d;
    forge::model::TreeBatch t;
    if (forge_status s =
            forge::model::check_call(config, params, num_nodes, tokens, positions, parent, subtree_end, d, t);
        s != FORGE_OK)
      return s;
    if (!grads) return forge::model::null_arg("grads");
    const int64_t count = forge::model::num_params(d);
    if (forge::model::overlap(grads, sizeof(float) * count, params, sizeof(float) * count))
      return fail(FORGE_ERR_INVALID_ARGUMENT, "grads: overlaps params (the backward reads params while writing grads)");
    // The terms and options get forge_cispo_loss's own checks up front, before the forward's work. The
    // check only needs a non-null logits pointer for a non-empty batch; the logits do not exist yet.
    const float placeholder = 0.0f;
    const forge::loss::PolicyLossArgs terms{num_nodes,        d.vocab,        &placeholder, num_terms, term_node,
                                            term_target,      term_old_logprob, term_advantage, options, nullptr,
                                            logprobs_out};
    forge::loss::PolicyParams resolved;
    if (forge_status s = forge::loss::validate_policy_args(terms, resolved); s != FORGE_OK) return s;

    const forge::model::Weights w(d, params);
    forge::model::Grads g(d, grads);
    forge::model::Activations acts(d, num_nodes, true);
    std::vector<float> logits(static_cast<size_t>(num_nodes * d.vocab));
    if (forge_status s = forge::model::network_forward(d, w, t, acts, logits.data()); s != FORGE_OK) return s;
    // dlogits replace the logits in place.
    if (forge_status s = forge_cispo_loss(num_nodes, d.vocab, logits.data(), num_terms, term_node, term_target,
                                          term_old_logprob, term_advantage, options, logits.data(), logprobs_out,
                                          stats);
        s != FORGE_OK)
      return s;
    return forge::model::network_backward(d, w, g, t, acts, logits.data());
  });
}

}
