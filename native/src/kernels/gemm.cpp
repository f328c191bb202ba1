// forge_gemm and forge::linalg::gemm: blocked, packed single-precision matrix multiply on the CPU.
//
// The output is cut into tiles of MC rows x NT columns, one task each on the thread pool. A task walks
// k in blocks of KC; per block it packs its op(B) block into NR-column strips and its op(A) block into
// MR-row strips (linalg/gemm_kernel.hpp), then for each B strip (KC x NR, kept in L1) runs the
// micro-kernel down every A strip (the A block stays in L2). Each C element is written by one task,
// k blocks in order, so results are bitwise independent of the thread count. Packing costs O(1/MC +
// 1/NT) of the multiply-adds, which is why tasks pack their own blocks instead of sharing them.
#include <forge/forge.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <string>

#include "common/error.hpp"
#include "common/thread_pool.hpp"
#include "common/vector_width.hpp"
#include "linalg/gemm.hpp"
#include "linalg/gemm_kernel.hpp"

namespace forge::linalg {
namespace {

constexpr int64_t kKC = 256;      // depth of a packed block: a KC x NR B strip is 16-32 KiB (L1)
constexpr int64_t kMaxMC = 144;   // rows of an A block (a multiple of every MR): 144 x 256 floats, L2
constexpr int64_t kMaxNT = 1024;  // columns per task
// Below this many multiply-adds the call runs on the caller's thread (waking the pool costs more).
constexpr double kSerialMacs = 1 << 17;

// Packing buffers, one pair per thread, kept between calls so steady-state calls do not allocate.
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  size_t a_size = 0, b_size = 0;

  static float* grow(float*& p, size_t& size, size_t need) {
    if (need > size) {
      ::operator delete[](p, std::align_val_t(64));
      p = nullptr;
      size = 0;
      p = static_cast<float*>(::operator new[](need * sizeof(float), std::align_val_t(64)));
      size = need;
    }
    return p;
  }
  ~PackBuffers() {
    ::operator delete[](a, std::align_val_t(64));
    ::operator delete[](b, std::align_val_t(64));
  }
};

struct GemmArgs {
  Op op_a, op_b;
  int64_t m, n, k;
  float alpha;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float beta;
  float* c;
  int64_t ldc;
};

inline int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// How the output is cut into tasks: tiles of mc rows x nt columns (multiples of MR and NR).
struct Plan {
  int64_t mc, nt, tiles_m, tiles_n;
  bool serial;
};

// Tiles as large as the caches allow, then split until the pool has a few tasks per thread.
Plan plan(const GemmArgs& g, int mr, int nr) {
  Plan p;
  p.mc = std::min<int64_t>(kMaxMC / mr * mr, round_up(g.m, mr));
  p.nt = std::min<int64_t>(kMaxNT, round_up(g.n, nr));
  const double macs = static_cast<double>(g.m) * static_cast<double>(g.n) * static_cast<double>(g.k);
  p.serial = macs < kSerialMacs || num_threads() == 1;
  const int64_t wanted = p.serial ? 1 : 4 * static_cast<int64_t>(num_threads());
  auto tiles = [&] { return ((g.m + p.mc - 1) / p.mc) * ((g.n + p.nt - 1) / p.nt); };
  while (tiles() < wanted) {
    const bool can_m = p.mc > 4 * mr, can_n = p.nt > 2 * nr;
    if (!can_m && !can_n) break;
    if (can_n && (p.nt / nr >= p.mc / mr || !can_m))
      p.nt = round_up(p.nt / 2, nr);
    else
      p.mc = round_up(p.mc / 2, mr);
  }
  p.tiles_m = (g.m + p.mc - 1) / p.mc;
  p.tiles_n = (g.n + p.nt - 1) / p.nt;
  return p;
}

// Tasks [begin, end) of the plan, at width W. Always inline: it becomes the body of the ISA-specific
// function below, which is what makes the micro-kernel's vectors real registers of that ISA.
template <int W>
FORGE_GEMM_INLINE void run_tiles(const GemmArgs& g, const Plan& plan, int64_t begin, int64_t end, float* pa,
                                 float* pb) {
  constexpr int MR = GemmTile<W>::MR, NR = GemmTile<W>::NR;
  for (int64_t t = begin; t < end; ++t) {
    const int64_t i0 = t / plan.tiles_n * plan.mc, rows = std::min(plan.mc, g.m - i0);
    const int64_t j0 = t % plan.tiles_n * plan.nt, cols = std::min(plan.nt, g.n - j0);
    for (int64_t p0 = 0; p0 < g.k; p0 += kKC) {
      const int64_t kc = std::min(kKC, g.k - p0);
      pack_b<NR>(g.op_b, g.b, g.ldb, p0, kc, j0, cols, pb);
      pack_a<MR>(g.op_a, g.a, g.lda, i0, rows, p0, kc, pa);
      const float beta = p0 == 0 ? g.beta : 1.0f;  // later k blocks add to what the first wrote
      for (int64_t js = 0; js < cols; js += NR) {
        const int nr = static_cast<int>(std::min<int64_t>(NR, cols - js));
        const float* bs = pb + js * kc;
        for (int64_t is = 0; is < rows; is += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, rows - is));
          micro_kernel<W>(kc, pa + is * kc, bs, g.c + (i0 + is) * g.ldc + j0 + js, g.ldc, mr, nr, g.alpha, beta);
        }
      }
    }
  }
}

using TileFn = void (*)(const GemmArgs&, const Plan&, int64_t, int64_t, float*, float*);

// ---- Width dispatch (common/vector_width.hpp picks the width; each width's tiles get its ISA) -------
#if FORGE_RUNTIME_WIDTH
__attribute__((target("arch=x86-64-v4"))) void tiles_w16(const GemmArgs& g, const Plan& p, int64_t b, int64_t e,
                                                         float* pa, float* pb) {
  run_tiles<16>(g, p, b, e, pa, pb);
}
__attribute__((target("arch=x86-64-v3"))) void tiles_w8(const GemmArgs& g, const Plan& p, int64_t b, int64_t e,
                                                        float* pa, float* pb) {
  run_tiles<8>(g, p, b, e, pa, pb);
}
void tiles_w4(const GemmArgs& g, const Plan& p, int64_t b, int64_t e, float* pa, float* pb) {
  run_tiles<4>(g, p, b, e, pa, pb);
}
#else
void tiles_native(const GemmArgs& g, const Plan& p, int64_t b, int64_t e, float* pa, float* pb) {
  run_tiles<kNativeWidth>(g, p, b, e, pa, pb);
}
#endif

template <int W>
void run_width(const GemmArgs& g, TileFn fn) {
  constexpr int MR = GemmTile<W>::MR, NR = GemmTile<W>::NR;
  const Plan p = plan(g, MR, NR);
  auto body = [&](int64_t begin, int64_t end) {
    thread_local PackBuffers buffers;
    const int64_t kc = std::min(kKC, g.k);
    float* pa = PackBuffers::grow(buffers.a, buffers.a_size, static_cast<size_t>(round_up(p.mc, MR) * kc));
    float* pb = PackBuffers::grow(buffers.b, buffers.b_size, static_cast<size_t>(round_up(p.nt, NR) * kc));
    fn(g, p, begin, end, pa, pb);
  };
  if (p.serial)
    body(0, p.tiles_m * p.tiles_n);
  else
    parallel_for(p.tiles_m * p.tiles_n, 1, body);
}

void dispatch(const GemmArgs& g) {
#if FORGE_RUNTIME_WIDTH
  switch (cpu_vector_width()) {
    case 16: return run_width<16>(g, tiles_w16);
    case 8: return run_width<8>(g, tiles_w8);
    default: return run_width<4>(g, tiles_w4);
  }
#else
  run_width<kNativeWidth>(g, tiles_native);
#endif
}

// C = beta * C for the degenerate products (k = 0 or alpha = 0); beta = 0 writes zeros without reading.
void scale_c(int64_t m, int64_t n, float beta, float* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f)
      std::fill(row, row + n, 0.0f);
    else if (beta != 1.0f)
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
  }
}

// The bytes [first element, one past the last) a row-major [rows, cols] matrix with leading
// dimension ld spans, for the overlap check.
struct Span {
  uintptr_t begin = 0, end = 0;
};
Span span_of(const float* p, int64_t rows, int64_t cols, int64_t ld) {
  if (!p || rows == 0 || cols == 0) return {};
  const uintptr_t b = reinterpret_cast<uintptr_t>(p);
  return {b, b + static_cast<uintptr_t>((rows - 1) * ld + cols) * sizeof(float)};
}
bool overlaps(Span x, Span y) { return x.begin < y.end && y.begin < x.end; }

std::string str(int64_t x) { return std::to_string(x); }

// Checks one operand: its stored shape [rows, cols] with leading dimension ld.
forge_status check_matrix(const char* name, const char* ld_name, const float* p, int64_t rows, int64_t cols,
                          int64_t ld) {
  if (ld < std::max<int64_t>(1, cols))
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(ld_name) + ": expected >= " + str(std::max<int64_t>(1, cols)) +
                                                " (the stored row length of " + name + "), got " + str(ld));
  if (rows > 0 && ld > std::numeric_limits<int64_t>::max() / 8 / rows)
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": " + str(rows) + " rows of " + str(ld) +
                                                " elements overflow");
  if (!p && rows > 0 && cols > 0)
    return fail(FORGE_ERR_INVALID_ARGUMENT, std::string(name) + ": null pointer for a " + str(rows) + " x " +
                                                str(cols) + " matrix");
  return FORGE_OK;
}

}  // namespace

void gemm(Op op_a, Op op_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.0f) return scale_c(m, n, beta, c, ldc);
  dispatch({op_a, op_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc});
}

}  // namespace forge::linalg

extern "C" {

FORGE_API forge_status forge_gemm(forge_transpose trans_a, forge_transpose trans_b, int64_t m, int64_t n, int64_t k,
                                  float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                                  float* c, int64_t ldc) {
  return forge::guarded("forge_gemm", [&] {
    using forge::fail;
    using forge::linalg::str;
    if (trans_a != FORGE_NO_TRANS && trans_a != FORGE_TRANS)
      return fail(FORGE_ERR_INVALID_ARGUMENT, "trans_a: expected FORGE_NO_TRANS (0) or FORGE_TRANS (1), got " +
                                                  str(static_cast<int>(trans_a)));
    if (trans_b != FORGE_NO_TRANS && trans_b != FORGE_TRANS)
      return fail(FORGE_ERR_INVALID_ARGUMENT, "trans_b: expected FORGE_NO_TRANS (0) or FORGE_TRANS (1), got " +
                                                  str(static_cast<int>(trans_b)));
    if (m < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "m: expected >= 0, got " + str(m));
    if (n < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "n: expected >= 0, got " + str(n));
    if (k < 0) return fail(FORGE_ERR_INVALID_ARGUMENT, "k: expected >= 0, got " + str(k));
    if (!std::isfinite(alpha)) return fail(FORGE_ERR_NON_FINITE, "alpha: expected a finite number");
    if (!std::isfinite(beta)) return fail(FORGE_ERR_NON_FINITE, "beta: expected a finite number");
    // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
    const bool ta = trans_a == FORGE_TRANS, tb = trans_b == FORGE_TRANS;
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    if (forge_status s = forge::linalg::check_matrix("a", "lda", a, a_rows, a_cols, lda); s != FORGE_OK) return s;
    if (forge_status s = forge::linalg::check_matrix("b", "ldb", b, b_rows, b_cols, ldb); s != FORGE_OK) return s;
    if (forge_status s = forge::linalg::check_matrix("c", "ldc", c, m, n, ldc); s != FORGE_OK) return s;
    const auto sc = forge::linalg::span_of(c, m, n, ldc);
    if (k > 0 && forge::linalg::overlaps(sc, forge::linalg::span_of(a, a_rows, a_cols, lda)))
      return fail(FORGE_ERR_INVALID_ARGUMENT, "c: overlaps a (the product cannot be written over its input)");
    if (k > 0 && forge::linalg::overlaps(sc, forge::linalg::span_of(b, b_rows, b_cols, ldb)))
      return fail(FORGE_ERR_INVALID_ARGUMENT, "c: overlaps b (the product cannot be written over its input)");
    using forge::linalg::Op;
    forge::linalg::gemm(ta ? Op::T : Op::N, tb ? Op::T : Op::N, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return FORGE_OK;
  });
}

}
