// Timing with CUDA events on one stream: warm-up runs first (module load, lazy allocation, handle
// creation stay out of the numbers), then `reps` runs each bracketed by its own pair of events; the
// median is the figure reported. `body(rep)` gets the run index so a caller can rotate input sets.
#pragma once

#include <cuda_runtime.h>

#include <functional>

namespace gpubench {

struct Timing {
  double median_ms = 0;
  double min_ms = 0;
  double max_ms = 0;
  int reps = 0;
};

Timing time_events(cudaStream_t stream, int warmup, int reps, const std::function<void(int)>& body);

}  // namespace gpubench
