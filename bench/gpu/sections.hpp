// The state one bench process shares between its sections, and the sections themselves. Each section
// checks its kernels against the CPU kernels on small fresh random problems, then times the large
// problems; a failure inside one case is recorded and the section goes on with the next case.
#pragma once

#include <forge/forge.h>

#include <cstdint>
#include <functional>
#include <string>

#include "bench_common.hpp"
#include "ceilings.hpp"
#include "host_data.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace gpubench {

struct Options {
  bool quick = false;
  bool smoke = false;  // tiny problems everywhere, 1 warm-up, few reps: the emulator (CI), or a first look
  uint64_t seed = 0;
  int warmup = 3;
  int reps = 20;
  std::string sections = "layout,merge,cispo,attention";
  std::string jsonl;  // append one JSON line here (empty: don't)
};

// A problem size by run mode: the full run, --quick, --smoke.
template <class T>
T by_mode(const Options& opt, T full, T quick, T smoke) {
  return opt.smoke ? smoke : opt.quick ? quick : full;
}

struct Context {
  Options opt;
  forge_cuda_device_props props{};
  bool emulator = false;  // the device is the CPU emulator (cuda/simt/): its times are host times
  int64_t l2_bytes = 0;
  Stream stream;
  Ceilings ceil;
  Report report;
  Rng rng{0};
};

// Runs one case, recording any exception as an error of `section` instead of ending the section.
void run_case(Context& ctx, const std::string& section, const std::string& name, const std::function<void()>& body);

// Timing rows with the achieved rate and its ratio to the matching ceiling. A rate above 105% of the
// ceiling is flagged: it means the work escaped the timed stream or the count is wrong. On the emulator
// a row is marked emulated and gets no ratio: host time says nothing about a GPU.
void record_flops(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double flops, const std::string& counted);
void record_bytes(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double bytes, const std::string& counted);

// A target judged on the ratio of the timing row recorded last; on the emulator or with --smoke only
// noted as not judged (host time, or a problem far from the target's size).
void record_target(Context& ctx, const std::string& name, const std::string& goal, double threshold);

// After a run into poisoned outputs at a size too large for the CPU check: every element written and
// finite.
bool check_written(Context& ctx, const std::string& section, const std::string& name, forge_dtype dtype,
                   const std::string& output, const void* data, int64_t n);

Timing time_it(Context& ctx, const std::function<void(int)>& body);

void run_layout(Context& ctx);     // forge_cuda_convert, gather_to_samples, scatter_from_samples
void run_merge(Context& ctx);      // forge_cuda_merge_states, forge_cuda_merge_states_csr
void run_cispo(Context& ctx);      // forge_cuda_cispo_loss
void run_attention(Context& ctx);  // forge_cuda_tree_attention_forward / backward

}  // namespace gpubench
