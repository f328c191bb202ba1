#include "host_data.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace gpubench {

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::gauss() {
  const double u1 = 1.0 - uniform();  // (0, 1]: log is finite
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

int64_t Rng::below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }

static uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

static float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

uint16_t f32_to_bf16(float x) {
  const uint32_t b = bits_of(x);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x0040u);  // quiet NaN
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);                  // nearest even
}

float bf16_to_f32(uint16_t b) { return float_of(static_cast<uint32_t>(b) << 16); }

uint16_t f32_to_f16(float x) {
  const uint32_t b = bits_of(x);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const uint32_t mag = b & 0x7FFFFFFFu;
  if (mag >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (mag > 0x7F800000u ? 0x0200u : 0u));
  if (mag >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to infinity
  if (mag < 0x38800000u) {
    // Below 2^-14: a subnormal half, m * 2^-24. Scaling by 2^24 is exact; nearbyint rounds to even.
    const float m = std::nearbyint(float_of(mag) * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(m));
  }
  uint32_t h = ((((mag >> 23) - 127u + 15u)) << 10) | ((mag & 0x7FFFFFu) >> 13);
  const uint32_t rest = mag & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is right
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7F800000u | (mant << 13));
  return float_of(sign | ((exp - 15u + 127u) << 23) | (mant << 13));
}

const char* dtype_name(forge_dtype dtype) {
  switch (dtype) {
    case FORGE_DTYPE_F32: return "f32";
    case FORGE_DTYPE_F16: return "f16";
    case FORGE_DTYPE_BF16: return "bf16";
  }
  return "?";
}

double dtype_bound(forge_dtype dtype) { return dtype == FORGE_DTYPE_F32 ? 1e-4 : 1e-2; }

void round_to(std::vector<float>& values, forge_dtype dtype) {
  if (dtype == FORGE_DTYPE_BF16)
    for (float& v : values) v = bf16_to_f32(f32_to_bf16(v));
  else if (dtype == FORGE_DTYPE_F16)
    for (float& v : values) v = f16_to_f32(f32_to_f16(v));
}

std::vector<float> random_normal(Rng& rng, size_t n, float std, forge_dtype dtype) {
  std::vector<float> out(n);
  for (float& v : out) v = static_cast<float>(std * rng.gauss());
  round_to(out, dtype);
  return out;
}

DeviceBuffer upload(const std::vector<float>& values, forge_dtype dtype, cudaStream_t stream) {
  if (dtype == FORGE_DTYPE_F32) return upload_raw(values, stream);
  std::vector<uint16_t> half(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    half[i] = dtype == FORGE_DTYPE_BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
  DeviceBuffer buffer = upload_raw(half, stream);
  // The staging copy of a pageable source is taken before the call returns, but wait anyway so the
  // host vector may go out of scope whatever the library does inside.
  GB_CUDA(cudaStreamSynchronize(stream));
  return buffer;
}

std::vector<float> download(const DeviceBuffer& buffer, size_t n, forge_dtype dtype, cudaStream_t stream) {
  GB_CUDA(cudaDeviceSynchronize());
  std::vector<float> out(n);
  if (n == 0) return out;
  if (dtype == FORGE_DTYPE_F32) {
    GB_FORGE(forge_cuda_memcpy_d2h(out.data(), buffer.get(), n * 4, static_cast<void*>(stream)));
    GB_CUDA(cudaStreamSynchronize(stream));
    return out;
  }
  std::vector<uint16_t> half(n);
  GB_FORGE(forge_cuda_memcpy_d2h(half.data(), buffer.get(), n * 2, static_cast<void*>(stream)));
  GB_CUDA(cudaStreamSynchronize(stream));
  for (size_t i = 0; i < n; ++i) out[i] = dtype == FORGE_DTYPE_BF16 ? bf16_to_f32(half[i]) : f16_to_f32(half[i]);
  return out;
}

void poison(DeviceBuffer& buffer, cudaStream_t stream) {
  if (buffer.bytes() > 0) GB_CUDA(cudaMemsetAsync(buffer.get(), 0xFF, buffer.bytes(), stream));
}

Comparison compare(const std::vector<float>& got, const std::vector<float>& ref, double rms_floor) {
  Comparison c;
  c.count = static_cast<int64_t>(ref.size());
  if (got.size() != ref.size()) {
    c.non_finite = c.count;  // a size mismatch is a harness bug; never let it pass
    c.rel_err = INFINITY;
    return c;
  }
  double diff2 = 0, ref2 = 0;
  int64_t finite = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], g = got[i];
    if (!std::isfinite(r)) {
      if (!(g == r)) ++c.non_finite;  // an infinity (an empty attention state) must be matched exactly
      continue;
    }
    if (!std::isfinite(g)) {
      ++c.non_finite;
      continue;
    }
    diff2 += (g - r) * (g - r);
    ref2 += r * r;
    ++finite;
  }
  ref2 = std::max(ref2, rms_floor * rms_floor * static_cast<double>(finite));
  c.rel_err = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  return c;
}

}  // namespace gpubench
