// Cooperative fibers for the emulator's threads: a stack and a saved stack pointer. On x86-64 the
// switch is a few instructions (callee-saved registers, MXCSR and the x87 control word), elsewhere
// ucontext, which also saves the signal mask with two system calls per switch (10x slower).
#pragma once

#include <ucontext.h>

#include <cstddef>

namespace forge::simt::detail {

struct Fiber {
  void* sp = nullptr;  // x86-64: the saved stack pointer
  ucontext_t context{};  // other targets
};

// Makes `fiber` start `entry` (which must never return) on [stack, stack + bytes) at its first switch.
void fiber_start(Fiber& fiber, unsigned char* stack, size_t bytes, void (*entry)());

// Saves the running fiber into `from` and resumes `to`.
void fiber_switch(Fiber& from, Fiber& to);

}  // namespace forge::simt::detail
