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
  uint64_t seed = 0;
  int warmup = 3;
  int reps = 20;
  std::string sections = "layout,merge,cispo,attention";
  std::string jsonl;  // append one JSON line here (empty: don't)
};

struct Context {
  Options opt;
  forge_cuda_device_props props{};
  int64_t l2_bytes = 0;
  Stream stream;
  Ceilings ceil;
  Report report;
  Rng rng{0};
};

// Runs one case, recording any exception as an error of `section` instead of ending the section.
void run_case(Context& ctx, const std::string& section, const std::string& name, const std::function<void()>& body);

// Timing rows with the achieved rate and its ratio to the matching ceiling. A rate above 105% of the
// ceiling is flagged: it means the work escaped the timed stream or the count is wrong.
void record_flops(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double flops, const std::string& counted);
void record_bytes(Context& ctx, const std::string& section, const std::string& name, const std::string& shape,
                  forge_dtype dtype, const Timing& t, double bytes, const std::string& counted);

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
