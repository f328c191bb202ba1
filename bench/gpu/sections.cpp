#include "sections.hpp"

#include <exception>

#include "device_fill.hpp"

namespace gpubench {

void run_case(Context& ctx, const std::string& section, const std::string& name, const std::function<void()>& body) {
  std::fprintf(stderr, "[gpu-bench] %s: %s\n", section.c_str(), name.c_str());
  try {
    body();
  } catch (const std::exception& e) {
    ctx.report.error(section, name + ": " + e.what());
  }
}

static void record(Context& ctx, TimeRow row, double ceiling) {
  if (ctx.emulator) {
    row.emulated = true;
    ctx.report.time(std::move(row));
    return;
  }
  row.ratio = ceiling > 0 ? row.value / ceiling : 0;
  if (ceiling > 0 && row.ratio > 1.05)
    row.flag = "above the measured ceiling: the work escaped the timed stream, or the count is wrong";
  ctx.report.time(std::move(row));
}

void record_flops(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double flops, const std::string& counted) {
  TimeRow row{section, name, shape, dtype_name(dtype), t, "TFLOP/s", flops / (t.median_ms * 1e-3) / 1e12, "gemm",
              0, counted, ""};
  record(ctx, std::move(row), ctx.ceil.gemm_tflops);
}

void record_bytes(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double bytes, const std::string& counted) {
  TimeRow row{section, name, shape, dtype_name(dtype), t, "GB/s", bytes / (t.median_ms * 1e-3) / 1e9, "copy",
              0, counted, ""};
  record(ctx, std::move(row), ctx.ceil.copy_gbps);
}

void record_target(Context& ctx, const std::string& name, const std::string& goal, double threshold) {
  if (ctx.emulator || ctx.opt.smoke) {
    ctx.report.note("target " + name + " (" + goal + "): not judged " +
                    (ctx.emulator ? "on the CPU emulator" : "on --smoke's tiny problems"));
    return;
  }
  const double ratio = ctx.report.times().back().ratio;
  ctx.report.target({name, goal, ratio, threshold, ratio >= threshold});
}

bool check_written(Context& ctx, const std::string& section, const std::string& name, forge_dtype dtype,
                   const std::string& output, const void* data, int64_t n) {
  Comparison cmp;
  cmp.count = n;
  cmp.non_finite = count_non_finite(dtype, data, n, ctx.stream.get());
  return ctx.report.check(section, name + " (all written)", dtype, output, cmp, 0.0);
}

Timing time_it(Context& ctx, const std::function<void(int)>& body) {
  return time_events(ctx.stream.get(), ctx.opt.warmup, ctx.opt.reps, body);
}

}  // namespace gpubench
