// Forward and backward of the whole model (network.hpp). The output head is x W_out [dim, vocab], or
// x E^T with the embedding table E [vocab, dim] when tied; a tied table's gradient is the head's part
// plus the embedding scatter.
#include "model/network.hpp"

#include <algorithm>
#include <cstring>

#include "linalg/gemm.hpp"
#include "model/embedding.hpp"
#include "model/rmsnorm.hpp"

namespace forge::model {

using linalg::matmul_nn;
using linalg::matmul_nt;
using linalg::matmul_tn;

Activations::Activations(const Dims& d, int64_t rows, bool keep_all) : n(rows), keep(keep_all), dim_(d.dim) {
  const int64_t blocks = keep ? d.layers : std::min<int64_t>(d.layers, 1);
  resid.resize(static_cast<size_t>((keep ? d.layers + 1 : 2) * n * d.dim));
  layers.resize(static_cast<size_t>(blocks));
  for (LayerActs& a : layers) a.resize(d, n);
  h_final.resize(static_cast<size_t>(n * d.dim));
  inv_rms_final.resize(static_cast<size_t>(n));
}

forge_status network_forward(const Dims& d, const Weights& w, const TreeBatch& t, Activations& acts, float* logits) {
  const int64_t n = t.n;
  rope_table(n, t.positions, d.head_dim, d.rope_theta, acts.rope);
  embedding_forward(n, d.dim, t.tokens, w.tok_embeddings, acts.x(0));
  for (int64_t l = 0; l < d.layers; ++l) {
    LayerActs& a = acts.acts(l);
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    if (forge_status s = attention_forward(d, lw, acts.rope, t, acts.x(l), a); s != FORGE_OK) return s;
    mlp_forward(d, lw, n, a, acts.x(l + 1));
  }
  rmsnorm_forward(n, d.dim, d.norm_eps, acts.x(d.layers), w.norm, acts.h_final.data(), acts.inv_rms_final.data());
  if (d.tied)
    matmul_nt(n, d.vocab, d.dim, acts.h_final.data(), w.tok_embeddings, logits);
  else
    matmul_nn(n, d.vocab, d.dim, acts.h_final.data(), w.output, logits);
  return FORGE_OK;
}

forge_status network_backward(const Dims& d, const Weights& w, Grads& g, const TreeBatch& t, Activations& acts,
                              const float* dlogits) {
  const int64_t n = t.n;
  LayerScratch s;
  s.resize(d, n);
  // Head. dh lands in the scratch's dh; the table's gradient starts as the head's part (tied) or zero.
  float* dh = s.dh.data();
  if (d.tied) {
    matmul_tn(d.vocab, d.dim, n, dlogits, acts.h_final.data(), g.tok_embeddings);
    matmul_nn(n, d.dim, d.vocab, dlogits, w.tok_embeddings, dh);
  } else {
    matmul_tn(d.dim, d.vocab, n, acts.h_final.data(), dlogits, g.output);
    matmul_nt(n, d.dim, d.vocab, dlogits, w.output, dh);
    std::fill(g.tok_embeddings, g.tok_embeddings + d.vocab * d.dim, 0.0f);
  }
  // dx: the gradient of the residual stream, carried down through the blocks.
  std::vector<float> dx(static_cast<size_t>(n * d.dim), 0.0f);
  rmsnorm_backward(n, d.dim, acts.x(d.layers), w.norm, acts.inv_rms_final.data(), dh, dx.data(), g.norm);
  for (int64_t l = d.layers - 1; l >= 0; --l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    LayerGrads& lg = g.layers[static_cast<size_t>(l)];
    LayerActs& a = acts.acts(l);
    mlp_backward(d, lw, lg, n, a, dx.data(), s);
    if (forge_status st = attention_backward(d, lw, lg, acts.rope, t, acts.x(l), a, dx.data(), s); st != FORGE_OK)
      return st;
  }
  embedding_backward(n, d.dim, d.vocab, t.tokens, dx.data(), g.tok_embeddings);
  return FORGE_OK;
}

}  // namespace forge::model
