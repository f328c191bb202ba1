/*
 * forge.h — the plain C ABI of libforge_kernels.
 *
 * Every kernel of forge-rl is reachable from here: raw pointers, sizes and status codes, nothing
 * else. The Node addon (forge.node) calls exactly these functions; a PyTorch extension or a ctypes
 * script can bind them the same way.
 *
 * Conventions
 *   - Every symbol is prefixed `forge_`. Enum values are only ever appended to.
 *   - Every function returns a forge_status. On anything but FORGE_OK, forge_last_error() returns a
 *     message for the calling thread that names the argument at fault, and no output buffer has been
 *     partially committed unless the function says otherwise (outputs may hold garbage then).
 *   - No C++ exception crosses this boundary and nothing here aborts the process.
 *   - Tensors are row-major and contiguous. Shapes are given in the order written in brackets.
 *     float32 data; accumulations that need it (sums of exponentials, the loss) run in float64.
 *   - Host functions take host pointers. Device functions (`forge_cuda_*`, section "CUDA backend")
 *     take device pointers and a cudaStream_t passed as `void*`.
 *   - Kernels may use the library's thread pool (forge_set_num_threads). All functions are safe to call
 *     from several threads at once; concurrent calls share the pool.
 */
#ifndef FORGE_FORGE_H
#define FORGE_FORGE_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(FORGE_BUILDING_LIBRARY)
#    define FORGE_API __declspec(dllexport)
#  else
#    define FORGE_API __declspec(dllimport)
#  endif
#else
#  define FORGE_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FORGE_ABI_VERSION 1

/* ------------------------------------------------------------------------------------------------
 * Status, errors, library info
 * ---------------------------------------------------------------------------------------------- */

typedef enum forge_status {
  FORGE_OK = 0,
  FORGE_ERR_INVALID_ARGUMENT = 1, /* a null pointer, a wrong size, a malformed tree */
  FORGE_ERR_OUT_OF_RANGE = 2,     /* an index or token id outside its valid range */
  FORGE_ERR_NON_FINITE = 3,       /* NaN or Inf in an input that must be finite */
  FORGE_ERR_OUT_OF_MEMORY = 4,    /* an allocation failed; outputs untouched */
  FORGE_ERR_UNSUPPORTED = 5,      /* valid request this build or backend cannot serve */
  FORGE_ERR_DEVICE = 6,           /* a CUDA runtime error; the message holds the CUDA text */
  FORGE_ERR_INTERNAL = 7          /* a bug: please report with the message */
} forge_status;

/* A static string naming the status ("FORGE_ERR_OUT_OF_RANGE"); never NULL. */
FORGE_API const char* forge_status_name(forge_status status);

/* The message of the last failed call on this thread ("" when none). Valid until the next call. */
FORGE_API const char* forge_last_error(void);

/* FORGE_ABI_VERSION of the library actually loaded. */
FORGE_API int forge_abi_version(void);

/* Thread pool. n <= 0 restores the default (env FORGE_NUM_THREADS, else the hardware count). */
FORGE_API forge_status forge_set_num_threads(int n);
FORGE_API int forge_get_num_threads(void);

/* CUDA backend. Returns the number of usable GPUs (0 when the build has no CUDA or the machine has no
 * device); never fails. `reason` (may be NULL) receives a static string saying why when it is 0. */
FORGE_API int forge_cuda_device_count(const char** reason);
/* 1 when this build compiled the CUDA sources. */
FORGE_API int forge_cuda_compiled(void);

/* ------------------------------------------------------------------------------------------------
 * Contract 1 — prefix tree batch
 *
 * Input: S samples packed back to back. Sample s owns positions [offsets[s], offsets[s+1]) of the
 * packed arrays (offsets has S+1 entries, offsets[0] = 0, non-decreasing, each sample non-empty).
 * Output: a trie over the token sequences, nodes numbered 0..N-1 in DFS pre-order with children in
 * order of first appearance. A loss term is emitted for each sample s and position t >= 1 with
 * trainable[t] = 1: (node of position t-1, target tokens[t], old_logprobs[t], advantage, s, t).
 * ---------------------------------------------------------------------------------------------- */

typedef struct forge_sample_batch {
  int32_t num_samples;          /* S >= 1 */
  const int64_t* offsets;       /* [S+1] */
  const int32_t* tokens;        /* [T], T = offsets[S]; each in [0, vocab_size) */
  const uint8_t* trainable;     /* [T] 0/1, NULL = nothing trainable; must be 0 at each sample's position 0 */
  const float* old_logprobs;    /* [T] or NULL (0 then); finite where trainable */
  const float* advantages;      /* [T] per token, or NULL to use sample_advantages */
  const float* sample_advantages; /* [S] one per sample, or NULL (0 then) */
  const int32_t* versions;      /* [S] policy version of each sample, or NULL (0 then) */
  int32_t vocab_size;           /* > 0: token ids are checked against it; <= 0: only checked >= 0 */
} forge_sample_batch;

typedef struct forge_prefix_tree forge_prefix_tree; /* opaque */

typedef struct forge_prefix_tree_info {
  int64_t num_nodes;     /* N */
  int64_t num_segments;  /* maximal chains without branching */
  int64_t num_terms;     /* loss terms */
  int64_t input_tokens;  /* T */
  int32_t num_samples;   /* S */
  int32_t max_depth;     /* max position + 1 */
} forge_prefix_tree_info;

/* Builds the tree. On FORGE_OK, *out owns a tree to release with forge_prefix_tree_free. */
FORGE_API forge_status forge_prefix_tree_build(const forge_sample_batch* batch, forge_prefix_tree** out);
FORGE_API void forge_prefix_tree_free(forge_prefix_tree* tree);
FORGE_API forge_status forge_prefix_tree_get_info(const forge_prefix_tree* tree, forge_prefix_tree_info* info);

/* Copies the tree into caller-owned arrays, sized from the info. Any pointer may be NULL to skip it.
 *   nodes:    token[N], parent[N] (-1 at a root), position[N] (depth), subtree_end[N] (exclusive),
 *             segment_of[N] (segment holding the node)
 *   segments: seg_start[G], seg_len[G], seg_parent[G] (segment of seg_start's parent, -1 at a root)
 *   terms:    term_node[J], term_target[J], term_old_logprob[J], term_advantage[J], term_sample[J],
 *             term_position[J], term_version[J]; terms are ordered by sample, then position
 *   node_of:  [T], node of each packed input position */
typedef struct forge_prefix_tree_arrays {
  int32_t* token;
  int32_t* parent;
  int32_t* position;
  int32_t* subtree_end;
  int32_t* segment_of;
  int32_t* seg_start;
  int32_t* seg_len;
  int32_t* seg_parent;
  int32_t* term_node;
  int32_t* term_target;
  float* term_old_logprob;
  float* term_advantage;
  int32_t* term_sample;
  int32_t* term_position;
  int32_t* term_version;
  int32_t* node_of;
} forge_prefix_tree_arrays;

FORGE_API forge_status forge_prefix_tree_export(const forge_prefix_tree* tree, const forge_prefix_tree_arrays* out);

/* Per-node values [N, C] -> per-sample layout [T, C]: out[i] = values[node_of[i]]. */
FORGE_API forge_status forge_gather_to_samples(const float* node_values, int64_t num_nodes, int64_t channels,
                                               const int32_t* node_of, int64_t num_positions, float* out);
/* Per-sample values [T, C] -> per-node [N, C], summed over positions sharing a node (gradients).
 * `out` is overwritten (zeroed first). */
FORGE_API forge_status forge_scatter_from_samples(const float* sample_values, int64_t num_positions,
                                                  int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                  float* out);
/* Per-sample values [T, C] -> per-node [N, C], merged: out[n] = values[p] for the FIRST position p
 * (lowest index) with node_of[p] == n; a node no position maps to gets a zero row. For values that
 * are equal at every position of a node by construction (a packed per-sample K/V cache becoming the
 * tree's K/V), this is the inverse of forge_gather_to_samples; no value is checked for equality.
 * An entry of node_of outside [0, N) is FORGE_ERR_OUT_OF_RANGE naming it; `out` is then untouched. */
FORGE_API forge_status forge_merge_to_tree(const float* values, int64_t num_positions, int64_t channels,
                                           const int32_t* node_of, int64_t num_nodes, float* out);

/* Checks that (parent, subtree_end) describe a forest in DFS pre-order: parent[i] in [-1, i), parent
 * of i is on the root path of i-1, subtree_end[i] = i + 1 + sizes of i's descendants. */
FORGE_API forge_status forge_tree_validate(const int32_t* parent, const int32_t* subtree_end, int64_t num_nodes);

/* ------------------------------------------------------------------------------------------------
 * Contract 2 — tree attention
 *
 * Q [N, Hq, D], K and V [N, Hkv, D], Hq a multiple of Hkv (grouped-query: query head h reads kv head
 * h / (Hq / Hkv)). Query q attends to every key a that is an ancestor-or-self of q, i.e.
 * a <= q < subtree_end[a]. LSE is the natural log of the sum of exp(scale * q.k) over those keys.
 * ---------------------------------------------------------------------------------------------- */

typedef struct forge_attention_shape {
  int64_t num_nodes;   /* N >= 1 */
  int32_t num_heads;   /* Hq >= 1 */
  int32_t num_kv_heads;/* Hkv >= 1, divides Hq */
  int32_t head_dim;    /* D >= 1; the CPU kernels serve D <= 1024 (FORGE_ERR_UNSUPPORTED above) */
  float scale;         /* softmax scale; finite <= 0 or NaN selects 1/sqrt(D); +-Inf is FORGE_ERR_NON_FINITE */
} forge_attention_shape;

/* Forward. Writes O [N, Hq, D] and LSE [N, Hq]. The tree is validated (forge_tree_validate). */
FORGE_API forge_status forge_tree_attention_forward(const forge_attention_shape* shape, const float* q,
                                                    const float* k, const float* v, const int32_t* parent,
                                                    const int32_t* subtree_end, float* o, float* lse);

/* Backward. Takes O and LSE from the forward and dO [N, Hq, D]; writes dQ [N, Hq, D], dK and dV
 * [N, Hkv, D] (overwritten, not accumulated). Every LSE must be finite (FORGE_ERR_NON_FINITE names
 * the first that is not). */
FORGE_API forge_status forge_tree_attention_backward(const forge_attention_shape* shape, const float* q,
                                                     const float* k, const float* v, const int32_t* parent,
                                                     const int32_t* subtree_end, const float* o,
                                                     const float* lse, const float* d_o, float* dq, float* dk,
                                                     float* dv);

/* Merge of partial attention states over disjoint key sets (natural-log LSE; an empty state has
 * lse = -inf and contributes nothing, its o is never read; merging two empty states gives lse = -inf,
 * o = 0). An lse that is NaN or +inf is FORGE_ERR_NON_FINITE, checked before anything is written.
 * Pairwise: states a and b [rows, H, D] / [rows, H] -> out (rows >= 0). `o_out`/`lse_out` may be
 * exactly a's (or b's) buffers; any other overlap is FORGE_ERR_INVALID_ARGUMENT. */
FORGE_API forge_status forge_merge_states(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a,
                                          const float* lse_a, const float* o_b, const float* lse_b, float* o_out,
                                          float* lse_out);
/* N-way: input states [M, H, D] / [M, H]; output row r merges input rows [offsets[r], offsets[r+1])
 * (CSR, offsets [rows+1], offsets[0] = 0, non-decreasing, offsets[rows] = M). An empty range gives the
 * empty state. The outputs must not overlap the inputs. */
FORGE_API forge_status forge_merge_states_csr(int64_t rows, int32_t num_heads, int32_t head_dim,
                                              const int64_t* offsets, int64_t num_states, const float* o_in,
                                              const float* lse_in, float* o_out, float* lse_out);

/* ------------------------------------------------------------------------------------------------
 * Contract 3 — CISPO policy gradient (and PPO-clip through the same kernel)
 *
 * Logits z [N, V] (one row per tree node). Term j: node n_j, target y_j, old log-prob, advantage A_j.
 *   logp_j = z[n,y] - logsumexp(z[n,:]),  r_j = exp(logp_j - old_j)
 *   CISPO: w_j = clip(r_j, 1 - eps_low, 1 + eps_high), stop-gradient;  loss = -(1/Z) sum_j w_j A_j logp_j
 *   PPO:   loss = -(1/Z) sum_j min(r_j A_j, clip(r_j) A_j)
 * Each row is read in one online pass (running max and sum), then once more to write dlogits.
 * ---------------------------------------------------------------------------------------------- */

typedef enum forge_pg_mode {
  FORGE_PG_CISPO = 0,
  FORGE_PG_PPO_CLIP = 1,
  /* Supervised: weight 1 on every term, loss = -(1/Z) sum_j A_j logp_j (A = 1: token-level cross-
   * entropy). old_logprob only feeds the ratio statistics; eps_low / eps_high are ignored (nothing is
   * clipped, so the clip fractions are 0). */
  FORGE_PG_CROSS_ENTROPY = 2
} forge_pg_mode;

typedef struct forge_cispo_options {
  forge_pg_mode mode;
  float eps_low;      /* lower clip bound 1 - eps_low; CISPO (M1) sets none: use a large value */
  float eps_high;     /* upper clip bound 1 + eps_high */
  double normalizer;  /* Z; <= 0 selects the number of terms (token-level mean) */
} forge_cispo_options;

typedef struct forge_cispo_stats {
  double loss;
  double mean_ratio;           /* mean of r over terms */
  double clip_frac_high;       /* fraction of terms with r > 1 + eps_high */
  double clip_frac_low;        /* fraction of terms with r < 1 - eps_low */
  double clip_frac_pos_adv;    /* among terms with A > 0, fraction with r > 1 + eps_high */
  double clip_frac_neg_adv;    /* among terms with A < 0, fraction with r < 1 - eps_low */
  double mean_entropy;         /* mean softmax entropy (nats) over rows carrying terms */
  double mean_logprob;         /* mean logp over terms */
  int64_t num_terms;
  int64_t num_rows;            /* rows carrying at least one term */
} forge_cispo_stats;

/* Loss and gradient. `dlogits` [N, V] may be NULL (loss only) or equal `logits` (in place, the logits
 * are then consumed). Rows that carry no term get zero gradient. `logprobs_out` [J] (may be NULL)
 * receives logp_j. All logits rows are checked finite (FORGE_ERR_NON_FINITE names the first bad row). */
FORGE_API forge_status forge_cispo_loss(int64_t num_rows, int64_t vocab_size, const float* logits,
                                        int64_t num_terms, const int32_t* term_node, const int32_t* term_target,
                                        const float* term_old_logprob, const float* term_advantage,
                                        const forge_cispo_options* options, float* dlogits, float* logprobs_out,
                                        forge_cispo_stats* stats);

/* ------------------------------------------------------------------------------------------------
 * Optimizer — AdamW (decoupled weight decay, bias-corrected moments) over flat float32 buffers
 *
 * One call updates one tensor (or any contiguous run of parameters sharing a weight decay):
 *   g = grad_scale * grads[i]
 *   m = beta1 m + (1 - beta1) g          v = beta2 v + (1 - beta2) g^2
 *   p = p (1 - lr weight_decay) - lr / (1 - beta1^step) * m / (sqrt(v / (1 - beta2^step)) + eps)
 * The options are float32 values; 1 - beta and the bias corrections are computed from them in float64,
 * the per-element arithmetic in float32. Each element is updated on its own, so the result does not
 * depend on the thread count (a run is bitwise reproducible on one machine and build).
 * ---------------------------------------------------------------------------------------------- */

typedef struct forge_adamw_options {
  float lr;           /* learning rate, finite, >= 0 */
  float beta1;        /* first-moment decay, in [0, 1) */
  float beta2;        /* second-moment decay, in [0, 1) */
  float eps;          /* added to sqrt(v_hat), finite, > 0 */
  float weight_decay; /* decoupled: p -= lr * weight_decay * p; finite, >= 0 */
} forge_adamw_options;

/* Sum of squares of grads [n] in float64 (for global-norm clipping across tensors: add the results of
 * several calls, take the square root). Fixed-size blocks summed in order, so the value does not depend
 * on the thread count. FORGE_ERR_NON_FINITE (naming the first bad index) when grads hold NaN or Inf;
 * *out is then 0. `grads` may be NULL when n = 0. */
FORGE_API forge_status forge_grad_sq_norm(int64_t n, const float* grads, double* out);

/* One AdamW step over params, m, v [n] (updated in place) with grads [n] (read only).
 * step is the 1-based step count of this update (it sets the bias corrections); grad_scale (finite,
 * >= 0) multiplies the gradients first, for clipping. The four arrays must not overlap; pointers may be
 * NULL when n = 0. Every argument is checked before anything is written: on any error params, m and v
 * are untouched. FORGE_ERR_NON_FINITE names the first index whose grads[i] * grad_scale is NaN or Inf.
 * m and v are trusted state: they are not checked (NaN there gives NaN parameters, never a crash). */
FORGE_API forge_status forge_adamw_step(int64_t n, float* params, const float* grads, float* m, float* v,
                                        int64_t step, float grad_scale, const forge_adamw_options* options);

/* ------------------------------------------------------------------------------------------------
 * Dense linear algebra
 * ---------------------------------------------------------------------------------------------- */

typedef enum forge_transpose {
  FORGE_NO_TRANS = 0,
  FORGE_TRANS = 1
} forge_transpose;

/* C [m, n] = alpha * op(A) op(B) + beta * C, single precision, multi-threaded.
 * op(A) [m, k] is A stored [m, k] (FORGE_NO_TRANS, lda >= k) or the transpose of A stored [k, m]
 * (FORGE_TRANS, lda >= m); op(B) [k, n] likewise from B stored [k, n] (ldb >= n) or [n, k] (ldb >= k).
 * ldc >= n. beta = 0 does not read C. alpha and beta must be finite; C must not overlap A or B.
 * Each element of C is computed by one thread in a fixed order: the result does not depend on the
 * thread count. */
FORGE_API forge_status forge_gemm(forge_transpose trans_a, forge_transpose trans_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                                  float* c, int64_t ldc);

/* ------------------------------------------------------------------------------------------------
 * Nano policy model
 *
 * A decoder-only transformer on the kernels above, over a prefix-tree batch (contract 1): node i has
 * token tokens[i], RoPE position positions[i] (the depth, for a tree from forge_prefix_tree_build)
 * and attends to its ancestors-or-self (parent / subtree_end, contract 2).
 *   x = tok_embeddings[tokens]
 *   per layer: x += wo . attention(rope(wq . rmsnorm(x)), rope(wk . rmsnorm(x)), wv . rmsnorm(x))
 *              x += w_down . (silu(w_gate . rmsnorm(x)) * (w_up . rmsnorm(x)))
 *   logits = rmsnorm(x) . output   (output = tok_embeddings^T when tied)
 * rmsnorm(x) = x / sqrt(mean(x^2) + norm_eps) * weight. RoPE is the rotate-half (GPT-NeoX / Llama-HF)
 * form: in each head, element i < head_dim/2 pairs with i + head_dim/2 and the pair turns by
 * position * rope_theta^(-2i / head_dim). Attention scale 1/sqrt(head_dim); grouped-query: query head
 * h reads kv head h / (num_heads / num_kv_heads).
 *
 * All parameters live in one flat float32 buffer of forge_model_num_params floats, a concatenation
 * of named tensors (forge_model_param_info), in this order:
 *   tok_embeddings [vocab, dim]
 *   layers.<l>.attn_norm [dim], layers.<l>.attn.wq [dim, heads*head_dim],
 *   layers.<l>.attn.wk [dim, kv_heads*head_dim], layers.<l>.attn.wv [dim, kv_heads*head_dim],
 *   layers.<l>.attn.wo [heads*head_dim, dim], layers.<l>.mlp_norm [dim],
 *   layers.<l>.mlp.w_gate [dim, ffn], layers.<l>.mlp.w_up [dim, ffn], layers.<l>.mlp.w_down [ffn, dim]
 *   norm [dim]
 *   output [dim, vocab]                      (absent when tied_embeddings)
 * Matrices are [in, out] (y = x W), the transpose of a torch.nn.Linear weight. Rank-1 tensors are
 * the RMSNorm gains (conventionally exempt from weight decay).
 * ---------------------------------------------------------------------------------------------- */

typedef struct forge_model_config {
  int32_t vocab_size;      /* >= 1 */
  int32_t dim;             /* >= 1, model width */
  int32_t num_layers;      /* >= 0 */
  int32_t num_heads;       /* >= 1 query heads */
  int32_t num_kv_heads;    /* >= 1, divides num_heads */
  int32_t head_dim;        /* even, 2..1024 */
  int32_t ffn_dim;         /* >= 1, SwiGLU hidden width */
  int32_t tied_embeddings; /* 0: separate output head; 1: logits = rmsnorm(x) tok_embeddings^T */
  float rope_theta;        /* > 0, finite */
  float norm_eps;          /* > 0, finite */
} forge_model_config;

/* Longest tensor name forge_model_param_info writes, with its terminating NUL. */
#define FORGE_MODEL_MAX_NAME 64

/* Validates the config and gives the number of floats in the parameter buffer. Every model function
 * validates its config the same way (FORGE_ERR_INVALID_ARGUMENT naming the field). */
FORGE_API forge_status forge_model_num_params(const forge_model_config* config, int64_t* count);

/* Number of named tensors in the parameter buffer: 9 per layer + 2, + 1 when untied. */
FORGE_API forge_status forge_model_param_count(const forge_model_config* config, int32_t* count);

/* Tensor `index` (0 <= index < forge_model_param_count): its name (NUL-terminated, into `name` of
 * `name_capacity` bytes; FORGE_MODEL_MAX_NAME always suffices), its offset in floats into the
 * parameter buffer, its rank (1 or 2) and shape (shape[1] = 1 for rank 1). Any output may be NULL. */
FORGE_API forge_status forge_model_param_info(const forge_model_config* config, int32_t index, char* name,
                                              int64_t name_capacity, int64_t* offset, int32_t* rank,
                                              int64_t shape[2]);

/* Writes a fresh parameter buffer, deterministic in `seed` (independent of the thread count; each
 * tensor draws from its own stream): every matrix normal with std 0.02, except the residual
 * projections (wo, w_down), whose std is 0.02 / sqrt(2 num_layers) (GPT-2); every norm gain 1. */
FORGE_API forge_status forge_model_init(const forge_model_config* config, uint64_t seed, float* params);

/* Logits [num_nodes, vocab] of every node. tokens [N] in [0, vocab), positions [N] >= 0, and the tree
 * (parent, subtree_end) [N] in DFS pre-order as forge_tree_validate checks. N >= 1. The parameters
 * must be finite (FORGE_ERR_NON_FINITE names the tensor and element of the first that is not). */
FORGE_API forge_status forge_model_forward(const forge_model_config* config, const float* params, int64_t num_nodes,
                                           const int32_t* tokens, const int32_t* positions, const int32_t* parent,
                                           const int32_t* subtree_end, float* logits);

/* One training step's loss and gradient over a prefix-tree batch: the forward above, the policy loss
 * of forge_cispo_loss on its logits (terms as there: term_node [J] in [0, N), term_target [J] in
 * [0, vocab), finite term_old_logprob / term_advantage [J]; `options` selects CISPO, PPO-clip or
 * cross-entropy and Z), then the backward through every layer.
 * grads [num_params] is overwritten with d loss / d params. logprobs_out [J] (may be NULL) receives
 * logp_j; stats (may be NULL) as forge_cispo_loss. Memory: O(N (dim + ffn) num_layers + N vocab). */
FORGE_API forge_status forge_model_loss_backward(const forge_model_config* config, const float* params,
                                                 int64_t num_nodes, const int32_t* tokens, const int32_t* positions,
                                                 const int32_t* parent, const int32_t* subtree_end,
                                                 int64_t num_terms, const int32_t* term_node,
                                                 const int32_t* term_target, const float* term_old_logprob,
                                                 const float* term_advantage, const forge_cispo_options* options,
                                                 float* grads, float* logprobs_out, forge_cispo_stats* stats);

/* ------------------------------------------------------------------------------------------------
 * Inference engine — a KV pool, attention over slot paths, and the incremental forward
 *
 * The KV pool holds, per layer, K and V [capacity, num_kv_heads, head_dim] float32. A slot is one
 * token's keys and values at every layer. The prefix cache (a trie over token ids, kept by the
 * caller) gives each cached token a slot, so sequences sharing a prefix share slots; the context of
 * a token is the path of slots from the root of its sequence to itself. Calls that read a slot while
 * another call writes it race: the caller serialises work on one pool (the engine runs one step at a
 * time).
 * ---------------------------------------------------------------------------------------------- */

typedef struct forge_kv_pool forge_kv_pool; /* opaque */

typedef struct forge_kv_pool_layout {
  int64_t capacity;      /* slots */
  int32_t num_layers;
  int32_t num_kv_heads;
  int32_t head_dim;
  int64_t bytes;         /* memory held by K and V */
} forge_kv_pool_layout;

/* A zero-filled pool for models of `config` (its layer count, kv heads and head dim; the config is
 * validated as forge_model_num_params does). 1 <= capacity < 2^31. FORGE_ERR_OUT_OF_MEMORY when the
 * 2 * capacity * num_layers * num_kv_heads * head_dim floats cannot be allocated. On FORGE_OK, *out
 * owns a pool to release with forge_kv_pool_free. */
FORGE_API forge_status forge_kv_pool_create(const forge_model_config* config, int64_t capacity, forge_kv_pool** out);
/* Releases a pool (NULL is a no-op). */
FORGE_API void forge_kv_pool_free(forge_kv_pool* pool);
FORGE_API forge_status forge_kv_pool_info(const forge_kv_pool* pool, forge_kv_pool_layout* info);

typedef struct forge_path_attention_shape {
  int64_t num_queries;  /* M >= 1 */
  int64_t num_slots;    /* rows of k and v, >= 1, < 2^31 */
  int32_t num_heads;    /* Hq >= 1 */
  int32_t num_kv_heads; /* Hkv >= 1, divides Hq (query head h reads kv head h / (Hq / Hkv)) */
  int32_t head_dim;     /* D in [1, 1024] (FORGE_ERR_UNSUPPORTED above) */
  float scale;          /* finite <= 0 or NaN selects 1/sqrt(D); +-Inf is FORGE_ERR_NON_FINITE */
} forge_path_attention_shape;

/* Attention of each query over a list of slots. q [M, Hq, D]; k and v [num_slots, Hkv, D] (one
 * layer of a pool, or any array). Query i attends to the slots paths[path_offset[i] ..
 * path_offset[i] + path_len[i]) (a slot listed twice counts twice). Queries of one sequence share one
 * path array and take prefixes of it, so memory stays linear in the context.
 *   paths [num_path_entries], every entry in [0, num_slots) (all entries are checked);
 *   path_offset [M] >= 0, path_len [M] >= 0, path_offset[i] + path_len[i] <= num_path_entries.
 * Writes O [M, Hq, D] and LSE [M, Hq] (natural log of sum exp(scale q.k)); a query with path_len 0
 * gets o = 0, lse = -inf (the empty state of forge_merge_states). Each output row is computed in a
 * fixed order over its own path, so it does not depend on the other queries or the thread count.
 * Values are not checked: a NaN or Inf in q, k or v reaches only the rows that read it. */
FORGE_API forge_status forge_path_attention(const forge_path_attention_shape* shape, const float* q, const float* k,
                                            const float* v, const int32_t* paths, int64_t num_path_entries,
                                            const int64_t* path_offset, const int32_t* path_len, float* o,
                                            float* lse);

/* The tokens of one incremental step (several sequences at once: prefill chunks and decode tokens). */
typedef struct forge_extend_batch {
  int64_t num_tokens;          /* M >= 1, < 2^31 */
  const int32_t* tokens;       /* [M] in [0, vocab) */
  const int32_t* positions;    /* [M] >= 0, the RoPE positions */
  const int32_t* slots;        /* [M] distinct, in [0, capacity): where token i writes its K and V */
  const int32_t* paths;        /* [num_path_entries], slots in [0, capacity) */
  int64_t num_path_entries;    /* >= 1 */
  const int64_t* path_offset;  /* [M] token i attends to paths[path_offset[i] .. + path_len[i]) */
  const int32_t* path_len;     /* [M] >= 1; the path ends with the token's own slot:
                                  paths[path_offset[i] + path_len[i] - 1] == slots[i] */
  int64_t num_logit_rows;      /* R >= 0 */
  const int32_t* logit_rows;   /* [R] tokens in [0, M) whose logits are wanted (NULL when R = 0) */
} forge_extend_batch;

/* Runs the M new tokens through the model (forge.h "Nano policy model"), reading the context's K/V
 * from the pool and writing each new token's K/V into its slot at every layer, then computes the
 * logits [R, vocab] of the rows asked for. Per layer, all M tokens' K/V are written before any of
 * them attends, so a path may name slots written in this same call (a prefill chunk reads its own
 * earlier tokens). A token's logits equal forge_model_forward's for the same token on its root path
 * (up to float rounding) when every slot on the path holds K/V computed with the same parameters.
 * The pool must match the config (layers, kv heads, head dim). Every argument is checked before
 * anything is written; params are not checked for finiteness (non-finite parameters give non-finite
 * logits). On FORGE_ERR_OUT_OF_MEMORY the slots of this call may hold garbage; no other slot is
 * touched. */
FORGE_API forge_status forge_model_extend(const forge_model_config* config, const float* params, forge_kv_pool* pool,
                                          const forge_extend_batch* batch, float* logits);

/* ------------------------------------------------------------------------------------------------
 * CUDA backend — device memory and device kernels (the GPU path of contracts 1-3)
 *
 * Every forge_cuda_* kernel takes device pointers and a cudaStream_t passed as `void* stream` (NULL =
 * the legacy default stream) and is asynchronous: it returns once its kernels are enqueued (except
 * where a function says it waits: the merges, and CISPO when asked for stats). Launch and
 * configuration errors come back as FORGE_ERR_DEVICE with the CUDA text; an error inside a kernel
 * surfaces at the next synchronising call. Shapes, dtypes, null pointers and pointer kinds (a host
 * pointer where a device pointer is required) are checked on the host before anything is launched.
 * Index arrays in device memory (subtree_end, node_of, terms) are trusted: validate them on the host
 * first (forge_tree_validate, forge_prefix_tree_build); an out-of-range entry is never dereferenced
 * out of bounds by the kernels (they clamp or skip), but the result is then meaningless.
 * In a build without CUDA (forge_cuda_compiled() == 0) every function here returns
 * FORGE_ERR_UNSUPPORTED, except forge_cuda_free (a no-op).
 * ---------------------------------------------------------------------------------------------- */

typedef enum forge_dtype {
  FORGE_DTYPE_F32 = 0,
  FORGE_DTYPE_F16 = 1,
  FORGE_DTYPE_BF16 = 2
} forge_dtype;

/* Bytes per element of a dtype (0 for an unknown value). */
FORGE_API size_t forge_dtype_size(forge_dtype dtype);

typedef struct forge_cuda_device_props {
  char name[256];
  int32_t major;               /* compute capability */
  int32_t minor;
  int32_t multiprocessors;
  int64_t total_memory;        /* bytes */
  int64_t free_memory;         /* bytes, at the time of the call */
} forge_cuda_device_props;

FORGE_API forge_status forge_cuda_get_device_props(int32_t device, forge_cuda_device_props* props);
/* Selects the device for the calling thread (cudaSetDevice). */
FORGE_API forge_status forge_cuda_set_device(int32_t device);

/* Device memory. forge_cuda_malloc(0) gives *out = NULL. forge_cuda_free(NULL) is a no-op. */
FORGE_API forge_status forge_cuda_malloc(size_t bytes, void** out);
FORGE_API forge_status forge_cuda_free(void* ptr);
/* Copies; synchronous with respect to the host when stream is NULL, else enqueued on the stream. */
FORGE_API forge_status forge_cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream);
FORGE_API forge_status forge_cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream);
FORGE_API forge_status forge_cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, void* stream);
FORGE_API forge_status forge_cuda_memset(void* dst, int value, size_t bytes, void* stream);
/* Waits for the stream (NULL: the whole device) and reports any pending kernel error. */
FORGE_API forge_status forge_cuda_synchronize(void* stream);
/* Element-wise dtype conversion of n elements (e.g. float32 host data uploaded, then to bf16). */
FORGE_API forge_status forge_cuda_convert(int64_t n, forge_dtype src_dtype, const void* src, forge_dtype dst_dtype,
                                          void* dst, void* stream);

/* Contract 1 on the device: per-node values [N, C] -> per-sample [T, C] (out[i] = values[node_of[i]]),
 * any dtype (out in the same dtype); and back, summed over positions sharing a node (gradients):
 * float32 values, float32 out [N, C], overwritten. Deterministic: each node sums its positions in
 * order (node_of is inverted on the device first, no atomics). */
FORGE_API forge_status forge_cuda_gather_to_samples(forge_dtype dtype, const void* node_values, int64_t num_nodes,
                                                    int64_t channels, const int32_t* node_of, int64_t num_positions,
                                                    void* out, void* stream);
FORGE_API forge_status forge_cuda_scatter_from_samples(const float* sample_values, int64_t num_positions,
                                                       int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                       float* out, void* stream);
/* forge_merge_to_tree on the device, any dtype (values and out [N, C] in `dtype`; a bit copy, so the
 * result equals the CPU's on the widened values): out[n] = values[first position of node n], zeros for a
 * node without positions. node_of is trusted (see above): an entry outside [0, N) is skipped, that
 * position merges into no node. num_positions and num_nodes below 2^31 - 1. */
FORGE_API forge_status forge_cuda_merge_to_tree(forge_dtype dtype, const void* values, int64_t num_positions,
                                                int64_t channels, const int32_t* node_of, int64_t num_nodes,
                                                void* out, void* stream);

/* Contract 2 on the device. Q, K, V, O (and dO, dQ, dK, dV) in `dtype` (F16 or BF16 on tensor cores;
 * F32 is served too, on CUDA cores, as a reference path), LSE float32 [N, Hq], natural log. head_dim
 * 64 or 128 (FORGE_ERR_UNSUPPORTED otherwise); Hq a multiple of Hkv; N <= 2^31 - 128. `subtree_end`
 * [N] in device memory: query q attends to key a iff a <= q < subtree_end[a]. Key tiles no query of a
 * tile can see are skipped. Q/K/V/O/dO/dQ/dK/dV must be 16-byte aligned, LSE and subtree_end 4-byte
 * aligned (FORGE_ERR_INVALID_ARGUMENT otherwise). Values are not checked on the device: a NaN input or
 * a non-finite LSE gives NaN outputs. The forward allocates a small per-tile temporary on the stream;
 * dQ of the backward is accumulated with float32 atomics (not bitwise reproducible; O, dK, dV are). */
FORGE_API forge_status forge_cuda_tree_attention_forward(const forge_attention_shape* shape, forge_dtype dtype,
                                                         const void* q, const void* k, const void* v,
                                                         const int32_t* subtree_end, void* o, float* lse,
                                                         void* stream);
/* Backward: dQ [N, Hq, D], dK and dV [N, Hkv, D] in `dtype`, overwritten. Temporary float32
 * accumulators are allocated on the stream (cudaMallocAsync) and freed before it returns. */
FORGE_API forge_status forge_cuda_tree_attention_backward(const forge_attention_shape* shape, forge_dtype dtype,
                                                          const void* q, const void* k, const void* v,
                                                          const int32_t* subtree_end, const void* o,
                                                          const float* lse, const void* d_o, void* dq, void* dk,
                                                          void* dv, void* stream);
/* Merge of attention states on the device, float32 o [rows, H, D] and lse [rows, H], same semantics
 * as forge_merge_states / forge_merge_states_csr (offsets [rows + 1] in device memory). Both wait for
 * the stream, to report the first NaN / +inf lse (or, for CSR, the first bad offset). */
FORGE_API forge_status forge_cuda_merge_states(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a,
                                               const float* lse_a, const float* o_b, const float* lse_b,
                                               float* o_out, float* lse_out, void* stream);
FORGE_API forge_status forge_cuda_merge_states_csr(int64_t rows, int32_t num_heads, int32_t head_dim,
                                                   const int64_t* offsets, int64_t num_states, const float* o_in,
                                                   const float* lse_in, float* o_out, float* lse_out,
                                                   void* stream);

/* Contract 3 on the device: fused CISPO / PPO-clip / cross-entropy. logits [N, V] in F32 or BF16
 * (`dtype`), read in one online pass per row with float32 math (float64 for the loss sum); dlogits in
 * the logits dtype, may be NULL or equal logits (in place); terms in device memory; logprobs_out [J]
 * float32 in device memory (may be NULL). No [N, V] float32 temporary is allocated. `stats` is a host
 * pointer (may be NULL): when given, the call waits for the stream and fills it exactly as
 * forge_cispo_loss does; the non-finite check of logits rows is then reported as FORGE_ERR_NON_FINITE. */
FORGE_API forge_status forge_cuda_cispo_loss(forge_dtype dtype, int64_t num_rows, int64_t vocab_size,
                                             const void* logits, int64_t num_terms, const int32_t* term_node,
                                             const int32_t* term_target, const float* term_old_logprob,
                                             const float* term_advantage, const forge_cispo_options* options,
                                             void* dlogits, float* logprobs_out, forge_cispo_stats* stats,
                                             void* stream);

#ifdef __cplusplus
}
#endif

#endif /* FORGE_FORGE_H */
