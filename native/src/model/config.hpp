// The nano policy's configuration and its parameter layout: the checked sizes (Dims), the named
// tensors of the flat parameter buffer in their fixed order (forge.h, "Nano policy model"), and typed
// views of a buffer (weights when const, gradients when not) so no code computes an offset twice.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <string>
#include <vector>

namespace forge::model {

// A validated forge_model_config, widened to int64 for index arithmetic.
struct Dims {
  int64_t vocab = 0, dim = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, ffn = 0;
  bool tied = false;
  float rope_theta = 0, norm_eps = 0;

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
};

// Checks every field (FORGE_ERR_INVALID_ARGUMENT naming it) and that the buffer size fits.
forge_status check_config(const forge_model_config* config, Dims& dims);

// One named tensor of the parameter buffer.
struct TensorInfo {
  std::string name;
  int64_t offset = 0;  // in floats
  int rank = 1;
  int64_t shape[2] = {1, 1};
  int64_t size() const { return shape[0] * shape[1]; }
};

// The tensors in buffer order; their sizes add up to num_params(dims).
std::vector<TensorInfo> param_layout(const Dims& dims);
int64_t num_params(const Dims& dims);

// Pointers into a parameter (T = const float) or gradient (T = float) buffer.
template <class T>
struct LayerTensors {
  T* attn_norm;  // [dim]
  T* wq;         // [dim, heads * head_dim]
  T* wk;         // [dim, kv_heads * head_dim]
  T* wv;         // [dim, kv_heads * head_dim]
  T* wo;         // [heads * head_dim, dim]
  T* mlp_norm;   // [dim]
  T* w_gate;     // [dim, ffn]
  T* w_up;       // [dim, ffn]
  T* w_down;     // [ffn, dim]
};

template <class T>
struct ModelTensors {
  T* tok_embeddings;  // [vocab, dim]
  std::vector<LayerTensors<T>> layers;
  T* norm;    // [dim]
  T* output;  // [dim, vocab]; nullptr when tied (the head is tok_embeddings^T)

  ModelTensors(const Dims& d, T* buffer) {
    int64_t at = 0;
    auto take = [&](int64_t count) {
      T* p = buffer + at;
      at += count;
      return p;
    };
    tok_embeddings = take(d.vocab * d.dim);
    layers.resize(static_cast<size_t>(d.layers));
    for (LayerTensors<T>& l : layers) {
      l.attn_norm = take(d.dim);
      l.wq = take(d.dim * d.q_dim());
      l.wk = take(d.dim * d.kv_dim());
      l.wv = take(d.dim * d.kv_dim());
      l.wo = take(d.q_dim() * d.dim);
      l.mlp_norm = take(d.dim);
      l.w_gate = take(d.dim * d.ffn);
      l.w_up = take(d.dim * d.ffn);
      l.w_down = take(d.ffn * d.dim);
    }
    norm = take(d.dim);
    output = d.tied ? nullptr : take(d.dim * d.vocab);
  }
};

using Weights = ModelTensors<const float>;
using Grads = ModelTensors<float>;
using LayerWeights = LayerTensors<const float>;
using LayerGrads = LayerTensors<float>;

}  // namespace forge::model
