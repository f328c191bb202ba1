// The per-term policy-gradient formula and statistics on the device: the same code as the CPU kernel
// (native/src/loss/policy_term_math.hpp, compiled __host__ __device__ here).
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include "loss/policy_term_math.hpp"  // native/src is an include directory of the CUDA build

namespace forge {
namespace cuda {
namespace cispo {

using loss::PolicyParams;  // resolved on the host by loss::resolve_policy_options
using loss::policy_term;
using loss::PolicySums;
using loss::TermValue;

// Per-block statistics, reduced in float64 / integers (deterministic for a given launch shape).
using Totals = loss::PolicySums<unsigned long long>;

}  // namespace cispo
}  // namespace cuda
}  // namespace forge
