// Config validation and the parameter layout of the nano policy (order documented in forge.h; the
// pointer views in config.hpp walk the same order).
#include "model/config.hpp"

#include <cmath>
#include <cstdio>
#include <string>

#include "common/error.hpp"

namespace forge::model {

namespace {

constexpr int64_t kMaxSize = int64_t{1} << 24;     // any single size; keeps every product below 2^62
constexpr int64_t kMaxParams = int64_t{1} << 40;   // 4 TiB of float32: beyond any host
constexpr int64_t kMaxHeadDim = 1024;              // the tree-attention kernels' limit

forge_status bad(const char* field, const std::string& expected, double got) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.9g", got);
  return fail(FORGE_ERR_INVALID_ARGUMENT, std::string("config.") + field + ": expected " + expected + ", got " + buf);
}

}  // namespace

forge_status check_config(const forge_model_config* c, Dims& d) {
  if (!c) return fail(FORGE_ERR_INVALID_ARGUMENT, "config: null pointer");
  const std::string range = "an integer in [1, " + std::to_string(kMaxSize) + "]";
  auto size_ok = [](int64_t x) { return x >= 1 && x <= kMaxSize; };
  if (!size_ok(c->vocab_size)) return bad("vocab_size", range, c->vocab_size);
  if (!size_ok(c->dim)) return bad("dim", range, c->dim);
  if (c->num_layers < 0 || c->num_layers > 4096) return bad("num_layers", "an integer in [0, 4096]", c->num_layers);
  if (c->num_heads < 1 || c->num_heads > 4096) return bad("num_heads", "an integer in [1, 4096]", c->num_heads);
  if (c->num_kv_heads < 1 || c->num_heads % c->num_kv_heads != 0)
    return bad("num_kv_heads", "a divisor of num_heads (" + std::to_string(c->num_heads) + ")", c->num_kv_heads);
  if (c->head_dim < 2 || c->head_dim > kMaxHeadDim || c->head_dim % 2 != 0)
    return bad("head_dim", "an even integer in [2, " + std::to_string(kMaxHeadDim) + "] (RoPE rotates pairs)",
               c->head_dim);
  if (!size_ok(c->ffn_dim)) return bad("ffn_dim", range, c->ffn_dim);
  if (c->tied_embeddings != 0 && c->tied_embeddings != 1) return bad("tied_embeddings", "0 or 1", c->tied_embeddings);
  if (!std::isfinite(c->rope_theta) || !(c->rope_theta > 0))
    return bad("rope_theta", "a finite number > 0", c->rope_theta);
  if (!std::isfinite(c->norm_eps) || !(c->norm_eps > 0)) return bad("norm_eps", "a finite number > 0", c->norm_eps);
  d.vocab = c->vocab_size;
  d.dim = c->dim;
  d.layers = c->num_layers;
  d.heads = c->num_heads;
  d.kv_heads = c->num_kv_heads;
  d.head_dim = c->head_dim;
  d.ffn = c->ffn_dim;
  d.tied = c->tied_embeddings == 1;
  d.rope_theta = c->rope_theta;
  d.norm_eps = c->norm_eps;
  // q_dim <= 2^22; every tensor is below 2^47 floats, so summing in double is exact enough to compare.
  const double per_layer = 2.0 * d.dim + 2.0 * d.dim * d.q_dim() + 2.0 * d.dim * d.kv_dim() + 3.0 * d.dim * d.ffn;
  const double total = d.vocab * static_cast<double>(d.dim) * (d.tied ? 1 : 2) + d.dim + d.layers * per_layer;
  if (total > static_cast<double>(kMaxParams))
    return fail(FORGE_ERR_INVALID_ARGUMENT,
                "config: " + std::to_string(total) + " parameters exceed the limit of 2^40");
  return FORGE_OK;
}

std::vector<TensorInfo> param_layout(const Dims& d) {
  std::vector<TensorInfo> out;
  int64_t at = 0;
  auto add = [&](std::string name, int64_t rows, int64_t cols, int rank) {
    TensorInfo t;
    t.name = std::move(name);
    t.offset = at;
    t.rank = rank;
    t.shape[0] = rows;
    t.shape[1] = cols;
    at += rows * cols;
    out.push_back(std::move(t));
  };
  add("tok_embeddings", d.vocab, d.dim, 2);
  for (int64_t l = 0; l < d.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    add(p + "attn_norm", d.dim, 1, 1);
    add(p + "attn.wq", d.dim, d.q_dim(), 2);
    add(p + "attn.wk", d.dim, d.kv_dim(), 2);
    add(p + "attn.wv", d.dim, d.kv_dim(), 2);
    add(p + "attn.wo", d.q_dim(), d.dim, 2);
    add(p + "mlp_norm", d.dim, 1, 1);
    add(p + "mlp.w_gate", d.dim, d.ffn, 2);
    add(p + "mlp.w_up", d.dim, d.ffn, 2);
    add(p + "mlp.w_down", d.ffn, d.dim, 2);
  }
  add("norm", d.dim, 1, 1);
  if (!d.tied) add("output", d.dim, d.vocab, 2);
  return out;
}

int64_t num_params(const Dims& d) {
  const int64_t per_layer = 2 * d.dim + d.dim * d.q_dim() + 2 * d.dim * d.kv_dim() + d.q_dim() * d.dim +
                            3 * d.dim * d.ffn;
  return d.vocab * d.dim + d.layers * per_layer + d.dim + (d.tied ? 0 : d.dim * d.vocab);
}

}  // namespace forge::model
