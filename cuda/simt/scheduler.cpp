// Runs a grid: blocks one after another, the threads of a block as cooperative fibers (fiber.hpp)
// switched at barriers and warp operations, with deadlock and memory-fault detection.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "runtime_state.hpp"
#include "state.hpp"

namespace forge::simt {
namespace detail {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreadsPerBlock = 1024;

thread_local LaunchState* tls_launch = nullptr;

// Fiber stacks with a guard page below each, reused across launches on this OS thread.
struct StackPool {
  std::vector<unsigned char*> stacks;
  unsigned char* get(size_t i) {
    while (stacks.size() <= i) {
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      mprotect(p, page, PROT_NONE);
      stacks.push_back(static_cast<unsigned char*>(p) + page);
    }
    return stacks[i];
  }
  ~StackPool() {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    for (unsigned char* s : stacks) munmap(s - page, kStackBytes + page);
  }
};
thread_local StackPool tls_stacks;

// The signal handler runs on its own stack so that a fiber's stack overflow is reported too.
thread_local std::vector<unsigned char> tls_signal_stack;

std::mutex launch_mutex;  // statics are shared memory: one grid at a time in the process
struct sigaction previous_segv, previous_bus;

void on_fault(int sig, siginfo_t* info, void* context) {
  LaunchState* st = tls_launch;
  if (st != nullptr && st->in_fiber) {
    st->fault_address = reinterpret_cast<uintptr_t>(info->si_addr);
    siglongjmp(st->fault_jump, 1);
  }
  // Not ours (another thread, or the host side): hand it to whoever had it before.
  const struct sigaction& prev = sig == SIGSEGV ? previous_segv : previous_bus;
  if (prev.sa_flags & SA_SIGINFO) {
    prev.sa_sigaction(sig, info, context);
  } else if (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN) {
    signal(sig, SIG_DFL);
    raise(sig);
  } else {
    prev.sa_handler(sig);
  }
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
  });
  if (tls_signal_stack.empty()) {
    tls_signal_stack.resize(64 * 1024);
    stack_t ss{};
    ss.ss_sp = tls_signal_stack.data();
    ss.ss_size = tls_signal_stack.size();
    sigaltstack(&ss, nullptr);
  }
}

void fiber_entry() {
  LaunchState& st = *tls_launch;
  (*st.body)();
  Thread& t = *st.current;
  Block& b = st.current_block;
  t.done = true;
  --b.live;
  ++b.warps[t.warp].exited;
  ++st.progress;
  // Exited threads count as arrived at the block barrier: release it if they were the last.
  if (b.arrived > 0 && b.arrived == b.live) {
    b.result[b.generation & 1] = b.all_true;
    b.arrived = 0;
    ++b.generation;
  }
  fiber_switch(t.fiber, st.scheduler);  // never resumed
}

std::string format3(const char* label, unsigned x, unsigned y, unsigned z) {
  return std::string(label) + " (" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

// What every live thread waits in, for a deadlock report: "warp 0: 31 ldmatrix.x4, 1 exited; ...".
std::string describe_waits(const Block& b) {
  std::string out;
  for (size_t w = 0; w < b.warps.size(); ++w) {
    std::vector<std::pair<std::string, int>> counts;
    for (const Thread& t : b.threads) {
      if (t.warp != w) continue;
      const std::string what = t.done ? "exited" : (t.waiting_in ? t.waiting_in : "running");
      bool found = false;
      for (auto& c : counts)
        if (c.first == what) ++c.second, found = true;
      if (!found) counts.emplace_back(what, 1);
    }
    out += (w ? "; warp " : "warp ") + std::to_string(w) + ":";
    for (size_t i = 0; i < counts.size(); ++i)
      out += (i ? ", " : " ") + std::to_string(counts[i].second) + " " + counts[i].first;
  }
  return out;
}

// How a launch is scheduled. Between two barriers a fiber runs until its next one, so a missing
// barrier between warps that write and warps that read shows up in one thread order or the other;
// and cp.async copies landing late (at wait_group) catch reads before the wait, landing at once
// catches a refill of a buffer other warps still read.
//   FORGE_SIMT_ORDER: forward (default) | reverse | alternate (every other launch reversed)
//   FORGE_SIMT_CP_ASYNC: deferred (default) | eager | alternate (every other pair of launches eager)
struct Schedule {
  bool reverse, eager_copies;
};
Schedule next_schedule() {
  static unsigned launches = 0;  // under launch_mutex
  const unsigned k = launches++;
  auto pick = [](const char* env, const char* on, unsigned alternate_bit) {
    const char* v = std::getenv(env);
    if (v == nullptr) return false;
    if (std::strcmp(v, "alternate") == 0) return alternate_bit != 0;
    return std::strcmp(v, on) == 0;
  };
  return Schedule{pick("FORGE_SIMT_ORDER", "reverse", k & 1u), pick("FORGE_SIMT_CP_ASYNC", "eager", k & 2u)};
}

// Runs one block to completion; returns false when the launch failed (st.error is set).
bool run_block(LaunchState& st, uint3 block_idx, bool reverse) {
  Block& b = st.current_block;
  const unsigned n = st.block.x * st.block.y * st.block.z;
  b.threads.assign(n, Thread{});
  b.warps.assign((n + kWarpSize - 1) / kWarpSize, Warp{});
  b.live = n;
  b.arrived = 0;
  b.generation = 0;
  b.all_true = 1;
  if (st.shared_bytes) std::memset(b.dynamic_shared, 0xFF, st.shared_bytes);
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    t.linear = i;
    t.lane = i % kWarpSize;
    t.warp = i / kWarpSize;
    t.coords.thread_idx = uint3{i % st.block.x, (i / st.block.x) % st.block.y, i / (st.block.x * st.block.y)};
    t.coords.block_idx = block_idx;
    t.coords.block_dim = st.block;
    t.coords.grid_dim = st.grid;
    ++b.warps[t.warp].lanes;
    fiber_start(t.fiber, tls_stacks.get(i), kStackBytes, fiber_entry);
  }
  if (sigsetjmp(st.fault_jump, 1) != 0) {
    st.in_fiber = false;
    st.error = describe_fault(st.fault_address) + " in " + st.kernel + ", " + where();
    st.error_code = cudaErrorIllegalAddress;
    return false;
  }
  // Warp by warp: a warp's lanes run until none of them can go on (they wait at a block barrier or
  // have exited) before the next warp runs, so warps drift as far apart as barriers allow and a
  // missing one between a warp that writes shared memory and one that reads it is seen.
  const unsigned warps = static_cast<unsigned>(b.warps.size());
  while (b.live > 0) {
    const uint64_t before = st.progress;
    for (unsigned wi = 0; wi < warps; ++wi) {
      const unsigned w = reverse ? warps - 1 - wi : wi;
      const unsigned first = w * kWarpSize, last = std::min(n, first + kWarpSize);
      for (uint64_t warp_before = ~uint64_t{0}; warp_before != st.progress;) {
        warp_before = st.progress;
        for (unsigned k = first; k < last; ++k) {
          Thread& t = b.threads[reverse ? first + last - 1 - k : k];
          if (t.done) continue;
          st.current = &t;
          st.in_fiber = true;
          fiber_switch(st.scheduler, t.fiber);
          st.in_fiber = false;
          if (!st.error.empty()) return false;
        }
      }
    }
    if (b.live > 0 && st.progress == before) {
      st.error = std::string("deadlock in ") + st.kernel + ", " + format3("block", block_idx.x, block_idx.y, block_idx.z) +
                 ": no thread can go on (" + describe_waits(b) + ")";
      return false;
    }
  }
  return true;
}

}  // namespace

LaunchState& state() { return *tls_launch; }

std::string where() {
  const Coords& c = tls_launch->current->coords;
  return format3("block", c.block_idx.x, c.block_idx.y, c.block_idx.z) + " " +
         format3("thread", c.thread_idx.x, c.thread_idx.y, c.thread_idx.z);
}

void fail(const std::string& message) {
  LaunchState& st = *tls_launch;
  if (st.error.empty()) st.error = message + " (in " + st.kernel + ", " + where() + ")";
  for (;;) fiber_switch(st.current->fiber, st.scheduler);  // never resumed: the launch stops
}

void wait_until(const char* op, const std::function<bool()>& ready) {
  LaunchState& st = *tls_launch;
  Thread& t = *st.current;
  while (!ready()) {
    t.waiting_in = op;
    fiber_switch(t.fiber, st.scheduler);
  }
  t.waiting_in = nullptr;
}

}  // namespace detail

using detail::LaunchState;

const Coords& coords() { return detail::tls_launch->current->coords; }

unsigned char* dynamic_shared() { return detail::tls_launch->current_block.dynamic_shared; }

int syncthreads_and(int predicate) {
  LaunchState& st = detail::state();
  detail::Block& b = st.current_block;
  const uint64_t generation = b.generation;
  if (b.arrived == 0) b.all_true = 1;
  b.all_true &= predicate != 0;
  ++b.arrived;
  ++st.progress;
  if (b.arrived == b.live) {
    b.result[generation & 1] = b.all_true;
    b.arrived = 0;
    ++b.generation;
  } else {
    detail::wait_until("__syncthreads", [&] { return b.generation != generation; });
  }
  return b.result[generation & 1];
}

void launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, const std::function<void()>& body) {
  const unsigned threads = block.x * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > detail::kMaxThreadsPerBlock ||
      grid.y > 65535 || grid.z > 65535) {
    detail::set_error(cudaErrorInvalidConfiguration,
                      std::string(kernel_name) + ": invalid launch configuration grid (" + std::to_string(grid.x) +
                          "," + std::to_string(grid.y) + "," + std::to_string(grid.z) + ") block (" +
                          std::to_string(block.x) + "," + std::to_string(block.y) + "," + std::to_string(block.z) + ")");
    return;
  }
  const size_t limit = detail::dynamic_shared_limit(kernel);
  if (shared_bytes > limit) {
    detail::set_error(cudaErrorInvalidValue, std::string(kernel_name) + ": " + std::to_string(shared_bytes) +
                                                 " bytes of dynamic shared memory, over the limit of " +
                                                 std::to_string(limit) + " for this kernel");
    return;
  }
  std::lock_guard<std::mutex> lock(detail::launch_mutex);
  detail::install_fault_handler();
  LaunchState st;
  st.kernel = kernel_name;
  st.grid = grid;
  st.block = block;
  st.shared_bytes = shared_bytes;
  st.body = &body;
  std::vector<unsigned char> shared(shared_bytes + 16);
  st.current_block.dynamic_shared = shared.data() + (16 - reinterpret_cast<uintptr_t>(shared.data()) % 16) % 16;
  detail::tls_launch = &st;
  const detail::Schedule schedule = detail::next_schedule();
  const bool reverse = schedule.reverse;
  st.eager_copies = schedule.eager_copies;
  const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
  bool ok = true;
  for (uint64_t k = 0; k < blocks && ok; ++k) {
    const uint64_t i = reverse ? blocks - 1 - k : k;
    const uint3 idx{static_cast<unsigned>(i % grid.x), static_cast<unsigned>((i / grid.x) % grid.y),
                    static_cast<unsigned>(i / (uint64_t{grid.x} * grid.y))};
    ok = detail::run_block(st, idx, reverse);
  }
  detail::tls_launch = nullptr;
  if (!ok) detail::set_error(st.error_code, st.error);
  (void)stream;  // one stream: work runs in call order, at the call
}

}  // namespace forge::simt
