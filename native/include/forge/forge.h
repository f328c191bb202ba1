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
 *   - Host functions take host pointers. Device functions (later, `forge_cuda_*`) take device pointers
 *     and a cudaStream_t passed as `void*`.
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
  int32_t head_dim;    /* D >= 1 */
  float scale;         /* softmax scale; <= 0 or NaN selects 1/sqrt(D) */
} forge_attention_shape;

/* Forward. Writes O [N, Hq, D] and LSE [N, Hq]. The tree is validated (forge_tree_validate). */
FORGE_API forge_status forge_tree_attention_forward(const forge_attention_shape* shape, const float* q,
                                                    const float* k, const float* v, const int32_t* parent,
                                                    const int32_t* subtree_end, float* o, float* lse);

/* Backward. Takes O and LSE from the forward and dO [N, Hq, D]; writes dQ [N, Hq, D], dK and dV
 * [N, Hkv, D] (overwritten, not accumulated). */
FORGE_API forge_status forge_tree_attention_backward(const forge_attention_shape* shape, const float* q,
                                                     const float* k, const float* v, const int32_t* parent,
                                                     const int32_t* subtree_end, const float* o,
                                                     const float* lse, const float* d_o, float* dq, float* dk,
                                                     float* dv);

/* Merge of partial attention states over disjoint key sets (natural-log LSE; an empty state has
 * lse = -inf and contributes nothing; merging two empty states gives lse = -inf, o = 0).
 * Pairwise: states a and b [rows, H, D] / [rows, H] -> out. `o_out`/`lse_out` may alias a's buffers. */
FORGE_API forge_status forge_merge_states(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a,
                                          const float* lse_a, const float* o_b, const float* lse_b, float* o_out,
                                          float* lse_out);
/* N-way: input states [M, H, D] / [M, H]; output row r merges input rows [offsets[r], offsets[r+1])
 * (CSR, offsets [rows+1], offsets[0] = 0, non-decreasing, offsets[rows] = M). An empty range gives the
 * empty state. */
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
  FORGE_PG_PPO_CLIP = 1
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

#ifdef __cplusplus
}
#endif

#endif /* FORGE_FORGE_H */
