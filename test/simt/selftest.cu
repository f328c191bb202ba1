// Self-test of forge-simt, the CPU emulator of the CUDA kernels (cuda/simt/): small kernels compiled
// for the emulator only, each checking one thing the emulator promises (simt.hpp) against an
// independent answer. Prints "ok <name>" or "FAIL <name>: <why>" per check and exits 1 if any failed.
//   forge_simt_selftest [substring]   runs the checks whose name contains substring
// Inputs are drawn from FORGE_TEST_SEED when set (to replay a failure), else from a fresh seed.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "harness.hpp"
#include "mma_checks.cuh"
#include "runtime_checks.cuh"
#include "warp_checks.cuh"

namespace simt_selftest {
namespace {

constexpr unsigned kProbeBlocks = 2, kProbeThreads = 64;

// ticket[thread] = the order in which the threads of the grid first ran.
__global__ void order_probe_kernel(int* counter, int* ticket) {
  ticket[blockIdx.x * blockDim.x + threadIdx.x] = atomicAdd(counter, 1);
}

// "" when the grid ran in index order (or, reversed, from the last thread of the last block down).
Outcome probe_order(bool reversed) {
  const unsigned n = kProbeBlocks * kProbeThreads;
  DeviceArray<int> counter(std::vector<int>{0}), ticket(n);
  FORGE_LAUNCH(dim3(kProbeBlocks), dim3(kProbeThreads), 0, nullptr, order_probe_kernel)(counter.get(), ticket.get());
  if (Outcome launched = expect_launched(); !launched.empty()) return launched;
  const std::vector<int> got = ticket.download();
  for (unsigned i = 0; i < n; ++i) {
    const int want = static_cast<int>(reversed ? n - 1 - i : i);
    if (got[i] != want) return cat("thread ", i, " of the grid ran ", got[i], "th, want ", want, "th");
  }
  return "";
}

// Check 9. Fails when FORGE_SIMT_ORDER=reverse is not applied at the next launch (the probe), or when
// any product of check 1 differs, by a single bit, between the two orders or from its reference.
Outcome check_reverse_order(uint64_t seed) {
  std::vector<std::vector<float>> forward;
  {
    ScopedEnv order("FORGE_SIMT_ORDER", nullptr);
    if (Outcome e = probe_order(false); !e.empty()) return "default order: " + e;
    for (const MmaProduct& p : mma_products()) forward.push_back(p.run(seed, p.name).c);
  }
  ScopedEnv order("FORGE_SIMT_ORDER", "reverse");
  if (Outcome e = probe_order(true); !e.empty()) return "FORGE_SIMT_ORDER=reverse: " + e;
  const std::vector<MmaProduct> products = mma_products();
  for (size_t i = 0; i < products.size(); ++i) {
    const Product reversed = products[i].run(seed, products[i].name);
    if (!reversed.verdict.empty()) return products[i].name + " reversed: " + reversed.verdict;
    if (reversed.c != forward[i]) return products[i].name + ": the two orders give different results";
  }
  return "";
}

struct Check {
  std::string name;
  std::function<Outcome(uint64_t seed)> run;
};

std::vector<Check> all_checks() {
  std::vector<Check> checks;
  for (const MmaProduct& p : mma_products())  // check 1
    checks.push_back({p.name, [p](uint64_t seed) { return p.run(seed, p.name).verdict; }});
  checks.push_back({"warp.shfl_xor", check_shuffle});  // check 2
  checks.push_back({"warp.ballot", check_ballot});
  checks.push_back({"block.syncthreads_and", check_syncthreads_and});
  checks.push_back({"detect.deadlock", check_deadlock});                        // check 3
  checks.push_back({"detect.divergent_warp_ops", check_divergent_collectives});  // check 4
  checks.push_back({"detect.out_of_bounds", check_out_of_bounds});              // check 5
  checks.push_back({"cp_async.deferred", check_cp_async});                      // check 6
  checks.push_back({"launch.limits", check_launch_limits});                     // check 7
  checks.push_back({"memory.device", check_device_memory});                     // check 8
  checks.push_back({"order.reverse", check_reverse_order});                     // check 9
  return checks;
}

}  // namespace
}  // namespace simt_selftest

int main(int argc, char** argv) {
  using namespace simt_selftest;
  const uint64_t seed = run_seed();
  const std::string only = argc > 1 ? argv[1] : "";
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  int ran = 0, failed = 0;
  for (const Check& check : all_checks()) {
    if (!contains(check.name, only)) continue;
    cudaGetLastError();  // each check starts with a clean error slot
    Outcome why;
    try {
      why = check.run(seed);
    } catch (const std::exception& e) {
      why = cat("exception: ", e.what());
    }
    ++ran;
    if (why.empty()) {
      std::printf("ok %s\n", check.name.c_str());
    } else {
      ++failed;
      std::printf("FAIL %s: %s\n", check.name.c_str(), why.c_str());
    }
    std::fflush(stdout);
  }
  if (ran == 0) {
    std::printf("FAIL no check matches \"%s\"\n", only.c_str());
    return 1;
  }
  if (failed)
    std::printf("%d of %d checks failed (seed %llu: rerun with FORGE_TEST_SEED=%llu)\n", failed, ran,
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  return failed ? 1 : 0;
}
