// Parameter initialisation: splitmix64 streams and Box-Muller normals in float64, one stream per
// tensor (in parallel over tensors), so the buffer depends on the seed alone, not on the threads.
#include "model/init.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "common/thread_pool.hpp"

namespace forge::model {

namespace {

struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: 53 random bits, never 0 (Box-Muller takes its log).
  double uniform() { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }
};

bool ends_with(const std::string& s, const char* suffix) {
  const std::string t(suffix);
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

}  // namespace

void init_params(const Dims& d, uint64_t seed, float* params) {
  constexpr double kStd = 0.02;
  const std::vector<TensorInfo> layout = param_layout(d);
  const double residual_std = kStd / std::sqrt(2.0 * static_cast<double>(d.layers > 0 ? d.layers : 1));
  parallel_for(static_cast<int64_t>(layout.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const TensorInfo& info = layout[static_cast<size_t>(t)];
      float* out = params + info.offset;
      const int64_t count = info.size();
      if (info.rank == 1) {  // RMSNorm gains
        for (int64_t i = 0; i < count; ++i) out[i] = 1.0f;
        continue;
      }
      const double std = ends_with(info.name, "attn.wo") || ends_with(info.name, "mlp.w_down") ? residual_std : kStd;
      SplitMix64 rng{seed ^ (0xd1b54a32d192ed03ULL * static_cast<uint64_t>(t + 1))};
      for (int64_t i = 0; i < count; i += 2) {
        const double r = std::sqrt(-2.0 * std::log(rng.uniform()));
        const double angle = 6.283185307179586476925 * rng.uniform();  // 2 pi
        out[i] = static_cast<float>(std * r * std::cos(angle));
        if (i + 1 < count) out[i + 1] = static_cast<float>(std * r * std::sin(angle));
      }
    }
  });
}

}  // namespace forge::model
