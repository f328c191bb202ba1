// Check 1 (and the products check 9 reruns): the tensor-core helpers of cuda/attention/mma.cuh on the
// emulator against a plain float64 matmul of the same 16-bit values, for every operand layout the
// attention kernels use. One warp, M = 16 rows, K = 32 (two k16 steps), N = 32 (two n-pairs).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "attention/mma.cuh"
#include "common/launch.cuh"
#include "harness.hpp"

namespace simt_selftest {

namespace fa = forge::cuda::attention;

constexpr int kM = 16, kK = 32, kPairs = 2, kN = 16 * kPairs;
constexpr double kMmaTolerance = 1e-5;  // relative to sum |a||b|: float32 accumulation

template <class T> struct Half;
template <> struct Half<__nv_bfloat16> {
  static constexpr const char* name = "bf16";
  static __nv_bfloat16 round(double x) { return __float2bfloat16_rn(static_cast<float>(x)); }
  static double value(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <> struct Half<__half> {
  static constexpr const char* name = "f16";
  static __half round(double x) { return __float2half_rn(static_cast<float>(x)); }
  static double value(__half v) { return __half2float(v); }
};

// Shared tiles as the kernels keep them: row-major, row length + 8 elements per row.
template <int Rows, int Cols>
struct Tile {
  static constexpr int rows = Rows, cols = Cols, stride = Cols + 8, elements = Rows * stride;
};

// Copies a dense [Rows][Cols] global array into a padded shared tile.
template <class T, class Shape>
__device__ void load_tile(T* tile, const T* dense, int lane) {
  for (int i = lane; i < Shape::rows * Shape::cols; i += 32)
    tile[(i / Shape::cols) * Shape::stride + i % Shape::cols] = dense[i];
}

// Writes C fragments (mma.cuh's layout: c[nt][0..1] = C[g][8nt + 2t..], c[nt][2..3] = C[g + 8][..])
// to a dense [16][8 * NT] array.
template <int NT>
__device__ void store_c(float* c_dense, const float (&c)[NT][4], int lane) {
  const int g = lane >> 2, t = lane & 3;
  for (int nt = 0; nt < NT; ++nt)
    for (int e = 0; e < 4; ++e) c_dense[(g + 8 * (e >> 1)) * (8 * NT) + 8 * nt + 2 * t + (e & 1)] = c[nt][e];
}

// A is stored [m][k] (a_addr + ldmatrix) or [k][m] (a_addr_transposed + ldmatrix.trans); B is stored
// [n][k] (b_addr_nk + ldmatrix) or [k][n] (b_addr_kn + ldmatrix.trans). C = A B, C [16][kN].
template <class T, bool TransA, bool TransB>
struct MmaCase {
  using ATile = std::conditional_t<TransA, Tile<kK, kM>, Tile<kM, kK>>;
  using BTile = std::conditional_t<TransB, Tile<kK, kN>, Tile<kN, kK>>;
  static constexpr size_t kSharedBytes = (ATile::elements + BTile::elements) * sizeof(T);
};

template <class T, bool TransA, bool TransB>
__global__ void mma_layout_kernel(const T* a_stored, const T* b_stored, float* c_dense) {
  using Case = MmaCase<T, TransA, TransB>;
  FORGE_DYNAMIC_SHARED(smem);
  T* sa = reinterpret_cast<T*>(smem);
  T* sb = sa + Case::ATile::elements;
  const int lane = threadIdx.x;
  load_tile<T, typename Case::ATile>(sa, a_stored, lane);
  load_tile<T, typename Case::BTile>(sb, b_stored, lane);
  __syncwarp();
  float c[2 * kPairs][4];
  fa::zero(c);
  constexpr int SA = Case::ATile::stride, SB = Case::BTile::stride;
  auto a_at = [&](int k0) {
    if constexpr (TransA) return fa::a_addr_transposed<T, SA>(sa, 0, k0, lane);
    else return fa::a_addr<T, SA>(sa, 0, k0, lane);
  };
  auto b_at = [&](int n0, int k0) {
    if constexpr (TransB) return fa::b_addr_kn<T, SB>(sb, n0, k0, lane);
    else return fa::b_addr_nk<T, SB>(sb, n0, k0, lane);
  };
  fa::mma_tile<T, kK, kPairs, TransA, TransB>(c, a_at, b_at);
  store_c(c_dense, c, lane);
}

// The P -> PV path of the forward kernel: S = Q K^T (K stored [key][d]), P = pack_a(S fragments),
// O = P V (V stored [key][d], ldmatrix.trans) with P in registers (mma_tile_reg_a).
template <class T>
__global__ void pv_kernel(const T* q, const T* k, const T* v, float* o_dense) {
  using QT = Tile<kM, kK>;
  using KT = Tile<kN, kK>;  // kN keys
  using VT = Tile<kN, kK>;  // [key][d], d = kK
  FORGE_DYNAMIC_SHARED(smem);
  T* sq = reinterpret_cast<T*>(smem);
  T* sk = sq + QT::elements;
  T* sv = sk + KT::elements;
  const int lane = threadIdx.x;
  load_tile<T, QT>(sq, q, lane);
  load_tile<T, KT>(sk, k, lane);
  load_tile<T, VT>(sv, v, lane);
  __syncwarp();
  float s[kN / 8][4];
  fa::zero(s);
  fa::mma_tile<T, kK, kN / 16, false, false>(
      s, [&](int k0) { return fa::a_addr<T, QT::stride>(sq, 0, k0, lane); },
      [&](int n0, int k0) { return fa::b_addr_nk<T, KT::stride>(sk, n0, k0, lane); });
  uint32_t p[kN / 16][4];
  for (int kk = 0; kk < kN / 16; ++kk) fa::pack_a<T>(p[kk], s[2 * kk], s[2 * kk + 1]);
  float o[kK / 8][4];
  fa::zero(o);
  fa::mma_tile_reg_a<T, kN, kK / 16, true>(o, p, [&](int n0, int k0) {
    return fa::b_addr_kn<T, VT::stride>(sv, n0, k0, lane);
  });
  store_c(o_dense, o, lane);
}

// A [rows][cols] row-major matrix of 16-bit values and their exact doubles.
template <class T>
struct HalfMatrix {
  int rows, cols;
  std::vector<T> bits;
  std::vector<double> values;
  double at(int r, int c) const { return values[r * cols + c]; }
  // The matrix stored transposed, [cols][rows].
  std::vector<T> transposed() const {
    std::vector<T> out(bits.size());
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) out[c * rows + r] = bits[r * cols + c];
    return out;
  }
};

// Normal draws rounded to 16 bits, or (integers = true) integers in [-bound, bound].
template <class T>
HalfMatrix<T> random_matrix(std::mt19937_64& rng, int rows, int cols, int integer_bound = 0) {
  HalfMatrix<T> m{rows, cols, {}, {}};
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> integer(-integer_bound, integer_bound);
  for (int i = 0; i < rows * cols; ++i) {
    const T h = Half<T>::round(integer_bound ? integer(rng) : normal(rng));
    m.bits.push_back(h);
    m.values.push_back(Half<T>::value(h));
  }
  return m;
}

// C = A B in float64, and sum |a||b| per element (the scale the tolerance is relative to).
inline void reference_matmul(const std::vector<double>& a, const std::vector<double>& b, int m, int k, int n,
                             std::vector<double>& c, std::vector<double>& scale) {
  c.assign(m * n, 0.0);
  scale.assign(m * n, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) {
        c[i * n + j] += a[i * k + p] * b[p * n + j];
        scale[i * n + j] += std::fabs(a[i * k + p] * b[p * n + j]);
      }
}

inline Outcome compare_product(const std::vector<float>& got, const std::vector<double>& want,
                               const std::vector<double>& scale, int n) {
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(got[i] - want[i]);
    if (!(err <= kMmaTolerance * scale[i]))  // also catches NaN: an element nobody wrote
      return cat("C[", i / n, "][", i % n, "] = ", got[i], ", float64 reference ", want[i], " (|a||b| sum ", scale[i], ")");
  }
  return "";
}

// What one product computed on the emulator, and whether it matches the float64 reference.
struct Product {
  std::vector<float> c;
  Outcome verdict;
};

// Fails when a layout helper points a lane at the wrong row or column, ldmatrix(.trans) or mma
// place a fragment element wrongly, or mma_tile walks k-steps or n-pairs wrongly.
template <class T, bool TransA, bool TransB>
Product run_mma_layout(uint64_t seed, const std::string& name) {
  std::mt19937_64 rng = stream_for(seed, name);
  const HalfMatrix<T> a = random_matrix<T>(rng, kM, kK), b = random_matrix<T>(rng, kK, kN);
  DeviceArray<T> a_dev(TransA ? a.transposed() : a.bits);
  DeviceArray<T> b_dev(TransB ? b.bits : b.transposed());
  DeviceArray<float> c_dev(kM * kN);
  FORGE_LAUNCH(dim3(1), dim3(32), (MmaCase<T, TransA, TransB>::kSharedBytes), nullptr,
               mma_layout_kernel<T, TransA, TransB>)(a_dev.get(), b_dev.get(), c_dev.get());
  if (Outcome launched = expect_launched(); !launched.empty()) return {{}, launched};
  std::vector<double> want, scale;
  reference_matmul(a.values, b.values, kM, kK, kN, want, scale);
  Product out{c_dev.download(), {}};
  out.verdict = compare_product(out.c, want, scale, kN);
  return out;
}

// Fails when pack_a pairs the C fragments of two n-tiles into the wrong A registers or swaps the
// halves of a register, or mma_tile_reg_a walks its k16 fragments wrongly. Q and K are small integers
// so that S, and hence P after packing to 16 bits, is exact; V is random.
template <class T>
Product run_pv(uint64_t seed, const std::string& name) {
  std::mt19937_64 rng = stream_for(seed, name);
  const HalfMatrix<T> q = random_matrix<T>(rng, kM, kK, 2), k = random_matrix<T>(rng, kN, kK, 3);
  const HalfMatrix<T> v = random_matrix<T>(rng, kN, kK);  // |S| <= 32 * 6 = 192: exact in bf16 and f16
  DeviceArray<T> q_dev(q.bits), k_dev(k.bits), v_dev(v.bits);
  DeviceArray<float> o_dev(kM * kK);
  const size_t shared = (Tile<kM, kK>::elements + 2 * Tile<kN, kK>::elements) * sizeof(T);
  FORGE_LAUNCH(dim3(1), dim3(32), shared, nullptr, pv_kernel<T>)(q_dev.get(), k_dev.get(), v_dev.get(), o_dev.get());
  if (Outcome launched = expect_launched(); !launched.empty()) return {{}, launched};
  std::vector<double> kt(kK * kN), s, unused, want, scale;
  for (int key = 0; key < kN; ++key)
    for (int d = 0; d < kK; ++d) kt[d * kN + key] = k.at(key, d);
  reference_matmul(q.values, kt, kM, kK, kN, s, unused);
  reference_matmul(s, v.values, kM, kN, kK, want, scale);
  Product out{o_dev.download(), {}};
  out.verdict = compare_product(out.c, want, scale, kK);
  return out;
}

// The products of check 1, by check name.
struct MmaProduct {
  std::string name;
  Product (*run)(uint64_t seed, const std::string& name);
};

template <class T>
void add_products(std::vector<MmaProduct>& out) {
  const std::string t = Half<T>::name;
  out.push_back({"mma_tile." + t + ".a_mk.b_nk", run_mma_layout<T, false, false>});
  out.push_back({"mma_tile." + t + ".a_mk.b_kn", run_mma_layout<T, false, true>});
  out.push_back({"mma_tile." + t + ".a_km.b_nk", run_mma_layout<T, true, false>});
  out.push_back({"mma_tile." + t + ".a_km.b_kn", run_mma_layout<T, true, true>});
  out.push_back({"mma_tile_reg_a." + t + ".pack_a_pv", run_pv<T>});
}

inline std::vector<MmaProduct> mma_products() {
  std::vector<MmaProduct> out;
  add_products<__nv_bfloat16>(out);
  add_products<__half>(out);
  return out;
}

}  // namespace simt_selftest
