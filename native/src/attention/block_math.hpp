// The inner loops of tree attention, in a "rows in lanes" layout: a lane group holds kRows rows side
// by side, `lanes[c * kRows + r]` = element c of row r. Forward and dQ put (query, head) rows in the
// lanes and read key rows as broadcast scalars; dK/dV put the tile's keys in the lanes and read query
// rows as broadcast scalars. Either way every score, max, exp and sum is a plain vector operation
// (no per-row horizontal reductions) and key/value rows are read where they lie (no gathers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include "attention/vec.hpp"

namespace forge::attention {

constexpr int kRowVecs = 4;
constexpr int kRows = kRowVecs * kLanes;  // rows per lane group (64)
constexpr int kQueryTile = 64;            // queries per forward / dQ task
constexpr int kKeyBlock = 32;             // keys folded at a time into a lane group
constexpr int kKeyTile = kRows;           // keys per dK/dV task: one lane group of keys
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One lane group of vectors.
struct Lanes {
  vf v[kRowVecs];
};

FORGE_ALWAYS_INLINE Lanes splat_lanes(float x) {
  Lanes l{};
  for (int v = 0; v < kRowVecs; ++v) l.v[v] = vsplat(x);
  return l;
}

// Copies rows[i][0:dim] (i < count) into lane layout; lanes past count are zero.
FORGE_ALWAYS_INLINE void to_lanes(const float* const* rows, int count, int dim, float* lanes) {
  for (int c = 0; c < dim; ++c) {
    float* dst = lanes + static_cast<size_t>(c) * kRows;
    for (int r = 0; r < kRows; ++r) dst[r] = r < count ? rows[r][c] : 0.0f;
  }
}

// Two rows x0, x1 dotted with every lane over dim: a0[lane] = x0 . lane, a1[lane] = x1 . lane.
// Eight independent FMA chains, and each lane vector loaded once for both rows.
FORGE_ALWAYS_INLINE void dot_lanes2(const float* x0, const float* x1, const float* lanes, int dim, Lanes& a0,
                                    Lanes& a1) {
  vf s0[kRowVecs] = {}, s1[kRowVecs] = {};
  for (int c = 0; c < dim; ++c) {
    const vf b0 = vsplat(x0[c]), b1 = vsplat(x1[c]);
    const float* l = lanes + static_cast<size_t>(c) * kRows;
    for (int v = 0; v < kRowVecs; ++v) {
      const vf y = vload(l + v * kLanes);
      s0[v] += b0 * y;
      s1[v] += b1 * y;
    }
  }
  for (int v = 0; v < kRowVecs; ++v) {
    a0.v[v] = s0[v];
    a1.v[v] = s1[v];
  }
}

// out[c] = out[c] * alpha + sum_i w[i] * rows[i][c] for c < dim, in lane layout (alpha may be null:
// no rescale). Two dims at a time keep eight accumulators in registers across the rows.
FORGE_ALWAYS_INLINE void accumulate_lanes(float* out, const Lanes* alpha, const Lanes* w, const float* const* rows,
                                          int count, int dim) {
  int c = 0;
  for (; c + 1 < dim; c += 2) {
    float* o0 = out + static_cast<size_t>(c) * kRows;
    float* o1 = o0 + kRows;
    vf a0[kRowVecs], a1[kRowVecs];
    for (int v = 0; v < kRowVecs; ++v) {
      a0[v] = vload(o0 + v * kLanes);
      a1[v] = vload(o1 + v * kLanes);
      if (alpha) {
        a0[v] *= alpha->v[v];
        a1[v] *= alpha->v[v];
      }
    }
    for (int i = 0; i < count; ++i) {
      const vf b0 = vsplat(rows[i][c]), b1 = vsplat(rows[i][c + 1]);
      for (int v = 0; v < kRowVecs; ++v) {
        a0[v] += b0 * w[i].v[v];
        a1[v] += b1 * w[i].v[v];
      }
    }
    for (int v = 0; v < kRowVecs; ++v) {
      vstore(o0 + v * kLanes, a0[v]);
      vstore(o1 + v * kLanes, a1[v]);
    }
  }
  if (c < dim) {
    float* o0 = out + static_cast<size_t>(c) * kRows;
    vf a0[kRowVecs];
    for (int v = 0; v < kRowVecs; ++v) a0[v] = alpha ? vload(o0 + v * kLanes) * alpha->v[v] : vload(o0 + v * kLanes);
    for (int i = 0; i < count; ++i) {
      const vf b0 = vsplat(rows[i][c]);
      for (int v = 0; v < kRowVecs; ++v) a0[v] += b0 * w[i].v[v];
    }
    for (int v = 0; v < kRowVecs; ++v) vstore(o0 + v * kLanes, a0[v]);
  }
}

// Scores of one key against query lanes: visible (qid in [lo, hi)) ? acc * scale - shift : -inf.
FORGE_ALWAYS_INLINE void mask_key(Lanes& s, const vi* qid, int32_t lo, int32_t hi, float scale, const Lanes& shift) {
  const vi l = vsplat_i(lo), h = vsplat_i(hi);
  const vf neg_inf = vsplat(kNegInf);
  for (int v = 0; v < kRowVecs; ++v) s.v[v] = (qid[v] >= l) & (qid[v] < h) ? s.v[v] * scale - shift.v[v] : neg_inf;
}

// Scores of one query row against key lanes [lo, hi): visible (lo <= q < hi) ? acc * scale - shift : -inf.
FORGE_ALWAYS_INLINE void mask_query(Lanes& s, const vi* lo, const vi* hi, int32_t q, float scale, float shift) {
  const vi qv = vsplat_i(q);
  const vf neg_inf = vsplat(kNegInf);
  for (int v = 0; v < kRowVecs; ++v) s.v[v] = (lo[v] <= qv) & (qv < hi[v]) ? s.v[v] * scale - shift : neg_inf;
}

// p = exp(x) (0 where x = -inf: masked), ds = p != 0 ? p * (dp - delta) * factor : 0, so a masked
// pair's ds is exactly 0 whatever dp is. (Inputs are not checked for NaN/Inf: a non-finite q, k or v
// row can still spread through 0 * Inf to rows of the same tile that do not see it.)
FORGE_ALWAYS_INLINE void softmax_grad(Lanes& x_to_p, const Lanes& dp, const Lanes& delta, float factor, Lanes& ds) {
  for (int v = 0; v < kRowVecs; ++v) {
    const vf p = vexp(x_to_p.v[v]);
    x_to_p.v[v] = p;
    ds.v[v] = p != vf{} ? p * (dp.v[v] - delta.v[v]) * factor : vf{};
  }
}

// Starts loading the rows of `n` keys while the previous block computes.
FORGE_ALWAYS_INLINE void prefetch_rows(const float* const* rows, int n, int dim) {
  for (int j = 0; j < n; ++j) {
    const char* row = reinterpret_cast<const char*>(rows[j]);
    for (size_t b = 0; b < static_cast<size_t>(dim) * sizeof(float); b += 64) __builtin_prefetch(row + b, 0, 3);
  }
}

}  // namespace forge::attention
