// forge_path_attention: attention of each query over an explicit list of KV-pool slots (its root path),
// the attention step of the inference engine's incremental forward.
//
// Queries that share a path array (a prefill chunk of one sequence: query j reads a prefix of it) are
// tiled together, so each key row is loaded once per block for every query and head of the tile. A
// decode step has one query per path; its tile is that query's heads of one kv group. Each (query,
// head) row keeps its own online-softmax state (m, d in float64, unnormalised o) and folds its keys in
// blocks of kKeyBlock starting at path index 0, so a row's result depends only on its own path: the
// same whatever other queries share the call, and whatever the thread count.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attention/vec.hpp"
#include "common/error.hpp"
#include "common/simd.hpp"
#include "common/thread_pool.hpp"

namespace forge::engine {
namespace {

using attention::FloatBuffer;
using attention::vexp;
using attention::vf;
using attention::vload;
using attention::vsplat;
using attention::vstore;
using attention::kLanes;

constexpr int kMaxHeadDim = 1024;
constexpr int kKeyBlock = 64;      // keys folded at a time (K and V rows of a block stay in L1)
constexpr int kQueryTile = 16;     // queries sharing a path per task
constexpr double kSerialWork = 2e5;  // below this many multiply-adds the call stays on its thread
constexpr float kNegInf = -INFINITY;

struct Problem {
  int64_t m = 0, slots = 0, entries = 0;
  int hq = 0, hkv = 0, dim = 0, group = 0;
  float scale = 0.0f;
  const int32_t* paths = nullptr;
  const int64_t* offset = nullptr;
  const int32_t* len = nullptr;
};

struct Task {
  int64_t begin = 0, end = 0;  // queries [begin, end), all with the same path_offset
  int kv = 0;                  // kv head
  double work = 0.0;
};

forge_status null_pointer(const char* name) { return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer"); }

std::string str(int64_t x) { return std::to_string(x); }

forge_status check(const forge_path_attention_shape* shape, const float* q, const float* k, const float* v,
                   const int32_t* paths, int64_t entries, const int64_t* offset, const int32_t* len, const float* o,
                   const float* lse, Problem& p) {
  if (!shape) return null_pointer("shape");
  const forge_path_attention_shape& s = *shape;
  if (s.num_queries < 1 || s.num_queries > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_queries: expected an integer in [1, 2^31), got " + str(s.num_queries));
  if (s.num_slots < 1 || s.num_slots > INT32_MAX)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_slots: expected an integer in [1, 2^31), got " + str(s.num_slots));
  if (s.num_heads < 1 || s.num_heads >= (1 << 20))
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_heads: expected an integer in [1, 2^20), got " + str(s.num_heads));
  if (s.num_kv_heads < 1 || s.num_heads % s.num_kv_heads != 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.num_kv_heads: expected a divisor of num_heads (" + str(s.num_heads) +
                                                "), got " + str(s.num_kv_heads));
  if (s.head_dim < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "shape.head_dim: expected >= 1, got " + str(s.head_dim));
  if (s.head_dim > kMaxHeadDim)
    return fail(FORGE_ERR_UNSUPPORTED, "shape.head_dim: at most " + str(kMaxHeadDim) + " is supported, got " + str(s.head_dim));
  if (std::isinf(s.scale))
    return fail(FORGE_ERR_NON_FINITE, "shape.scale: expected a finite number (<= 0 or NaN selects 1/sqrt(D)), got " +
                                          std::string(s.scale > 0 ? "inf" : "-inf"));
  if (!q) return null_pointer("q");
  if (!k) return null_pointer("k");
  if (!v) return null_pointer("v");
  if (!o) return null_pointer("o");
  if (!lse) return null_pointer("lse");
  if (!offset) return null_pointer("path_offset");
  if (!len) return null_pointer("path_len");
  if (entries < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "num_path_entries: expected >= 0, got " + str(entries));
  if (entries > 0 && !paths) return null_pointer("paths");
  for (int64_t e = 0; e < entries; ++e)
    if (paths[e] < 0 || paths[e] >= s.num_slots)
      return fail(FORGE_ERR_OUT_OF_RANGE,
                  "paths[" + str(e) + "]: slot " + str(paths[e]) + " out of range [0, " + str(s.num_slots) + ")");
  for (int64_t i = 0; i < s.num_queries; ++i) {
    if (offset[i] < 0 || offset[i] > entries)
      return fail(FORGE_ERR_OUT_OF_RANGE,
                  "path_offset[" + str(i) + "]: " + str(offset[i]) + " out of range [0, " + str(entries) + "]");
    if (len[i] < 0 || len[i] > entries - offset[i])
      return fail(FORGE_ERR_OUT_OF_RANGE, "path_len[" + str(i) + "]: " + str(len[i]) + " runs past the " + str(entries) +
                                              " path entries (path_offset " + str(offset[i]) + ")");
  }
  p.m = s.num_queries;
  p.slots = s.num_slots;
  p.entries = entries;
  p.hq = s.num_heads;
  p.hkv = s.num_kv_heads;
  p.dim = s.head_dim;
  p.group = s.num_heads / s.num_kv_heads;
  p.scale = s.scale > 0.0f ? s.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  p.paths = paths;
  p.offset = offset;
  p.len = len;
  return FORGE_OK;
}

// Runs of consecutive queries with the same path_offset, cut into tiles, times kv heads.
std::vector<Task> make_tasks(const Problem& p) {
  std::vector<Task> tasks;
  int64_t i = 0;
  while (i < p.m) {
    int64_t end = i + 1;
    while (end < p.m && end - i < kQueryTile && p.offset[end] == p.offset[i]) ++end;
    double keys = 0.0;
    for (int64_t j = i; j < end; ++j) keys += p.len[j];
    for (int kv = 0; kv < p.hkv; ++kv) tasks.push_back({i, end, kv, keys * p.group * p.dim * 2.0});
    i = end;
  }
  return tasks;
}

FORGE_ALWAYS_INLINE float hsum(const vf& x) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += x[l];
  return s;
}

// a . b over dim floats: full vectors, then the tail.
FORGE_ALWAYS_INLINE float dot(const float* a, const float* b, int dim) {
  vf acc = {};
  int c = 0;
  for (; c + kLanes <= dim; c += kLanes) acc += vload(a + c) * vload(b + c);
  float s = hsum(acc);
  for (; c < dim; ++c) s += a[c] * b[c];
  return s;
}

// out = out * alpha + sum_j w[j] * rows[j] over dim floats.
FORGE_ALWAYS_INLINE void scale_accumulate(float* out, float alpha, const float* w, const float* const* rows, int count,
                                          int dim) {
  int c = 0;
  const vf va = vsplat(alpha);
  for (; c + kLanes <= dim; c += kLanes) {
    vf acc = vload(out + c) * va;
    for (int j = 0; j < count; ++j) acc += vsplat(w[j]) * vload(rows[j] + c);
    vstore(out + c, acc);
  }
  for (; c < dim; ++c) {
    float acc = out[c] * alpha;
    for (int j = 0; j < count; ++j) acc += w[j] * rows[j][c];
    out[c] = acc;
  }
}

struct Scratch {
  FloatBuffer acc;          // [rows, dim] unnormalised outputs
  std::vector<float> m;     // [rows] running max
  std::vector<double> d;    // [rows] running sum of exponentials
  const float* krow[kKeyBlock];
  const float* vrow[kKeyBlock];
  alignas(64) float s[kKeyBlock];
};

FORGE_HOT void run_task(const Problem& p, const Task& t, const float* q, const float* k, const float* v, float* o,
                        float* lse, Scratch& s) {
  const int64_t nq = t.end - t.begin;
  const int rows = static_cast<int>(nq) * p.group;
  s.acc.assign(static_cast<size_t>(rows) * p.dim, 0.0f);
  s.m.assign(static_cast<size_t>(rows), kNegInf);
  s.d.assign(static_cast<size_t>(rows), 0.0);
  const int32_t* path = p.paths + p.offset[t.begin];
  int64_t max_len = 0;
  for (int64_t i = t.begin; i < t.end; ++i) max_len = std::max<int64_t>(max_len, p.len[i]);
  const size_t kv_stride = static_cast<size_t>(p.hkv) * p.dim;

  for (int64_t kb = 0; kb < max_len; kb += kKeyBlock) {
    const int block = static_cast<int>(std::min<int64_t>(kKeyBlock, max_len - kb));
    for (int j = 0; j < block; ++j) {
      const size_t row = static_cast<size_t>(path[kb + j]) * kv_stride + static_cast<size_t>(t.kv) * p.dim;
      s.krow[j] = k + row;
      s.vrow[j] = v + row;
    }
    for (int64_t qi = 0; qi < nq; ++qi) {
      const int64_t visible = std::min<int64_t>(block, p.len[t.begin + qi] - kb);
      if (visible <= 0) continue;
      const int count = static_cast<int>(visible);
      for (int g = 0; g < p.group; ++g) {
        const int r = static_cast<int>(qi) * p.group + g;
        const int head = t.kv * p.group + g;
        const float* qrow = q + (static_cast<size_t>(t.begin + qi) * p.hq + head) * p.dim;
        float bmax = kNegInf;
        for (int j = 0; j < count; ++j) {
          s.s[j] = dot(qrow, s.krow[j], p.dim) * p.scale;
          bmax = std::max(bmax, s.s[j]);
        }
        for (int j = count; j < kKeyBlock; ++j) s.s[j] = kNegInf;
        const float new_m = std::max(s.m[r], bmax);
        // Nothing seen yet (new_m = -inf: every score -inf): subtracting 0 keeps exp(-inf) = 0.
        const float base = new_m == kNegInf ? 0.0f : new_m;
        const float alpha = s.m[r] == kNegInf ? 0.0f : std::exp(s.m[r] - base);
        double sum = 0.0;
        for (int j = 0; j < kKeyBlock; j += kLanes) {
          const vf e = vexp(vload(s.s + j) - vsplat(base));
          vstore(s.s + j, e);
          for (int l = 0; l < kLanes; ++l) sum += e[l];
        }
        s.m[r] = new_m;
        s.d[r] = s.d[r] * alpha + sum;
        scale_accumulate(s.acc.data() + static_cast<size_t>(r) * p.dim, alpha, s.s, s.vrow, count, p.dim);
      }
    }
  }

  for (int64_t qi = 0; qi < nq; ++qi)
    for (int g = 0; g < p.group; ++g) {
      const int r = static_cast<int>(qi) * p.group + g;
      const size_t out_row = static_cast<size_t>(t.begin + qi) * p.hq + t.kv * p.group + g;
      float* orow = o + out_row * p.dim;
      const double d = s.d[r];
      if (!(d > 0.0)) {  // empty path
        std::fill(orow, orow + p.dim, 0.0f);
        lse[out_row] = kNegInf;
        continue;
      }
      const float* acc = s.acc.data() + static_cast<size_t>(r) * p.dim;
      const double inv = 1.0 / d;
      for (int c = 0; c < p.dim; ++c) orow[c] = static_cast<float>(acc[c] * inv);
      lse[out_row] = static_cast<float>(static_cast<double>(s.m[r]) + std::log(d));
    }
}

forge_status path_attention(const forge_path_attention_shape* shape, const float* q, const float* k, const float* v,
                            const int32_t* paths, int64_t entries, const int64_t* offset, const int32_t* len, float* o,
                            float* lse) {
  Problem p;
  if (forge_status st = check(shape, q, k, v, paths, entries, offset, len, o, lse, p); st != FORGE_OK) return st;
  std::vector<Task> tasks = make_tasks(p);
  double total = 0.0;
  for (const Task& t : tasks) total += t.work;
  // Largest first, so a long prefill tile does not finish last.
  std::stable_sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) { return a.work > b.work; });
  const int64_t n = static_cast<int64_t>(tasks.size());
  parallel_for(n, total < kSerialWork ? n : 1, [&](int64_t begin, int64_t end) {
    Scratch s;
    for (int64_t i = begin; i < end; ++i) run_task(p, tasks[static_cast<size_t>(i)], q, k, v, o, lse, s);
  });
  return FORGE_OK;
}

}  // namespace
}  // namespace forge::engine

extern "C" FORGE_API forge_status forge_path_attention(const forge_path_attention_shape* shape, const float* q,
                                                       const float* k, const float* v, const int32_t* paths,
                                                       int64_t num_path_entries, const int64_t* path_offset,
                                                       const int32_t* path_len, float* o, float* lse) {
  return forge::guarded("forge_path_attention", [&] {
    return forge::engine::path_attention(shape, q, k, v, paths, num_path_entries, path_offset, path_len, o, lse);
  });
}
