// A small fixed pool for the CPU kernels. One parallel region runs at a time; a region started while
// another is running (a second AsyncWorker, a nested call) runs on its caller's thread instead of
// waiting, so concurrent callers never deadlock and always make progress.
#pragma once

#include <cstdint>
#include <functional>

namespace forge {

// Calls fn(begin, end) over [0, n) split into chunks of at least `grain` items, on up to
// num_threads() threads (the caller is one of them). Returns when every chunk is done. The first
// exception thrown by fn is rethrown on the caller after all chunks finish.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

int num_threads();
void set_num_threads(int n);  // n <= 0: default (FORGE_NUM_THREADS, else hardware count)

}  // namespace forge
