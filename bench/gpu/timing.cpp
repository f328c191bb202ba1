#include "timing.hpp"

#include <algorithm>
#include <vector>

#include "bench_common.hpp"

namespace gpubench {

Timing time_events(cudaStream_t stream, int warmup, int reps, const std::function<void(int)>& body) {
  for (int i = 0; i < warmup; ++i) body(i);
  GB_CUDA(cudaStreamSynchronize(stream));

  std::vector<cudaEvent_t> events(2 * static_cast<size_t>(reps));
  for (cudaEvent_t& e : events) GB_CUDA(cudaEventCreate(&e));
  std::vector<double> ms(static_cast<size_t>(reps));
  try {
    for (int i = 0; i < reps; ++i) {
      GB_CUDA(cudaEventRecord(events[2 * i], stream));
      body(i);
      GB_CUDA(cudaEventRecord(events[2 * i + 1], stream));
    }
    GB_CUDA(cudaStreamSynchronize(stream));
    for (int i = 0; i < reps; ++i) {
      float t = 0;
      GB_CUDA(cudaEventElapsedTime(&t, events[2 * i], events[2 * i + 1]));
      ms[i] = t;
    }
  } catch (...) {
    for (cudaEvent_t e : events) cudaEventDestroy(e);
    throw;
  }
  for (cudaEvent_t e : events) cudaEventDestroy(e);

  std::sort(ms.begin(), ms.end());
  Timing t;
  t.reps = reps;
  t.min_ms = ms.front();
  t.max_ms = ms.back();
  t.median_ms = reps % 2 ? ms[reps / 2] : 0.5 * (ms[reps / 2 - 1] + ms[reps / 2]);
  return t;
}

}  // namespace gpubench
