#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "error.hpp"

namespace forge {

namespace {

int default_thread_count() {
  if (const char* env = std::getenv("FORGE_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool inside_region = false;

// Workers sleep on `wake` until a region is posted (generation changes), then take chunks from the
// shared counter until none are left.
class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> region(region_mutex_);
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    grain = std::max<int64_t>(grain, 1);
    int64_t chunks = (n + grain - 1) / grain;
    std::unique_lock<std::mutex> region(region_mutex_, std::try_to_lock);
    if (chunks <= 1 || workers_.empty() || inside_region || !region.owns_lock()) {
      fn(0, n);
      return;
    }
    // Split into more chunks than threads so uneven work balances.
    int64_t target = static_cast<int64_t>(size()) * 4;
    int64_t step = std::max<int64_t>(grain, (n + target - 1) / target);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      step_ = step;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // A new worker must treat the generation current at its creation as seen: otherwise it would run a
  // stale pass on startup, and its extra decrement of active_ could land after a region's count was
  // set, leaving active_ at -1 and the caller waiting for 0 forever.
  void start(int threads) {
    stopping_ = false;
    uint64_t current = generation_;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, current] { loop(current); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void loop(uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stopping_) return;
      }
      work();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  void work() {
    inside_region = true;
    for (;;) {
      int64_t begin = next_.fetch_add(step_);
      if (begin >= n_) break;
      try {
        (*fn_)(begin, std::min(n_, begin + step_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    inside_region = false;
  }

  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one region at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, step_ = 1;
  std::atomic<int64_t> next_{0};
  int active_ = 0;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool instance(default_thread_count());
  return instance;
}

}  // namespace

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  pool().run(n, grain, fn);
}

int num_threads() { return pool().size(); }

void set_num_threads(int n) { pool().resize(n > 0 ? n : default_thread_count()); }

}  // namespace forge

extern "C" {

FORGE_API forge_status forge_set_num_threads(int n) {
  return forge::guarded("forge_set_num_threads", [&] {
    forge::set_num_threads(n);
    return FORGE_OK;
  });
}

FORGE_API int forge_get_num_threads(void) { return forge::num_threads(); }

}
