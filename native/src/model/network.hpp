// The whole nano policy over a tree batch: embedding, blocks, final norm, output head; forward to
// logits and backward from dlogits into a full gradient buffer.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer.hpp"
#include "model/rope.hpp"

namespace forge::model {

// Everything the forward computes that the backward reads. With keep = false (inference) the blocks
// share one LayerActs and two residual buffers, so memory does not grow with the layer count.
struct Activations {
  int64_t n = 0;
  bool keep = false;
  RopeTable rope;
  std::vector<float> resid;       // residual rows: [L + 1, n, dim] when kept, else [2, n, dim]
  std::vector<LayerActs> layers;  // L when kept, else 1
  std::vector<float> h_final, inv_rms_final;  // rmsnorm of the last residual [n, dim], [n]

  Activations(const Dims& d, int64_t n, bool keep);
  // Input rows of block l (l = L: the final residual).
  float* x(int64_t l) { return resid.data() + (keep ? l : l % 2) * n * dim_; }
  LayerActs& acts(int64_t l) { return layers[keep ? static_cast<size_t>(l) : 0]; }

 private:
  int64_t dim_ = 0;
};

// logits [n, vocab]. Fails only if an attention call does (its message set).
forge_status network_forward(const Dims& d, const Weights& w, const TreeBatch& t, Activations& acts, float* logits);

// From dlogits [n, vocab] (read only) through every layer into grads (every tensor overwritten).
// Needs activations from a forward with keep = true; consumes them.
forge_status network_backward(const Dims& d, const Weights& w, Grads& g, const TreeBatch& t, Activations& acts,
                              const float* dlogits);

}  // namespace forge::model
