// Forward of one transformer block (layer.hpp): the attention sub-block, then the MLP sub-block.
#include <algorithm>
#include <cstring>

#include "linalg/gemm.hpp"
#include "model/layer.hpp"
#include "model/rmsnorm.hpp"
#include "model/swiglu.hpp"

namespace forge::model {

using linalg::matmul_nn;

void LayerActs::resize(const Dims& d, int64_t n) {
  const auto rows = [n](int64_t width) { return static_cast<size_t>(n * width); };
  h_attn.resize(rows(d.dim));
  inv_rms_attn.resize(rows(1));
  q.resize(rows(d.q_dim()));
  k.resize(rows(d.kv_dim()));
  v.resize(rows(d.kv_dim()));
  attn.resize(rows(d.q_dim()));
  lse.resize(rows(d.heads));
  x_mid.resize(rows(d.dim));
  h_mlp.resize(rows(d.dim));
  inv_rms_mlp.resize(rows(1));
  gate.resize(rows(d.ffn));
  up.resize(rows(d.ffn));
  act.resize(rows(d.ffn));
}

void attention_qkv(const Dims& d, const LayerWeights& w, const RopeTable& rope, int64_t n, const float* x,
                   LayerActs& a) {
  rmsnorm_forward(n, d.dim, d.norm_eps, x, w.attn_norm, a.h_attn.data(), a.inv_rms_attn.data());
  matmul_nn(n, d.q_dim(), d.dim, a.h_attn.data(), w.wq, a.q.data());
  matmul_nn(n, d.kv_dim(), d.dim, a.h_attn.data(), w.wk, a.k.data());
  matmul_nn(n, d.kv_dim(), d.dim, a.h_attn.data(), w.wv, a.v.data());
  rope_apply(rope, n, d.heads, a.q.data(), false);
  rope_apply(rope, n, d.kv_heads, a.k.data(), false);
}

void attention_output(const Dims& d, const LayerWeights& w, int64_t n, const float* x, LayerActs& a) {
  // x_mid = x + attn . wo: the residual is copied in and the projection added on top.
  std::memcpy(a.x_mid.data(), x, sizeof(float) * static_cast<size_t>(n * d.dim));
  matmul_nn(n, d.dim, d.q_dim(), a.attn.data(), w.wo, a.x_mid.data(), true);
}

forge_status attention_forward(const Dims& d, const LayerWeights& w, const RopeTable& rope, const TreeBatch& t,
                               const float* x, LayerActs& a) {
  attention_qkv(d, w, rope, t.n, x, a);
  const forge_attention_shape shape{t.n, static_cast<int32_t>(d.heads), static_cast<int32_t>(d.kv_heads),
                                    static_cast<int32_t>(d.head_dim), 0.0f};
  if (forge_status s = forge_tree_attention_forward(&shape, a.q.data(), a.k.data(), a.v.data(), t.parent,
                                                    t.subtree_end, a.attn.data(), a.lse.data());
      s != FORGE_OK)
    return s;
  attention_output(d, w, t.n, x, a);
  return FORGE_OK;
}

void mlp_forward(const Dims& d, const LayerWeights& w, int64_t n, LayerActs& a, float* x_out) {
  rmsnorm_forward(n, d.dim, d.norm_eps, a.x_mid.data(), w.mlp_norm, a.h_mlp.data(), a.inv_rms_mlp.data());
  matmul_nn(n, d.ffn, d.dim, a.h_mlp.data(), w.w_gate, a.gate.data());
  matmul_nn(n, d.ffn, d.dim, a.h_mlp.data(), w.w_up, a.up.data());
  swiglu_forward(n * d.ffn, a.gate.data(), a.up.data(), a.act.data());
  if (x_out != a.x_mid.data()) std::memcpy(x_out, a.x_mid.data(), sizeof(float) * static_cast<size_t>(n * d.dim));
  matmul_nn(n, d.dim, d.ffn, a.act.data(), w.w_down, x_out, true);
}

}  // namespace forge::model
