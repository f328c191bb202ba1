// One transformer block of the nano policy, as two residual sub-blocks (attention, MLP), forward and
// backward, over the nodes of a prefix tree. Each sub-block reads its input rows and writes the next
// residual rows; what the backward needs is kept in LayerActs.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/rope.hpp"

namespace forge::model {

// The batch: n nodes in DFS pre-order, each with a token, a RoPE position and its place in the tree.
struct TreeBatch {
  int64_t n = 0;
  const int32_t* tokens = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* parent = nullptr;
  const int32_t* subtree_end = nullptr;
};

// Activations of one block that its backward reads (all row-major over the n nodes).
struct LayerActs {
  std::vector<float> h_attn, inv_rms_attn;  // rmsnorm(x) [n, dim], 1/rms [n]
  std::vector<float> q, k, v;               // [n, q_dim], [n, kv_dim], [n, kv_dim]; q, k after RoPE
  std::vector<float> attn, lse;             // attention output [n, q_dim], its LSE [n, heads]
  std::vector<float> x_mid;                 // residual after the attention sub-block [n, dim]
  std::vector<float> h_mlp, inv_rms_mlp;    // rmsnorm(x_mid) [n, dim], [n]
  std::vector<float> gate, up, act;         // [n, ffn]

  void resize(const Dims& d, int64_t n);
};

// Scratch of the backward, one set shared by all blocks.
struct LayerScratch {
  std::vector<float> dh;                // [n, dim]
  std::vector<float> d_attn, dq;        // [n, q_dim]
  std::vector<float> dk, dv;            // [n, kv_dim]
  std::vector<float> d_act;             // [n, ffn]

  void resize(const Dims& d, int64_t n);
};

// The attention sub-block in three steps, so an inference path with a KV cache can run the first and
// last on its new tokens only and put its own attention (cached keys + new keys, merged with
// forge_merge_states) in between:
//   attention_qkv:    a.h_attn = rmsnorm(x), a.q / a.k / a.v = projections, q and k rotated (RoPE)
//   (attention:       a.attn, a.lse from a.q, a.k, a.v)
//   attention_output: a.x_mid = x + a.attn . wo
void attention_qkv(const Dims& d, const LayerWeights& w, const RopeTable& rope, int64_t n, const float* x,
                   LayerActs& a);
void attention_output(const Dims& d, const LayerWeights& w, int64_t n, const float* x, LayerActs& a);
// All three with tree attention over the batch. Fails only if the attention kernel does.
forge_status attention_forward(const Dims& d, const LayerWeights& w, const RopeTable& rope, const TreeBatch& t,
                               const float* x, LayerActs& a);
// a.x_mid -> x_out [n, dim] = x_mid + w_down . swiglu(...).
void mlp_forward(const Dims& d, const LayerWeights& w, int64_t n, LayerActs& a, float* x_out);

// dx [n, dim] holds d loss / d x_out on entry and d loss / d x_mid on return; the MLP's gradients are
// written (overwritten) into g. Consumes a.gate and a.up (they hold the gate gradients afterwards).
void mlp_backward(const Dims& d, const LayerWeights& w, LayerGrads& g, int64_t n, LayerActs& a, float* dx,
                  LayerScratch& s);
// dx holds d loss / d x_mid on entry and d loss / d x on return (x: the block's input rows).
forge_status attention_backward(const Dims& d, const LayerWeights& w, LayerGrads& g, const RopeTable& rope,
                                const TreeBatch& t, const float* x, LayerActs& a, float* dx, LayerScratch& s);

}  // namespace forge::model
