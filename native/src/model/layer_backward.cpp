// Backward of one transformer block (layer.hpp), MLP sub-block first. With y = x W (W [in, out]):
// dW = x^T dy (matmul_tn) and dx = dy W^T (matmul_nt); residual connections pass dx through, so each
// sub-block adds its input gradient onto the running dx.
#include <algorithm>

#include "linalg/gemm.hpp"
#include "model/layer.hpp"
#include "model/rmsnorm.hpp"
#include "model/swiglu.hpp"

namespace forge::model {

using linalg::matmul_nt;
using linalg::matmul_tn;

void LayerScratch::resize(const Dims& d, int64_t n) {
  const auto rows = [n](int64_t width) { return static_cast<size_t>(n * width); };
  dh.resize(rows(d.dim));
  d_attn.resize(rows(d.q_dim()));
  dq.resize(rows(d.q_dim()));
  dk.resize(rows(d.kv_dim()));
  dv.resize(rows(d.kv_dim()));
  d_act.resize(rows(d.ffn));
}

void mlp_backward(const Dims& d, const LayerWeights& w, LayerGrads& g, int64_t n, LayerActs& a, float* dx,
                  LayerScratch& s) {
  // x_out = x_mid + act . w_down
  matmul_nt(n, d.ffn, d.dim, dx, w.w_down, s.d_act.data());
  matmul_tn(d.ffn, d.dim, n, a.act.data(), dx, g.w_down);
  // act = silu(gate) * up; the gate gradients overwrite gate / up, which are not read again.
  swiglu_backward(n * d.ffn, a.gate.data(), a.up.data(), s.d_act.data(), a.gate.data(), a.up.data());
  const float* d_gate = a.gate.data();
  const float* d_up = a.up.data();
  matmul_tn(d.dim, d.ffn, n, a.h_mlp.data(), d_gate, g.w_gate);
  matmul_tn(d.dim, d.ffn, n, a.h_mlp.data(), d_up, g.w_up);
  matmul_nt(n, d.dim, d.ffn, d_gate, w.w_gate, s.dh.data());
  matmul_nt(n, d.dim, d.ffn, d_up, w.w_up, s.dh.data(), true);
  // h_mlp = rmsnorm(x_mid)
  rmsnorm_backward(n, d.dim, a.x_mid.data(), w.mlp_norm, a.inv_rms_mlp.data(), s.dh.data(), dx, g.mlp_norm);
}

forge_status attention_backward(const Dims& d, const LayerWeights& w, LayerGrads& g, const RopeTable& rope,
                                const TreeBatch& t, const float* x, LayerActs& a, float* dx, LayerScratch& s) {
  const int64_t n = t.n;
  // x_mid = x + attn . wo
  matmul_nt(n, d.q_dim(), d.dim, dx, w.wo, s.d_attn.data());
  matmul_tn(d.q_dim(), d.dim, n, a.attn.data(), dx, g.wo);
  const forge_attention_shape shape{n, static_cast<int32_t>(d.heads), static_cast<int32_t>(d.kv_heads),
                                    static_cast<int32_t>(d.head_dim), 0.0f};
  if (forge_status st = forge_tree_attention_backward(&shape, a.q.data(), a.k.data(), a.v.data(), t.parent,
                                                      t.subtree_end, a.attn.data(), a.lse.data(), s.d_attn.data(),
                                                      s.dq.data(), s.dk.data(), s.dv.data());
      st != FORGE_OK)
    return st;
  // q and k were rotated after the projection: turn their gradients back.
  rope_apply(rope, n, d.heads, s.dq.data(), true);
  rope_apply(rope, n, d.kv_heads, s.dk.data(), true);
  matmul_tn(d.dim, d.q_dim(), n, a.h_attn.data(), s.dq.data(), g.wq);
  matmul_tn(d.dim, d.kv_dim(), n, a.h_attn.data(), s.dk.data(), g.wk);
  matmul_tn(d.dim, d.kv_dim(), n, a.h_attn.data(), s.dv.data(), g.wv);
  matmul_nt(n, d.dim, d.q_dim(), s.dq.data(), w.wq, s.dh.data());
  matmul_nt(n, d.dim, d.kv_dim(), s.dk.data(), w.wk, s.dh.data(), true);
  matmul_nt(n, d.dim, d.kv_dim(), s.dv.data(), w.wv, s.dh.data(), true);
  // h_attn = rmsnorm(x)
  rmsnorm_backward(n, d.dim, x, w.attn_norm, a.inv_rms_attn.data(), s.dh.data(), dx, g.attn_norm);
  return FORGE_OK;
}

}  // namespace forge::model
