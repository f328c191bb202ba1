// Data movement kernels: dtype conversion, node -> sample gather, sample -> node scatter (contract 1).
// Checks: conversion against host round-to-nearest-even; gather must be an exact copy; scatter sums
// within the f32 bound. Timing counts one read and one write of every element moved.
#include <cmath>
#include <cstring>

#include "device_fill.hpp"
#include "sections.hpp"
#include "trees.hpp"

namespace gpubench {
namespace {

const char* kSection = "layout";

// Values spanning the ranges a conversion must get right: normal data, tiny values (f16 subnormals),
// large values (bf16 keeps them, f16 up to its max), exact zeros and negative zeros.
std::vector<float> conversion_inputs(Rng& rng, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const double g = rng.gauss();
    switch (i % 8) {
      case 0: v[i] = static_cast<float>(g * 1e-6); break;
      case 1: v[i] = static_cast<float>(g * 3e3); break;
      case 2: v[i] = i % 16 == 2 ? 0.0f : -0.0f; break;
      default: v[i] = static_cast<float>(g); break;
    }
  }
  return v;
}

void check_convert(Context& ctx, forge_dtype from, forge_dtype to) {
  const size_t n = 100003;  // odd: vector tails
  std::vector<float> src = conversion_inputs(ctx.rng, n);
  round_to(src, from);  // what the source dtype holds
  std::vector<float> expect = src;
  round_to(expect, to);
  DeviceBuffer d_src = upload(src, from, ctx.stream.get());
  DeviceBuffer d_dst(n * forge_dtype_size(to));
  poison(d_dst, ctx.stream.get());
  GB_FORGE(forge_cuda_convert(static_cast<int64_t>(n), from, d_src.get(), to, d_dst.get(), ctx.stream.as_void()));
  const std::vector<float> got = download(d_dst, n, to, ctx.stream.get());
  int64_t differ = 0;
  for (size_t i = 0; i < n; ++i) differ += std::memcmp(&got[i], &expect[i], 4) != 0;
  if (differ)
    ctx.report.note(std::string("convert ") + dtype_name(from) + "->" + dtype_name(to) + ": " +
                    std::to_string(differ) + " of " + std::to_string(n) + " values differ from round-to-nearest-even");
  ctx.report.check(kSection, std::string("convert ") + dtype_name(from) + "->" + dtype_name(to), to, "out",
                   compare(got, expect), dtype_bound(to));
}

void check_gather_scatter(Context& ctx, int64_t channels) {
  const Tree tree = random_fork_tree(1500, ctx.rng);
  const int64_t n = tree.num_nodes, t = tree.input_tokens;
  const std::string shape = "N=" + std::to_string(n) + " T=" + std::to_string(t) + " C=" + std::to_string(channels);
  DeviceBuffer d_node_of = upload_raw(tree.node_of, ctx.stream.get());

  for (forge_dtype dt : {FORGE_DTYPE_F32, FORGE_DTYPE_BF16, FORGE_DTYPE_F16}) {
    const std::vector<float> values = random_normal(ctx.rng, static_cast<size_t>(n * channels), 1.f, dt);
    std::vector<float> expect(static_cast<size_t>(t * channels));
    GB_FORGE(forge_gather_to_samples(values.data(), n, channels, tree.node_of.data(), t, expect.data()));
    DeviceBuffer d_values = upload(values, dt, ctx.stream.get());
    DeviceBuffer d_out(static_cast<size_t>(t * channels) * forge_dtype_size(dt));
    poison(d_out, ctx.stream.get());
    GB_FORGE(forge_cuda_gather_to_samples(dt, d_values.get(), n, channels, d_node_of.as<int32_t>(), t, d_out.get(),
                                          ctx.stream.as_void()));
    // A gather is a copy: exact.
    ctx.report.check(kSection, "gather_to_samples " + shape, dt, "out",
                     compare(download(d_out, expect.size(), dt, ctx.stream.get()), expect), 0.0);
  }

  const std::vector<float> samples = random_normal(ctx.rng, static_cast<size_t>(t * channels), 1.f, FORGE_DTYPE_F32);
  std::vector<float> expect(static_cast<size_t>(n * channels));
  GB_FORGE(forge_scatter_from_samples(samples.data(), t, channels, tree.node_of.data(), n, expect.data()));
  DeviceBuffer d_samples = upload(samples, FORGE_DTYPE_F32, ctx.stream.get());
  DeviceBuffer d_out(expect.size() * 4);
  poison(d_out, ctx.stream.get());
  GB_FORGE(forge_cuda_scatter_from_samples(d_samples.as<float>(), t, channels, d_node_of.as<int32_t>(), n,
                                           d_out.as<float>(), ctx.stream.as_void()));
  ctx.report.check(kSection, "scatter_from_samples " + shape, FORGE_DTYPE_F32, "out",
                   compare(download(d_out, expect.size(), FORGE_DTYPE_F32, ctx.stream.get()), expect),
                   dtype_bound(FORGE_DTYPE_F32));
}

void time_convert(Context& ctx) {
  const int64_t n = by_mode(ctx.opt, int64_t{256} << 20, int64_t{64} << 20, int64_t{1} << 16);
  DeviceBuffer src(static_cast<size_t>(n) * 4), dst(static_cast<size_t>(n) * 2);
  fill_normal(FORGE_DTYPE_F32, src.get(), n, ctx.rng.fork(), 0.f, 1.f, ctx.stream.get());
  poison(dst, ctx.stream.get());
  const Timing t = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_convert(n, FORGE_DTYPE_F32, src.get(), FORGE_DTYPE_BF16, dst.get(), ctx.stream.as_void()));
  });
  check_written(ctx, kSection, "convert f32->bf16 n=" + std::to_string(n), FORGE_DTYPE_BF16, "out", dst.get(), n);
  record_bytes(ctx, kSection, "convert f32->bf16", "n=" + std::to_string(n), FORGE_DTYPE_BF16, t, 6.0 * n,
               "4 B read + 2 B written per element");
}

void time_gather_scatter(Context& ctx) {
  const AgentTreeSpec spec =
      by_mode(ctx.opt, AgentTreeSpec{32768, 4096, 16, 8}, AgentTreeSpec{8192, 1024, 16, 4}, AgentTreeSpec{512, 64, 4, 3});
  const Tree tree = agent_tree(spec, ctx.rng);
  const int64_t n = tree.num_nodes, t = tree.input_tokens, c = ctx.opt.smoke ? 64 : 256;
  const std::string shape = "N=" + std::to_string(n) + " T=" + std::to_string(t) + " C=" + std::to_string(c);
  DeviceBuffer d_node_of = upload_raw(tree.node_of, ctx.stream.get());

  for (forge_dtype dt : {FORGE_DTYPE_F32, FORGE_DTYPE_BF16}) {
    const size_t elt = forge_dtype_size(dt);
    DeviceBuffer values(static_cast<size_t>(n * c) * elt), out(static_cast<size_t>(t * c) * elt);
    fill_normal(dt, values.get(), n * c, ctx.rng.fork(), 0.f, 1.f, ctx.stream.get());
    poison(out, ctx.stream.get());
    const Timing time = time_it(ctx, [&](int) {
      GB_FORGE(forge_cuda_gather_to_samples(dt, values.get(), n, c, d_node_of.as<int32_t>(), t, out.get(),
                                            ctx.stream.as_void()));
    });
    check_written(ctx, kSection, "gather_to_samples " + shape, dt, "out", out.get(), t * c);
    record_bytes(ctx, kSection, "gather_to_samples", shape, dt, time, 2.0 * t * c * elt,
                 "one read + one write per output element");
  }

  DeviceBuffer samples(static_cast<size_t>(t * c) * 4), out(static_cast<size_t>(n * c) * 4);
  fill_normal(FORGE_DTYPE_F32, samples.get(), t * c, ctx.rng.fork(), 0.f, 1.f, ctx.stream.get());
  poison(out, ctx.stream.get());
  const Timing time = time_it(ctx, [&](int) {
    GB_FORGE(forge_cuda_scatter_from_samples(samples.as<float>(), t, c, d_node_of.as<int32_t>(), n, out.as<float>(),
                                             ctx.stream.as_void()));
  });
  check_written(ctx, kSection, "scatter_from_samples " + shape, FORGE_DTYPE_F32, "out", out.get(), n * c);
  record_bytes(ctx, kSection, "scatter_from_samples", shape, FORGE_DTYPE_F32, time, 4.0 * (t * c + n * c),
               "samples read once + nodes written once");
}

}  // namespace

void run_layout(Context& ctx) {
  // The checks keep their size with --smoke: the emulator runs them in well under a second.
  const forge_dtype pairs[][2] = {{FORGE_DTYPE_F32, FORGE_DTYPE_BF16}, {FORGE_DTYPE_F32, FORGE_DTYPE_F16},
                                  {FORGE_DTYPE_BF16, FORGE_DTYPE_F32}, {FORGE_DTYPE_F16, FORGE_DTYPE_F32},
                                  {FORGE_DTYPE_BF16, FORGE_DTYPE_F16}};
  for (const auto& p : pairs)
    run_case(ctx, kSection, std::string("check convert ") + dtype_name(p[0]) + "->" + dtype_name(p[1]),
             [&] { check_convert(ctx, p[0], p[1]); });
  run_case(ctx, kSection, "check gather/scatter C=37", [&] { check_gather_scatter(ctx, 37); });
  run_case(ctx, kSection, "check gather/scatter C=128", [&] { check_gather_scatter(ctx, 128); });
  run_case(ctx, kSection, "time convert", [&] { time_convert(ctx); });
  run_case(ctx, kSection, "time gather/scatter", [&] { time_gather_scatter(ctx); });
}

}  // namespace gpubench
