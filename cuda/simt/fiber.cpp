#include "fiber.hpp"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
// forge_simt_switch(void** save_sp, void* load_sp): pushes the callee-saved registers and the
// floating-point control state, saves rsp, loads the other fiber's and pops its state.
extern "C" void forge_simt_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .p2align 4
  .globl forge_simt_switch
  .hidden forge_simt_switch
  .type forge_simt_switch, @function
forge_simt_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size forge_simt_switch, .-forge_simt_switch
)");
#endif

namespace forge::simt::detail {

void fiber_start(Fiber& fiber, unsigned char* stack, size_t bytes, void (*entry)()) {
#if defined(__x86_64__)
  // The first switch pops the initial state below and "returns" into entry with rsp = 8 mod 16, as
  // after a call; a zero return address above it ends backtraces.
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t{15};
  uintptr_t* ret = reinterpret_cast<uintptr_t*>(top - 16);
  ret[0] = reinterpret_cast<uintptr_t>(entry);
  ret[1] = 0;
  unsigned char* sp = reinterpret_cast<unsigned char*>(ret) - 56;  // control word slot + 6 registers
  std::memset(sp, 0, 56);
  const uint32_t mxcsr = 0x1F80;  // all exceptions masked, round to nearest
  const uint16_t fpcw = 0x037F;
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(sp + 4, &fpcw, 2);
  fiber.sp = sp;
#else
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = stack;
  fiber.context.uc_stack.ss_size = bytes;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, entry, 0);
#endif
}

void fiber_switch(Fiber& from, Fiber& to) {
#if defined(__x86_64__)
  forge_simt_switch(&from.sp, to.sp);
#else
  swapcontext(&from.context, &to.context);
#endif
}

}  // namespace forge::simt::detail
