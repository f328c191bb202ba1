// forge_model_extend: the nano policy's incremental forward over a KV pool (forge.h, "Inference
// engine"). The same blocks as the training forward (model/layer.hpp) with the attention step swapped:
// each new token's K/V go to its slot, and it attends over its slot path with forge_path_attention
// instead of over a tree batch. Only the rows the caller asks for go through the output head.
#include <forge/forge.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "engine/kv_pool.hpp"
#include "linalg/gemm.hpp"
#include "model/config.hpp"
#include "model/embedding.hpp"
#include "model/layer.hpp"
#include "model/rmsnorm.hpp"
#include "model/rope.hpp"

namespace forge::engine {
namespace {

using model::Dims;
using linalg::matmul_nn;
using linalg::matmul_nt;

std::string str(int64_t x) { return std::to_string(x); }

forge_status null_arg(const char* name) { return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer"); }

forge_status check(const Dims& d, const float* params, const forge_kv_pool* pool, const forge_extend_batch* b,
                   const float* logits) {
  if (!params) return null_arg("params");
  if (!pool) return null_arg("pool");
  if (pool->num_layers != d.layers || pool->num_kv_heads != d.kv_heads || pool->head_dim != d.head_dim)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "pool: built for " + str(pool->num_layers) + " layers x " + str(pool->num_kv_heads) + " kv heads x " +
                    str(pool->head_dim) + " head_dim, the config has " + str(d.layers) + " x " + str(d.kv_heads) +
                    " x " + str(d.head_dim));
  if (!b) return null_arg("batch");
  const int64_t m = b->num_tokens, cap = pool->capacity;
  if (m < 1 || m > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "batch.num_tokens: expected an integer in [1, 2^31), got " + str(m));
  if (!b->tokens) return null_arg("batch.tokens");
  if (!b->positions) return null_arg("batch.positions");
  if (!b->slots) return null_arg("batch.slots");
  if (!b->paths) return null_arg("batch.paths");
  if (!b->path_offset) return null_arg("batch.path_offset");
  if (!b->path_len) return null_arg("batch.path_len");
  const int64_t entries = b->num_path_entries;
  if (entries < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "batch.num_path_entries: expected >= 1, got " + str(entries));
  for (int64_t e = 0; e < entries; ++e)
    if (b->paths[e] < 0 || b->paths[e] >= cap)
      return fail(FORGE_ERR_OUT_OF_RANGE,
                  "batch.paths[" + str(e) + "]: slot " + str(b->paths[e]) + " out of range [0, " + str(cap) + ")");
  for (int64_t i = 0; i < m; ++i) {
    const std::string at = "[" + str(i) + "]";
    if (b->tokens[i] < 0 || b->tokens[i] >= d.vocab)
      return fail(FORGE_ERR_OUT_OF_RANGE, "batch.tokens" + at + ": token id " + str(b->tokens[i]) + " out of range [0, " +
                                              str(d.vocab) + ")");
    if (b->positions[i] < 0)
      return fail(FORGE_ERR_OUT_OF_RANGE, "batch.positions" + at + ": expected >= 0, got " + str(b->positions[i]));
    if (b->slots[i] < 0 || b->slots[i] >= cap)
      return fail(FORGE_ERR_OUT_OF_RANGE,
                  "batch.slots" + at + ": slot " + str(b->slots[i]) + " out of range [0, " + str(cap) + ")");
    const int64_t off = b->path_offset[i], len = b->path_len[i];
    if (off < 0 || off >= entries)
      return fail(FORGE_ERR_OUT_OF_RANGE,
                  "batch.path_offset" + at + ": " + str(off) + " out of range [0, " + str(entries) + ")");
    if (len < 1 || len > entries - off)
      return fail(FORGE_ERR_OUT_OF_RANGE, "batch.path_len" + at + ": expected an integer in [1, " + str(entries - off) +
                                              "] (path_offset " + str(off) + "), got " + str(len));
    if (b->paths[off + len - 1] != b->slots[i])
      return fail(FORGE_ERR_INVALID_ARGUMENT, "batch.path_len" + at + ": the path must end with the token's own slot " +
                                                  str(b->slots[i]) + ", it ends with slot " +
                                                  str(b->paths[off + len - 1]));
  }
  // Two tokens writing one slot would race (and one of them would read the other's K/V as its own).
  std::vector<int32_t> sorted(b->slots, b->slots + m);
  std::sort(sorted.begin(), sorted.end());
  if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
    const int64_t first = std::find(b->slots, b->slots + m, *dup) - b->slots;
    const int64_t second = std::find(b->slots + first + 1, b->slots + m, *dup) - b->slots;
    return fail(FORGE_ERR_INVALID_ARGUMENT, "batch.slots[" + str(second) + "]: slot " + str(*dup) +
                                                " is also written by batch.slots[" + str(first) + "]");
  }
  if (b->num_logit_rows < 0 || b->num_logit_rows > m)
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "batch.num_logit_rows: expected an integer in [0, " + str(m) + "], got " + str(b->num_logit_rows));
  if (b->num_logit_rows > 0) {
    if (!b->logit_rows) return null_arg("batch.logit_rows");
    if (!logits) return null_arg("logits");
  }
  for (int64_t r = 0; r < b->num_logit_rows; ++r)
    if (b->logit_rows[r] < 0 || b->logit_rows[r] >= m)
      return fail(FORGE_ERR_OUT_OF_RANGE, "batch.logit_rows[" + str(r) + "]: token " + str(b->logit_rows[r]) +
                                              " out of range [0, " + str(m) + ")");
  return FORGE_OK;
}

// The attention sub-block of layer l: x [m, dim] -> a.x_mid = x + wo . path_attention(...), with the
// new tokens' K/V stored in their slots first.
forge_status attention_step(const Dims& d, const model::LayerWeights& w, const model::RopeTable& rope,
                            forge_kv_pool& pool, int64_t layer, const forge_extend_batch& b, const float* x,
                            model::LayerActs& a) {
  const int64_t m = b.num_tokens, kv_dim = d.kv_dim();
  model::rmsnorm_forward(m, d.dim, d.norm_eps, x, w.attn_norm, a.h_attn.data(), a.inv_rms_attn.data());
  matmul_nn(m, d.q_dim(), d.dim, a.h_attn.data(), w.wq, a.q.data());
  matmul_nn(m, kv_dim, d.dim, a.h_attn.data(), w.wk, a.k.data());
  matmul_nn(m, kv_dim, d.dim, a.h_attn.data(), w.wv, a.v.data());
  model::rope_apply(rope, m, d.heads, a.q.data(), false);
  model::rope_apply(rope, m, d.kv_heads, a.k.data(), false);
  for (int64_t i = 0; i < m; ++i) {
    std::memcpy(pool.k_slot(layer, b.slots[i]), a.k.data() + i * kv_dim, sizeof(float) * kv_dim);
    std::memcpy(pool.v_slot(layer, b.slots[i]), a.v.data() + i * kv_dim, sizeof(float) * kv_dim);
  }
  const forge_path_attention_shape shape{m,
                                         pool.capacity,
                                         static_cast<int32_t>(d.heads),
                                         static_cast<int32_t>(d.kv_heads),
                                         static_cast<int32_t>(d.head_dim),
                                         0.0f};
  if (forge_status s = forge_path_attention(&shape, a.q.data(), pool.k[static_cast<size_t>(layer)].data(),
                                            pool.v[static_cast<size_t>(layer)].data(), b.paths, b.num_path_entries,
                                            b.path_offset, b.path_len, a.attn.data(), a.lse.data());
      s != FORGE_OK)
    return s;
  std::memcpy(a.x_mid.data(), x, sizeof(float) * static_cast<size_t>(m * d.dim));
  matmul_nn(m, d.dim, d.q_dim(), a.attn.data(), w.wo, a.x_mid.data(), true);
  return FORGE_OK;
}

forge_status extend(const forge_model_config* config, const float* params, forge_kv_pool* pool,
                    const forge_extend_batch* batch, float* logits) {
  Dims d;
  if (forge_status s = model::check_config(config, d); s != FORGE_OK) return s;
  if (forge_status s = check(d, params, pool, batch, logits); s != FORGE_OK) return s;
  const forge_extend_batch& b = *batch;
  const int64_t m = b.num_tokens;
  const model::Weights w(d, params);

  model::RopeTable rope;
  model::rope_table(m, b.positions, d.head_dim, d.rope_theta, rope);
  std::vector<float> resid(static_cast<size_t>(2 * m * d.dim));
  float* x[2] = {resid.data(), resid.data() + m * d.dim};
  model::embedding_forward(m, d.dim, b.tokens, w.tok_embeddings, x[0]);
  model::LayerActs a;
  if (d.layers > 0) a.resize(d, m);
  for (int64_t l = 0; l < d.layers; ++l) {
    const model::LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    if (forge_status s = attention_step(d, lw, rope, *pool, l, b, x[l % 2], a); s != FORGE_OK) return s;
    model::mlp_forward(d, lw, m, a, x[(l + 1) % 2]);
  }
  const int64_t rows = b.num_logit_rows;
  if (rows == 0) return FORGE_OK;
  // Only the asked-for rows pay for the final norm and the [dim, vocab] head.
  const float* last = x[d.layers % 2];
  std::vector<float> picked(static_cast<size_t>(rows * d.dim)), h(picked.size()), inv_rms(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(picked.data() + r * d.dim, last + static_cast<int64_t>(b.logit_rows[r]) * d.dim, sizeof(float) * d.dim);
  model::rmsnorm_forward(rows, d.dim, d.norm_eps, picked.data(), w.norm, h.data(), inv_rms.data());
  if (d.tied)
    matmul_nt(rows, d.vocab, d.dim, h.data(), w.tok_embeddings, logits);
  else
    matmul_nn(rows, d.vocab, d.dim, h.data(), w.output, logits);
  return FORGE_OK;
}

}  // namespace
}  // namespace forge::engine

extern "C" FORGE_API forge_status forge_model_extend(const forge_model_config* config, const float* params,
                                                     forge_kv_pool* pool, const forge_extend_batch* batch,
                                                     float* logits) {
  return forge::guarded("forge_model_extend",
                        [&] { return forge::engine::extend(config, params, pool, batch, logits); });
}
