// The self-test's plumbing: checks that return why they failed, a seeded random stream, device
// buffers, and what the last launch reported. Host code only; included by selftest.cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace simt_selftest {

// A check returns "" when it holds, else why it does not.
using Outcome = std::string;

// The run's seed: FORGE_TEST_SEED when set (to replay a failure), else fresh.
inline uint64_t run_seed() {
  const char* env = std::getenv("FORGE_TEST_SEED");
  if (env != nullptr && *env != '\0') return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

// Each check draws from its own stream so that adding a check does not change another's inputs.
inline std::mt19937_64 stream_for(uint64_t seed, const std::string& check_name) {
  return std::mt19937_64(seed ^ std::hash<std::string>{}(check_name));
}

template <class... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

// Sets (or, with nullptr, unsets) an environment variable for a scope, then puts the caller's value
// back. The emulator reads its schedule (FORGE_SIMT_ORDER, FORGE_SIMT_CP_ASYNC) at every launch.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (had_) setenv(name_, old_.c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

// A cudaMalloc'ed array of T, freed on scope exit.
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr_), n * sizeof(T)) != cudaSuccess) ptr_ = nullptr;
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) { cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// What the last launch left in the error slot (consumed, as cudaGetLastError does).
struct LaunchReport {
  cudaError_t code;
  std::string message;
};
inline LaunchReport last_launch() {
  const cudaError_t code = cudaGetLastError();
  return {code, code == cudaSuccess ? std::string() : std::string(cudaGetErrorString(code))};
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// "" when `report` is the error `code` and its message holds every one of `parts`.
inline Outcome expect_error(const LaunchReport& report, cudaError_t code, const std::vector<std::string>& parts) {
  if (report.code != code)
    return cat("expected ", cudaGetErrorName(code), ", got ", cudaGetErrorName(report.code), " (", report.message, ")");
  for (const std::string& part : parts)
    if (!contains(report.message, part)) return cat("message \"", report.message, "\" does not mention \"", part, "\"");
  return "";
}

// "" when `report` is some error whose message holds every one of `parts`.
inline Outcome expect_failure(const LaunchReport& report, const std::vector<std::string>& parts) {
  if (report.code == cudaSuccess) return "the launch succeeded";
  return expect_error(report, report.code, parts);
}

// "" when the last launch succeeded.
inline Outcome expect_launched() {
  const LaunchReport report = last_launch();
  return report.code == cudaSuccess ? "" : cat("launch failed: ", cudaGetErrorName(report.code), " ", report.message);
}

}  // namespace simt_selftest
