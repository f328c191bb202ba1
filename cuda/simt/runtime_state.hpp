// The emulated CUDA runtime's side of a launch: its error slot, shared-memory limits, and what a
// faulting address was.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace forge::simt::detail {

// Sets this host thread's last error; `detail` is what cudaGetErrorString(code) says until the next one.
void set_error(cudaError_t code, const std::string& detail);

// Dynamic shared memory a launch of `kernel` may ask for (48 KiB unless raised by cudaFuncSetAttribute).
size_t dynamic_shared_limit(const void* kernel);

// "invalid memory access: ..." naming the allocation `address` ran past, if any.
std::string describe_fault(uintptr_t address);

}  // namespace forge::simt::detail
