#include "ceilings.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "device_fill.hpp"

namespace gpubench {
namespace {

// The four cuBLAS entry points the GEMM ceiling needs, with the C types their enums have. Values from
// cublas_api.h / library_types.h: CUBLAS_OP_N 0, CUDA_R_16BF 14, CUBLAS_COMPUTE_32F 68,
// CUBLAS_GEMM_DEFAULT -1; status 0 is CUBLAS_STATUS_SUCCESS.
using CublasCreate = int (*)(void** handle);
using CublasDestroy = int (*)(void* handle);
using CublasSetStream = int (*)(void* handle, cudaStream_t stream);
using CublasGemmEx = int (*)(void* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                             const void* a, int a_type, int lda, const void* b, int b_type, int ldb,
                             const void* beta, void* c, int c_type, int ldc, int compute_type, int algo);
constexpr int kOpN = 0, kR16BF = 14, kCompute32F = 68, kGemmDefault = -1;

struct Cublas {
  void* lib = nullptr;
  CublasCreate create = nullptr;
  CublasDestroy destroy = nullptr;
  CublasSetStream set_stream = nullptr;
  CublasGemmEx gemm_ex = nullptr;
  std::string tried;

  bool load() {
    std::vector<std::string> names;
    if (const char* path = std::getenv("FORGE_BENCH_CUBLAS")) names.emplace_back(path);
    for (const char* n : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) names.emplace_back(n);
    for (const std::string& name : names) {
      lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      const char* err = dlerror();
      tried += (tried.empty() ? "" : "; ") + (err ? std::string(err) : name);
    }
    if (!lib) return false;
    create = reinterpret_cast<CublasCreate>(dlsym(lib, "cublasCreate_v2"));
    destroy = reinterpret_cast<CublasDestroy>(dlsym(lib, "cublasDestroy_v2"));
    set_stream = reinterpret_cast<CublasSetStream>(dlsym(lib, "cublasSetStream_v2"));
    gemm_ex = reinterpret_cast<CublasGemmEx>(dlsym(lib, "cublasGemmEx"));
    if (create && destroy && set_stream && gemm_ex) return true;
    tried = "libcublas loaded but a symbol is missing (cublasCreate_v2 / cublasGemmEx ...)";
    return false;
  }
};

Timing measure_copy(const Stream& stream, size_t bytes, int warmup, int reps, uint64_t seed) {
  DeviceBuffer src(bytes), dst(bytes);
  fill_normal(FORGE_DTYPE_F32, src.get(), static_cast<int64_t>(bytes / 4), seed, 0.f, 1.f, stream.get());
  return time_events(stream.get(), warmup, reps, [&](int) {
    GB_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
  });
}

}  // namespace

Ceilings measure_ceilings(const Stream& stream, size_t copy_bytes, int gemm_n, bool emulator, int warmup, int reps,
                          uint64_t seed) {
  Ceilings c;
  size_t free_bytes = 0, total_bytes = 0;
  GB_CUDA(cudaMemGetInfo(&free_bytes, &total_bytes));
  size_t bytes = copy_bytes;
  while (bytes > (size_t{64} << 20) && 3 * bytes > free_bytes) bytes /= 2;
  c.copy_bytes = static_cast<double>(bytes);
  c.copy_time = measure_copy(stream, bytes, warmup, reps, seed);
  c.copy_gbps = 2.0 * c.copy_bytes / (c.copy_time.median_ms * 1e-3) / 1e9;

  if (emulator) {
    c.gemm_note = "cuBLAS not used: the device is the CPU emulator";
    return c;
  }
  Cublas cublas;
  if (!cublas.load()) {
    c.gemm_note = "cuBLAS not loaded (" + cublas.tried + "); set FORGE_BENCH_CUBLAS to libcublas.so's path";
    return c;
  }
  const int n = gemm_n;
  c.gemm_n = n;
  const size_t elems = static_cast<size_t>(n) * n;
  DeviceBuffer a(elems * 2), b(elems * 2), out(elems * 2);
  // Random operands, never zeros: a product of zeros runs measurably faster than real data.
  fill_normal(FORGE_DTYPE_BF16, a.get(), static_cast<int64_t>(elems), seed + 1, 0.f, 1.f, stream.get());
  fill_normal(FORGE_DTYPE_BF16, b.get(), static_cast<int64_t>(elems), seed + 2, 0.f, 1.f, stream.get());
  void* handle = nullptr;
  if (cublas.create(&handle) != 0) {
    c.gemm_note = "cublasCreate failed";
    return c;
  }
  try {
    if (cublas.set_stream(handle, stream.get()) != 0) throw BenchError("cublasSetStream failed");
    const float alpha = 1.f, beta = 0.f;
    c.gemm_time = time_events(stream.get(), warmup, reps, [&](int) {
      const int st = cublas.gemm_ex(handle, kOpN, kOpN, n, n, n, &alpha, a.get(), kR16BF, n, b.get(), kR16BF, n,
                                    &beta, out.get(), kR16BF, n, kCompute32F, kGemmDefault);
      if (st != 0) throw BenchError("cublasGemmEx failed with status " + std::to_string(st));
    });
  } catch (...) {
    cublas.destroy(handle);
    throw;
  }
  cublas.destroy(handle);
  c.gemm_tflops = 2.0 * n * static_cast<double>(n) * n / (c.gemm_time.median_ms * 1e-3) / 1e12;
  c.gemm_note = "cuBLAS bf16 GEMM " + std::to_string(n) + "^3, fp32 accumulation";
  return c;
}

}  // namespace gpubench
