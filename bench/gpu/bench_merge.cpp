// Attention-state merging (contract 2, cascade): pairwise and N-way (CSR), float32. Checks include
// empty states (lse = -inf) on either or both sides, empty CSR ranges and the in-place form the ABI
// allows (output = input a). Timing counts each state read once and the result written once.
#include <cmath>
#include <limits>

#include "device_fill.hpp"
#include "sections.hpp"

namespace gpubench {
namespace {

const char* kSection = "merge";

// LSE values with a share of empty states (-inf).
std::vector<float> random_lse(Rng& rng, size_t n, double empty_share) {
  std::vector<float> lse(n);
  for (float& v : lse)
    v = rng.uniform() < empty_share ? -std::numeric_limits<float>::infinity() : static_cast<float>(3.0 * rng.gauss());
  return lse;
}

void check_pairwise(Context& ctx, int64_t rows, int32_t heads, int32_t dim, bool in_place) {
  const size_t states = static_cast<size_t>(rows) * heads, elems = states * dim;
  const std::vector<float> o_a = random_normal(ctx.rng, elems, 1.f, FORGE_DTYPE_F32);
  const std::vector<float> o_b = random_normal(ctx.rng, elems, 1.f, FORGE_DTYPE_F32);
  std::vector<float> lse_a = random_lse(ctx.rng, states, 0.07), lse_b = random_lse(ctx.rng, states, 0.07);
  for (size_t i = 0; i < states; i += 29) lse_a[i] = lse_b[i] = -std::numeric_limits<float>::infinity();
  std::vector<float> o_ref(elems), lse_ref(states);
  GB_FORGE(forge_merge_states(rows, heads, dim, o_a.data(), lse_a.data(), o_b.data(), lse_b.data(), o_ref.data(),
                              lse_ref.data()));

  cudaStream_t s = ctx.stream.get();
  DeviceBuffer d_oa = upload(o_a, FORGE_DTYPE_F32, s), d_la = upload(lse_a, FORGE_DTYPE_F32, s);
  DeviceBuffer d_ob = upload(o_b, FORGE_DTYPE_F32, s), d_lb = upload(lse_b, FORGE_DTYPE_F32, s);
  DeviceBuffer d_o(in_place ? 0 : elems * 4), d_l(in_place ? 0 : states * 4);
  if (!in_place) poison(d_o, s), poison(d_l, s);
  float* o_out = in_place ? d_oa.as<float>() : d_o.as<float>();
  float* l_out = in_place ? d_la.as<float>() : d_l.as<float>();
  GB_FORGE(forge_cuda_merge_states(rows, heads, dim, d_oa.as<float>(), d_la.as<float>(), d_ob.as<float>(),
                                   d_lb.as<float>(), o_out, l_out, ctx.stream.as_void()));
  const std::string name = std::string("merge_states") + (in_place ? " in place" : "") + " rows=" +
                           std::to_string(rows) + " H=" + std::to_string(heads) + " D=" + std::to_string(dim);
  const DeviceBuffer& o_buf = in_place ? d_oa : d_o;
  const DeviceBuffer& l_buf = in_place ? d_la : d_l;
  ctx.report.check(kSection, name, FORGE_DTYPE_F32, "o", compare(download(o_buf, elems, FORGE_DTYPE_F32, s), o_ref),
                   dtype_bound(FORGE_DTYPE_F32));
  ctx.report.check(kSection, name, FORGE_DTYPE_F32, "lse", compare(download(l_buf, states, FORGE_DTYPE_F32, s), lse_ref),
                   dtype_bound(FORGE_DTYPE_F32));
}

void check_csr(Context& ctx, int64_t rows, int32_t heads, int32_t dim) {
  std::vector<int64_t> offsets(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) offsets[r + 1] = offsets[r] + ctx.rng.below(7);  // 0..6, empty ranges too
  const int64_t m = offsets.back();
  const size_t in_states = static_cast<size_t>(m) * heads, out_states = static_cast<size_t>(rows) * heads;
  const std::vector<float> o_in = random_normal(ctx.rng, in_states * dim, 1.f, FORGE_DTYPE_F32);
  const std::vector<float> lse_in = random_lse(ctx.rng, in_states, 0.1);
  std::vector<float> o_ref(out_states * dim), lse_ref(out_states);
  GB_FORGE(forge_merge_states_csr(rows, heads, dim, offsets.data(), m, o_in.data(), lse_in.data(), o_ref.data(),
                                  lse_ref.data()));

  cudaStream_t s = ctx.stream.get();
  DeviceBuffer d_off = upload_raw(offsets, s);
  DeviceBuffer d_o_in = upload(o_in, FORGE_DTYPE_F32, s), d_l_in = upload(lse_in, FORGE_DTYPE_F32, s);
  DeviceBuffer d_o(out_states * dim * 4), d_l(out_states * 4);
  poison(d_o, s), poison(d_l, s);
  GB_FORGE(forge_cuda_merge_states_csr(rows, heads, dim, d_off.as<int64_t>(), m, d_o_in.as<float>(),
                                       d_l_in.as<float>(), d_o.as<float>(), d_l.as<float>(), ctx.stream.as_void()));
  const std::string name = "merge_states_csr rows=" + std::to_string(rows) + " M=" + std::to_string(m) +
                           " H=" + std::to_string(heads) + " D=" + std::to_string(dim);
  ctx.report.check(kSection, name, FORGE_DTYPE_F32, "o", compare(download(d_o, o_ref.size(), FORGE_DTYPE_F32, s), o_ref),
                   dtype_bound(FORGE_DTYPE_F32));
  ctx.report.check(kSection, name, FORGE_DTYPE_F32, "lse", compare(download(d_l, out_states, FORGE_DTYPE_F32, s), lse_ref),
                   dtype_bound(FORGE_DTYPE_F32));
}

void time_pairwise(Context& ctx) {
  const int64_t rows = by_mode<int64_t>(ctx.opt, 32768, 8192, 256);
  const int32_t heads = ctx.opt.smoke ? 4 : 32, dim = 128;
  const int64_t states = rows * heads, elems = states * dim;
  cudaStream_t s = ctx.stream.get();
  DeviceBuffer oa(elems * 4), ob(elems * 4), la(states * 4), lb(states * 4), o(elems * 4), l(states * 4);
  fill_normal(FORGE_DTYPE_F32, oa.get(), elems, ctx.rng.fork(), 0.f, 1.f, s);
  fill_normal(FORGE_DTYPE_F32, ob.get(), elems, ctx.rng.fork(), 0.f, 1.f, s);
  fill_normal(FORGE_DTYPE_F32, la.get(), states, ctx.rng.fork(), 0.f, 3.f, s);
  fill_normal(FORGE_DTYPE_F32, lb.get(), states, ctx.rng.fork(), 0.f, 3.f, s);
  poison(o, s), poison(l, s);
  const Timing t = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_merge_states(rows, heads, dim, oa.as<float>(), la.as<float>(), ob.as<float>(), lb.as<float>(),
                                     o.as<float>(), l.as<float>(), ctx.stream.as_void()));
  });
  const std::string shape = "rows=" + std::to_string(rows) + " H=" + std::to_string(heads) + " D=128";
  check_written(ctx, kSection, "merge_states " + shape, FORGE_DTYPE_F32, "o", o.get(), elems);
  check_written(ctx, kSection, "merge_states " + shape, FORGE_DTYPE_F32, "lse", l.get(), states);
  record_bytes(ctx, kSection, "merge_states", shape, FORGE_DTYPE_F32, t, 3.0 * 4 * (elems + states),
               "two states read + one written");
}

void time_csr(Context& ctx) {
  const int64_t rows = by_mode<int64_t>(ctx.opt, 16384, 4096, 128), per_row = 4, m = rows * per_row;
  const int32_t heads = ctx.opt.smoke ? 4 : 32, dim = 128;
  std::vector<int64_t> offsets(static_cast<size_t>(rows) + 1);
  for (int64_t r = 0; r <= rows; ++r) offsets[r] = r * per_row;
  cudaStream_t s = ctx.stream.get();
  DeviceBuffer d_off = upload_raw(offsets, s);
  DeviceBuffer o_in(m * heads * dim * 4), l_in(m * heads * 4), o(rows * heads * dim * 4), l(rows * heads * 4);
  fill_normal(FORGE_DTYPE_F32, o_in.get(), m * heads * dim, ctx.rng.fork(), 0.f, 1.f, s);
  fill_normal(FORGE_DTYPE_F32, l_in.get(), m * heads, ctx.rng.fork(), 0.f, 3.f, s);
  poison(o, s), poison(l, s);
  const Timing t = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_merge_states_csr(rows, heads, dim, d_off.as<int64_t>(), m, o_in.as<float>(), l_in.as<float>(),
                                         o.as<float>(), l.as<float>(), ctx.stream.as_void()));
  });
  const std::string shape = "rows=" + std::to_string(rows) + " x4 H=" + std::to_string(heads) + " D=128";
  check_written(ctx, kSection, "merge_states_csr " + shape, FORGE_DTYPE_F32, "o", o.get(), rows * heads * dim);
  record_bytes(ctx, kSection, "merge_states_csr", shape, FORGE_DTYPE_F32, t,
               4.0 * (m + rows) * heads * (dim + 1) + 8.0 * (rows + 1), "input states read + output written");
}

}  // namespace

void run_merge(Context& ctx) {
  // The checks keep their size with --smoke: the emulator runs them in well under a second.
  run_case(ctx, kSection, "check pairwise D=128", [&] { check_pairwise(ctx, 777, 8, 128, false); });
  run_case(ctx, kSection, "check pairwise D=64", [&] { check_pairwise(ctx, 301, 4, 64, false); });
  run_case(ctx, kSection, "check pairwise in place", [&] { check_pairwise(ctx, 257, 8, 128, true); });
  run_case(ctx, kSection, "check csr", [&] { check_csr(ctx, 500, 8, 128); });
  run_case(ctx, kSection, "time pairwise", [&] { time_pairwise(ctx); });
  run_case(ctx, kSection, "time csr", [&] { time_csr(ctx); });
}

}  // namespace gpubench
