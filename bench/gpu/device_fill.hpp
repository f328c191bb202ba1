// Device-side helpers for the large timing problems, whose inputs are too big to draw on the host in
// the time the run has: random fills (a counter-based hash, so any size fills in one pass) and a count
// of non-finite elements, which after a run on poisoned outputs says whether every element was written.
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>

namespace gpubench {

// dst[i] = mean + std * N(0, 1) drawn from (seed, i), stored in `dtype`.
void fill_normal(forge_dtype dtype, void* dst, int64_t n, uint64_t seed, float mean, float std,
                 cudaStream_t stream);

// Number of NaN / Inf elements among the n `dtype` values at src. Waits for the stream.
int64_t count_non_finite(forge_dtype dtype, const void* src, int64_t n, cudaStream_t stream);

}  // namespace gpubench
