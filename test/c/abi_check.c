/* Binds libforge_kernels through forge.h alone (no N-API, no C++): builds a prefix tree from two
 * samples that share a prefix, runs tree attention on it and checks one output against a direct
 * float64 computation, runs CISPO and checks the loss against the formula, and checks that bad input
 * comes back as a status with a message instead of a crash. Prints "ok" and exits 0 on success. */
#include <forge/forge.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                         \
  do {                                           \
    if (!(cond)) {                               \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);              \
      fprintf(stderr, "\n");                     \
      failures++;                                \
    }                                            \
  } while (0)

static double frand(unsigned* state) {
  *state = *state * 1664525u + 1013904223u;
  return ((*state >> 8) & 0xFFFF) / 65536.0 - 0.5;
}

int main(void) {
  CHECK(forge_abi_version() == FORGE_ABI_VERSION, "abi version %d", forge_abi_version());
  CHECK(strcmp(forge_status_name(FORGE_ERR_OUT_OF_RANGE), "FORGE_ERR_OUT_OF_RANGE") == 0, "status name");

  /* Two samples sharing the prefix [5, 6]: [5 6 7 8] and [5 6 9]. */
  int32_t tokens[] = {5, 6, 7, 8, 5, 6, 9};
  int64_t offsets[] = {0, 4, 7};
  uint8_t trainable[] = {0, 0, 1, 1, 0, 0, 1};
  float old_lp[] = {0, 0, -1.0f, -2.0f, 0, 0, -0.5f};
  float sample_adv[] = {1.0f, -0.5f};
  forge_sample_batch batch;
  memset(&batch, 0, sizeof batch);
  batch.num_samples = 2;
  batch.offsets = offsets;
  batch.tokens = tokens;
  batch.trainable = trainable;
  batch.old_logprobs = old_lp;
  batch.sample_advantages = sample_adv;
  batch.vocab_size = 16;

  forge_prefix_tree* tree = NULL;
  forge_status st = forge_prefix_tree_build(&batch, &tree);
  CHECK(st == FORGE_OK, "build: %s %s", forge_status_name(st), forge_last_error());
  if (st != FORGE_OK) return 1;
  forge_prefix_tree_info info;
  CHECK(forge_prefix_tree_get_info(tree, &info) == FORGE_OK, "info");
  CHECK(info.num_nodes == 5, "nodes %lld", (long long)info.num_nodes);
  CHECK(info.num_terms == 3, "terms %lld", (long long)info.num_terms);
  CHECK(info.num_segments == 3, "segments %lld", (long long)info.num_segments);

  int32_t parent[5], subtree_end[5], token[5], term_node[3], term_target[3];
  float term_old[3], term_adv[3];
  forge_prefix_tree_arrays arrays;
  memset(&arrays, 0, sizeof arrays);
  arrays.parent = parent;
  arrays.subtree_end = subtree_end;
  arrays.token = token;
  arrays.term_node = term_node;
  arrays.term_target = term_target;
  arrays.term_old_logprob = term_old;
  arrays.term_advantage = term_adv;
  CHECK(forge_prefix_tree_export(tree, &arrays) == FORGE_OK, "export");
  /* Pre-order: 5 6 7 8 9 with 9 a child of 6. */
  int32_t want_parent[] = {-1, 0, 1, 2, 1}, want_end[] = {5, 5, 4, 4, 5}, want_token[] = {5, 6, 7, 8, 9};
  for (int i = 0; i < 5; i++) {
    CHECK(parent[i] == want_parent[i], "parent[%d] = %d", i, parent[i]);
    CHECK(subtree_end[i] == want_end[i], "subtree_end[%d] = %d", i, subtree_end[i]);
    CHECK(token[i] == want_token[i], "token[%d] = %d", i, token[i]);
  }
  forge_prefix_tree_free(tree);

  /* Tree attention, 2 query heads sharing 1 kv head, D = 3; check node 4 (path 0, 1, 4). */
  enum { N = 5, HQ = 2, HKV = 1, D = 3 };
  float q[N * HQ * D], k[N * HKV * D], v[N * HKV * D], o[N * HQ * D], lse[N * HQ];
  unsigned seed = 12345;
  for (int i = 0; i < N * HQ * D; i++) q[i] = (float)frand(&seed);
  for (int i = 0; i < N * HKV * D; i++) k[i] = (float)frand(&seed), v[i] = (float)frand(&seed);
  forge_attention_shape shape = {N, HQ, HKV, D, 0.0f};
  st = forge_tree_attention_forward(&shape, q, k, v, parent, subtree_end, o, lse);
  CHECK(st == FORGE_OK, "attention: %s", forge_last_error());
  int path[] = {0, 1, 4};
  for (int h = 0; h < HQ; h++) {
    double s[3], m = -1e300, sum = 0, out[D] = {0};
    for (int j = 0; j < 3; j++) {
      double dot = 0;
      for (int c = 0; c < D; c++) dot += (double)q[(4 * HQ + h) * D + c] * k[path[j] * D + c];
      s[j] = dot / sqrt((double)D);
      if (s[j] > m) m = s[j];
    }
    for (int j = 0; j < 3; j++) sum += exp(s[j] - m);
    for (int j = 0; j < 3; j++)
      for (int c = 0; c < D; c++) out[c] += exp(s[j] - m) / sum * v[path[j] * D + c];
    CHECK(fabs(lse[4 * HQ + h] - (m + log(sum))) < 1e-5, "lse head %d: %f vs %f", h, lse[4 * HQ + h], m + log(sum));
    for (int c = 0; c < D; c++)
      CHECK(fabs(o[(4 * HQ + h) * D + c] - out[c]) < 1e-5, "o[4,%d,%d]", h, c);
  }

  /* CISPO over the three terms with random logits, V = 16, no clipping in range. */
  enum { V = 16 };
  float logits[N * V];
  for (int i = 0; i < N * V; i++) logits[i] = (float)(2 * frand(&seed));
  forge_cispo_options opt = {FORGE_PG_CISPO, 1e9f, 1e9f, 0.0};
  forge_cispo_stats stats;
  float logprobs[3];
  st = forge_cispo_loss(N, V, logits, 3, term_node, term_target, term_old, term_adv, &opt, NULL, logprobs, &stats);
  CHECK(st == FORGE_OK, "cispo: %s", forge_last_error());
  double want = 0;
  for (int j = 0; j < 3; j++) {
    const float* row = logits + term_node[j] * V;
    double m = -1e300, sum = 0;
    for (int c = 0; c < V; c++) m = row[c] > m ? row[c] : m;
    for (int c = 0; c < V; c++) sum += exp(row[c] - m);
    double logp = row[term_target[j]] - m - log(sum);
    double r = exp(logp - term_old[j]);
    want += -r * term_adv[j] * logp / 3.0;
    CHECK(fabs(logprobs[j] - logp) < 1e-5, "logprob %d", j);
  }
  CHECK(fabs(stats.loss - want) < 1e-5 * (1 + fabs(want)), "loss %f vs %f", stats.loss, want);

  /* Bad input: a status and a message naming the argument, never a crash. */
  int32_t bad_target[3] = {0, 99, 0};
  st = forge_cispo_loss(N, V, logits, 3, term_node, bad_target, term_old, term_adv, &opt, NULL, NULL, &stats);
  CHECK(st == FORGE_ERR_OUT_OF_RANGE, "bad target gave %s", forge_status_name(st));
  CHECK(strstr(forge_last_error(), "target") != NULL, "message '%s' names the target", forge_last_error());
  int32_t bad_parent[] = {-1, 0, 7, 2, 1};
  st = forge_tree_attention_forward(&shape, q, k, v, bad_parent, subtree_end, o, lse);
  CHECK(st != FORGE_OK && forge_last_error()[0] != 0, "malformed tree accepted");
  CHECK(forge_prefix_tree_build(NULL, &tree) == FORGE_ERR_INVALID_ARGUMENT, "null batch");

  const char* reason = NULL;
  int devices = forge_cuda_device_count(&reason);
  printf("cuda compiled %d, devices %d (%s)\n", forge_cuda_compiled(), devices, reason ? reason : "");

  /* The CUDA section answers in every build: FORGE_ERR_UNSUPPORTED without CUDA, FORGE_ERR_DEVICE with
   * CUDA but no GPU (naming the reason), a working round trip with a GPU. */
  CHECK(forge_dtype_size(FORGE_DTYPE_F32) == 4 && forge_dtype_size(FORGE_DTYPE_BF16) == 2, "dtype sizes");
  CHECK(forge_cuda_free(NULL) == FORGE_OK, "forge_cuda_free(NULL)");
  void* dev = &failures; /* must come back NULL on failure */
  st = forge_cuda_malloc(sizeof logits, &dev);
  if (devices == 0) {
    forge_status want_st = forge_cuda_compiled() ? FORGE_ERR_DEVICE : FORGE_ERR_UNSUPPORTED;
    CHECK(st == want_st && dev == NULL, "cuda malloc without a GPU gave %s", forge_status_name(st));
    CHECK(strstr(forge_last_error(), "forge_cuda_malloc") != NULL, "message '%s' names the call", forge_last_error());
    st = forge_cuda_cispo_loss(FORGE_DTYPE_F32, N, V, logits, 3, term_node, term_target, term_old, term_adv, &opt,
                               NULL, NULL, &stats, NULL);
    CHECK(st == want_st, "cuda cispo without a GPU gave %s", forge_status_name(st));
    forge_cuda_device_props props;
    CHECK(forge_cuda_get_device_props(0, &props) == want_st, "cuda device props without a GPU");
    CHECK(forge_cuda_set_device(0) == want_st && forge_cuda_synchronize(NULL) == want_st, "cuda set/sync without a GPU");
  } else {
    float back[N * V];
    CHECK(st == FORGE_OK && dev != NULL, "cuda malloc: %s", forge_last_error());
    CHECK(forge_cuda_memcpy_h2d(dev, logits, sizeof logits, NULL) == FORGE_OK, "h2d: %s", forge_last_error());
    CHECK(forge_cuda_memcpy_d2h(back, dev, sizeof back, NULL) == FORGE_OK, "d2h: %s", forge_last_error());
    CHECK(memcmp(back, logits, sizeof back) == 0, "device round trip changed the data");
    CHECK(forge_cuda_memcpy_d2h(dev, logits, sizeof logits, NULL) == FORGE_ERR_INVALID_ARGUMENT,
          "a host pointer as the device source was accepted");
    CHECK(forge_cuda_free(dev) == FORGE_OK, "cuda free: %s", forge_last_error());
  }
  if (failures) return 1;
  printf("ok\n");
  return 0;
}
