// The two ceilings every ratio is taken against, measured in the same run on the same card:
//   copy: a large device-to-device cudaMemcpyAsync, GB/s counting bytes read plus bytes written;
//   gemm: a large cuBLAS bf16 GEMM (fp32 accumulation), TFLOP/s counting 2*M*N*K.
// cuBLAS is loaded at run time (dlopen), so the bench builds where no cuBLAS is installed (the build
// machine) and says so plainly where it is missing at run time, instead of failing to link.
#pragma once

#include <string>

#include "bench_common.hpp"
#include "timing.hpp"

namespace gpubench {

struct Ceilings {
  double copy_gbps = 0;
  double copy_bytes = 0;     // bytes of one copy (read once, written once)
  Timing copy_time;
  double gemm_tflops = 0;    // 0 when cuBLAS could not be loaded (gemm_note says why)
  int gemm_n = 0;            // M = N = K
  Timing gemm_time;
  std::string gemm_note;
};

// copy_bytes: the largest copy wanted (halved while three copies would not fit in free memory);
// gemm_n: M = N = K. With `emulator` (the CPU emulator, cuda/simt/) cuBLAS is not opened: it would
// look for a real GPU, and the emulator's pointers are host memory.
Ceilings measure_ceilings(const Stream& stream, size_t copy_bytes, int gemm_n, bool emulator, int warmup, int reps,
                          uint64_t seed);

}  // namespace gpubench
