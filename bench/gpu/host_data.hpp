// Host-side data for the correctness checks: a seeded generator, rounding to what a dtype holds (so the
// CPU kernel sees exactly the numbers the device kernel sees), transfers in any dtype, the poison that
// makes unwritten outputs fail, and the relative-L2 comparison.
#pragma once

#include <cuda_runtime.h>
#include <forge/forge.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace gpubench {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();             // splitmix64
  double uniform();            // [0, 1)
  double gauss();              // standard normal (Box-Muller)
  int64_t below(int64_t n);    // [0, n), n >= 1
  uint64_t fork() { return next(); }  // a seed for an independent stream (device fills)

 private:
  uint64_t state_;
};

// IEEE round-to-nearest-even conversions, written out so the host side depends on no CUDA header.
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_f16(float x);
float f16_to_f32(uint16_t h);

const char* dtype_name(forge_dtype dtype);
// The relative-L2 bound a dtype's results are held to: bf16 and f16 1e-2, f32 1e-4.
double dtype_bound(forge_dtype dtype);

// Rounds every value to the nearest value `dtype` can hold (identity for f32).
void round_to(std::vector<float>& values, forge_dtype dtype);
// n draws of std * N(0, 1), already rounded to `dtype`.
std::vector<float> random_normal(Rng& rng, size_t n, float std, forge_dtype dtype);

// Host float32 values -> device buffer in `dtype` (converted on the host, copied on `stream`).
DeviceBuffer upload(const std::vector<float>& values, forge_dtype dtype, cudaStream_t stream);
template <class T>
DeviceBuffer upload_raw(const std::vector<T>& values, cudaStream_t stream) {
  DeviceBuffer buffer(values.size() * sizeof(T));
  if (!values.empty())
    GB_FORGE(forge_cuda_memcpy_h2d(buffer.get(), values.data(), buffer.bytes(), static_cast<void*>(stream)));
  return buffer;
}
// Device buffer of n elements in `dtype` -> host float32. Waits for the whole device first, so the
// result is final whichever stream wrote it.
std::vector<float> download(const DeviceBuffer& buffer, size_t n, forge_dtype dtype, cudaStream_t stream);

// Fills the whole buffer with 0xFF bytes: NaN in f32, bf16 and f16, so any element a kernel leaves
// unwritten fails the comparison.
void poison(DeviceBuffer& buffer, cudaStream_t stream);

struct Comparison {
  double rel_err = 0;      // ||got - ref|| / ||ref|| over the elements where ref is finite (see compare)
  int64_t non_finite = 0;  // elements where got is NaN/Inf and ref is finite, or where ref is an
                           // infinity and got differs from it
  int64_t count = 0;
  bool within(double bound) const { return non_finite == 0 && rel_err <= bound; }
};
// rms_floor: the reference's RMS is taken as at least this, for outputs whose scale is known from the
// inputs' (N(0, 1) attention inputs: gradients of order 1). An output that is exactly zero in exact
// arithmetic (dQ and dK of a node that sees only itself) comes out at rounding level on a device that
// sums in another order; relative to its own zero norm that would read as a 100% error.
Comparison compare(const std::vector<float>& got, const std::vector<float>& ref, double rms_floor = 0);

}  // namespace gpubench
