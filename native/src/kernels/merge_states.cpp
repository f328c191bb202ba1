// forge_merge_states, forge_merge_states_csr: combine normalised attention states over disjoint key
// sets (cascade attention: a shared prefix's state merged with each suffix's). The math is
// state.hpp's; this file checks the arguments and spreads (row, head) units over the pool.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "attention/state.hpp"
#include "common/error.hpp"
#include "common/thread_pool.hpp"

namespace forge::attention {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 60;
constexpr int64_t kUnitGrainElements = int64_t{1} << 16;  // floats per chunk below which splitting costs more

forge_status check_dims(int64_t rows, int32_t num_heads, int32_t head_dim, const char* rows_name) {
  if (rows < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(rows_name) + ": expected >= 0, got " + std::to_string(rows));
  if (num_heads < 1)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "num_heads: expected >= 1, got " + std::to_string(num_heads));
  if (head_dim < 1) return fail(FORGE_ERR_INVALID_ARGUMENT, "head_dim: expected >= 1, got " + std::to_string(head_dim));
  if (rows > kMaxElements / num_heads / head_dim)
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(rows_name) + " * num_heads * head_dim: too large");
  return FORGE_OK;
}

// A state's lse is a finite number or -inf (empty); NaN and +inf are errors.
forge_status check_lse(const float* lse, int64_t count, const char* name) {
  for (int64_t i = 0; i < count; ++i)
    if (std::isnan(lse[i]) || lse[i] == INFINITY)
      return fail(FORGE_ERR_NON_FINITE, std::string(name) + "[" + std::to_string(i) +
                                            "]: expected a finite number or -inf, got " + std::to_string(lse[i]));
  return FORGE_OK;
}

struct Span {
  const void* ptr;
  int64_t bytes;
  const char* name;
  bool overlaps(const Span& o) const {
    if (!ptr || !o.ptr || bytes == 0 || o.bytes == 0) return false;
    const auto a = reinterpret_cast<uintptr_t>(ptr), b = reinterpret_cast<uintptr_t>(o.ptr);
    return a < b + static_cast<uintptr_t>(o.bytes) && b < a + static_cast<uintptr_t>(bytes);
  }
};

// Each output must be exactly one of the inputs (allowed: the merge is element by element) or
// disjoint from all of them, and the outputs must not overlap each other.
forge_status check_outputs(const std::vector<Span>& outputs, const std::vector<Span>& inputs, bool allow_alias) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    for (size_t j = i + 1; j < outputs.size(); ++j)
      if (outputs[i].overlaps(outputs[j]))
        return fail(FORGE_ERR_INVALID_ARGUMENT,
                    std::string(outputs[i].name) + ": overlaps " + outputs[j].name);
    for (const Span& in : inputs) {
      if (!outputs[i].overlaps(in)) continue;
      if (allow_alias && outputs[i].ptr == in.ptr && outputs[i].bytes == in.bytes) continue;
      return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(outputs[i].name) + ": overlaps " + in.name +
                                                  (allow_alias ? " without being the same buffer" : ""));
    }
  }
  return FORGE_OK;
}

forge_status merge_pair(int64_t rows, int32_t num_heads, int32_t head_dim, const float* o_a, const float* lse_a,
                        const float* o_b, const float* lse_b, float* o_out, float* lse_out) {
  if (forge_status st = check_dims(rows, num_heads, head_dim, "rows"); st != FORGE_OK) return st;
  const int64_t units = rows * num_heads, elements = units * head_dim;
  if (units == 0) return FORGE_OK;
  const std::pair<const void*, const char*> pointers[] = {{o_a, "o_a"}, {lse_a, "lse_a"}, {o_b, "o_b"},
                                                          {lse_b, "lse_b"}, {o_out, "o_out"}, {lse_out, "lse_out"}};
  for (const auto& [ptr, name] : pointers)
    if (!ptr) return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer");
  const int64_t ob = elements * 4, lb = units * 4;
  if (forge_status st = check_outputs({{o_out, ob, "o_out"}, {lse_out, lb, "lse_out"}},
                                      {{o_a, ob, "o_a"}, {lse_a, lb, "lse_a"}, {o_b, ob, "o_b"}, {lse_b, lb, "lse_b"}},
                                      true);
      st != FORGE_OK)
    return st;
  // Checked in full before anything is written, since the output may be a's buffers.
  if (forge_status st = check_lse(lse_a, units, "lse_a"); st != FORGE_OK) return st;
  if (forge_status st = check_lse(lse_b, units, "lse_b"); st != FORGE_OK) return st;

  parallel_for(units, std::max<int64_t>(1, kUnitGrainElements / head_dim), [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end; ++u) {
      const size_t at = static_cast<size_t>(u) * head_dim;
      state_merge_pair(o_a + at, lse_a[u], o_b + at, lse_b[u], head_dim, o_out + at, lse_out + u);
    }
  });
  return FORGE_OK;
}

forge_status merge_csr(int64_t rows, int32_t num_heads, int32_t head_dim, const int64_t* offsets, int64_t num_states,
                       const float* o_in, const float* lse_in, float* o_out, float* lse_out) {
  if (forge_status st = check_dims(rows, num_heads, head_dim, "rows"); st != FORGE_OK) return st;
  if (forge_status st = check_dims(num_states, num_heads, head_dim, "num_states"); st != FORGE_OK) return st;
  if (!offsets) return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets: null pointer");
  if (offsets[0] != 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets[0]: expected 0, got " + std::to_string(offsets[0]));
  for (int64_t r = 0; r < rows; ++r)
    if (offsets[r + 1] < offsets[r] || offsets[r + 1] > num_states)
      return fail(FORGE_ERR_OUT_OF_RANGE, "offsets[" + std::to_string(r + 1) + "]: expected a value in [" +
                                              std::to_string(offsets[r]) + ", " + std::to_string(num_states) +
                                              "], got " + std::to_string(offsets[r + 1]));
  if (offsets[rows] != num_states)
    return fail(FORGE_ERR_INVALID_ARGUMENT, "offsets[" + std::to_string(rows) + "]: expected num_states (" +
                                                std::to_string(num_states) + "), got " + std::to_string(offsets[rows]));
  const int64_t in_units = num_states * num_heads, out_units = rows * num_heads;
  if (in_units > 0 && !o_in) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_in: null pointer");
  if (in_units > 0 && !lse_in) return fail(FORGE_ERR_INVALID_ARGUMENT, "lse_in: null pointer");
  if (out_units > 0 && !o_out) return fail(FORGE_ERR_INVALID_ARGUMENT, "o_out: null pointer");
  if (out_units > 0 && !lse_out) return fail(FORGE_ERR_INVALID_ARGUMENT, "lse_out: null pointer");
  if (out_units == 0) return FORGE_OK;
  // An output row reads several input rows, so in-place is not possible here.
  if (forge_status st = check_outputs({{o_out, out_units * head_dim * 4, "o_out"}, {lse_out, out_units * 4, "lse_out"}},
                                      {{o_in, in_units * head_dim * 4, "o_in"}, {lse_in, in_units * 4, "lse_in"}},
                                      false);
      st != FORGE_OK)
    return st;
  if (forge_status st = check_lse(lse_in, in_units, "lse_in"); st != FORGE_OK) return st;

  const int64_t per_row = std::max<int64_t>(1, num_states / std::max<int64_t>(rows, 1)) * num_heads * head_dim;
  parallel_for(rows, std::max<int64_t>(1, kUnitGrainElements / per_row), [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(head_dim));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t first = offsets[r], count = offsets[r + 1] - offsets[r];
      for (int h = 0; h < num_heads; ++h) {
        const auto unit = [&](int64_t i) { return (first + i) * num_heads + h; };
        const size_t out = static_cast<size_t>(r * num_heads + h);
        state_merge_many(
            count, [&](int64_t i) { return o_in + static_cast<size_t>(unit(i)) * head_dim; },
            [&](int64_t i) { return lse_in[unit(i)]; }, head_dim, acc.data(), o_out + out * head_dim,
            lse_out + out);
      }
    }
  });
  return FORGE_OK;
}

}  // namespace
}  // namespace forge::attention

extern "C" FORGE_API forge_status forge_merge_states(int64_t rows, int32_t num_heads, int32_t head_dim,
                                                     const float* o_a, const float* lse_a, const float* o_b,
                                                     const float* lse_b, float* o_out, float* lse_out) {
  return forge::guarded("forge_merge_states", [&] {
    return forge::attention::merge_pair(rows, num_heads, head_dim, o_a, lse_a, o_b, lse_b, o_out, lse_out);
  });
}

extern "C" FORGE_API forge_status forge_merge_states_csr(int64_t rows, int32_t num_heads, int32_t head_dim,
                                                         const int64_t* offsets, int64_t num_states,
                                                         const float* o_in, const float* lse_in, float* o_out,
                                                         float* lse_out) {
  return forge::guarded("forge_merge_states_csr", [&] {
    return forge::attention::merge_csr(rows, num_heads, head_dim, offsets, num_states, o_in, lse_in, o_out, lse_out);
  });
}
