// Internal state of the emulator: the launch running on this OS thread, its block, warps and threads.
#pragma once

#include <csetjmp>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "fiber.hpp"
#include "simt.hpp"

namespace forge::simt::detail {

constexpr unsigned kWarpSize = 32;
constexpr size_t kExchangeBytes = kSlotBytes;  // per lane and warp operation

struct PendingCopy {
  void* dst;
  const void* src;
  bool valid;
};

struct Thread {
  Coords coords{};
  unsigned linear = 0, lane = 0, warp = 0;
  Fiber fiber;
  bool done = false;
  const char* waiting_in = nullptr;  // the operation this thread waits in (for deadlock reports)
  std::vector<PendingCopy> uncommitted;               // cp.async since the last commit
  std::deque<std::vector<PendingCopy>> committed;     // groups not yet waited for, oldest first
};

struct Warp {
  unsigned lanes = 0, exited = 0, arrived = 0;
  uint64_t generation = 0;
  const char* op = nullptr;  // the operation of the current generation
  // Two buffers: generation g writes buffer g & 1, so a lane still reading g's results is never
  // overwritten before every lane has arrived at g + 1.
  alignas(16) unsigned char slots[2][kWarpSize * kExchangeBytes];
};

struct Block {
  std::vector<Thread> threads;
  std::vector<Warp> warps;
  unsigned live = 0, arrived = 0;
  uint64_t generation = 0;
  int all_true = 1;
  int result[2] = {1, 1};
  unsigned char* dynamic_shared = nullptr;
};

struct LaunchState {
  const char* kernel = "";
  dim3 grid, block;
  size_t shared_bytes = 0;
  const std::function<void()>* body = nullptr;
  Block current_block;
  Thread* current = nullptr;
  Fiber scheduler;
  uint64_t progress = 0;  // counts arrivals and exits: no change over a whole pass means deadlock
  std::string error;
  cudaError_t error_code = cudaErrorLaunchFailure;  // what `error` reports as
  // Set by the fault handler before it jumps back to the scheduler.
  sigjmp_buf fault_jump;
  bool in_fiber = false;
  bool eager_copies = false;  // cp.async lands at issue instead of at wait_group
  volatile uintptr_t fault_address = 0;
};

// The launch running on this OS thread (only valid inside forge::simt::launch).
LaunchState& state();

// Records `message` as the launch's error and never returns (the launch stops at this thread).
[[noreturn]] void fail(const std::string& message);

// Yields to the other threads of the block until `ready()` holds.
void wait_until(const char* op, const std::function<bool()>& ready);

// "block (x,y,z) thread (x,y,z)" of the running thread.
std::string where();

}  // namespace forge::simt::detail
