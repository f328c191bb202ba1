// forge_gpu_bench: checks every CUDA kernel of libforge_kernels against its CPU kernel on fresh random
// inputs, then times the large problems with CUDA events against ceilings measured in the same run.
// --smoke runs every check and timing path on tiny problems: on the CPU emulator (cuda/simt/, CI) that
// proves the program before a GPU is lent; its times are then host times and labelled so.
// Exit status: 0 all checks passed; 1 a check failed or a case raised an error; 2 bad usage;
// 3 no usable GPU (the message says why). Targets missed are reported, not failures.
#include <cuda_runtime.h>
#include <forge/forge.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <sstream>
#include <string>

#include "sections.hpp"

using namespace gpubench;

namespace {

const char* kUsage =
    "usage: forge_gpu_bench [--quick | --smoke] [--seed N] [--reps N] [--warmup N] [--sections LIST] [--jsonl PATH]\n"
    "  --sections  comma list of layout,merge,cispo,attention (default: all)\n"
    "  --quick     fewer checks, smaller secondary problems; target problems stay full size\n"
    "  --smoke     every check and timing on tiny problems, 1 warm-up, 3 reps (the CPU emulator; targets not judged)\n"
    "  --seed      input seed (default: fresh each run, or FORGE_TEST_SEED; printed either way)\n"
    "  --jsonl     append this run's results as one JSON line\n";

bool parse(int argc, char** argv, Options& opt) {
  bool seeded = false, warmup_set = false, reps_set = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) throw BenchError(std::string(name) + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") opt.quick = true;
    else if (a == "--seed") opt.seed = std::strtoull(value("--seed"), nullptr, 10), seeded = true;
    else if (a == "--smoke") opt.smoke = true;
    else if (a == "--reps") opt.reps = std::atoi(value("--reps")), reps_set = true;
    else if (a == "--warmup") opt.warmup = std::atoi(value("--warmup")), warmup_set = true;
    else if (a == "--sections") opt.sections = value("--sections");
    else if (a == "--jsonl") opt.jsonl = value("--jsonl");
    else if (a == "--help" || a == "-h") return false;
    else throw BenchError("unknown argument '" + a + "'");
  }
  if (opt.quick && opt.smoke) throw BenchError("--quick and --smoke: choose one");
  if (opt.smoke) {
    if (!warmup_set) opt.warmup = 1;
    if (!reps_set) opt.reps = 3;
  }
  if (opt.reps < 20 && !opt.quick && !opt.smoke) throw BenchError("--reps: at least 20 (the median of many)");
  if (opt.reps < (opt.smoke ? 1 : 5) || opt.warmup < 1)
    throw BenchError(opt.smoke ? "--reps >= 1 and --warmup >= 1" : "--reps >= 5 and --warmup >= 1");
  if (!seeded) {
    if (const char* env = std::getenv("FORGE_TEST_SEED")) opt.seed = std::strtoull(env, nullptr, 10);
    else opt.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^
                    static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }
  return true;
}

bool wants(const std::string& list, const char* section) {
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (item == section) return true;
  return false;
}

#ifdef FORGE_BENCH_CUDA_ARCHS
// Empty when the build has code compiled for compute capability `cc` (e.g. 90) or cannot tell (native,
// all); else one line saying what runs instead: binary-compatible code of an older minor version, PTX
// JIT from an older virtual architecture, or nothing ("no kernel image" at every launch).
std::string arch_mismatch(const std::string& archs, int cc) {
  int binary = 0;
  bool jit = false;
  std::stringstream ss(archs);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t digits = 0;
    while (digits < item.size() && std::isdigit(static_cast<unsigned char>(item[digits]))) ++digits;
    if (digits == 0) return "";  // native, all, all-major: chosen by CMake for this machine or every GPU
    const int arch = std::atoi(item.substr(0, digits).c_str());
    const std::string rest = item.substr(digits);
    const bool specific = !rest.empty() && (rest[0] == 'a' || rest[0] == 'f');  // sm_90a: that exact GPU only
    const bool real = rest.find("-virtual") == std::string::npos, ptx = rest.find("-real") == std::string::npos;
    if (real && arch == cc) return "";
    if (real && !specific && arch / 10 == cc / 10 && arch < cc) binary = std::max(binary, arch);
    if (ptx && !specific && arch <= cc) jit = true;
  }
  const std::string again = "bash bench/gpu/run.sh --arch " + std::to_string(cc);
  const std::string what = binary ? "no code compiled for it; the sm_" + std::to_string(binary) +
                                        " code runs (binary compatible), " + again + " builds for it"
                           : jit ? "no code compiled for it; the kernels run through PTX JIT, " + again + " builds for it"
                                 : "no code that can load on it, every launch fails with 'no kernel image': " + again;
  return "this device is compute capability " + std::to_string(cc / 10) + "." + std::to_string(cc % 10) +
         ", the build is for CUDA architectures '" + archs + "': " + what;
}
#endif

std::string header(const Context& ctx) {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const Ceilings& c = ctx.ceil;
  std::ostringstream o;
  o << "\"tool\":\"forge_gpu_bench\",\"date\":" << json_string(date) << ",\"sections\":" << json_string(ctx.opt.sections)
    << ",\"quick\":" << (ctx.opt.quick ? "true" : "false") << ",\"smoke\":" << (ctx.opt.smoke ? "true" : "false")
    << ",\"emulator\":" << (ctx.emulator ? "true" : "false") << ",\"seed\":" << ctx.opt.seed
    << ",\"reps\":" << ctx.opt.reps << ",\"abi\":" << forge_abi_version()
    << ",\"device\":{\"name\":" << json_string(ctx.props.name) << ",\"cc\":\"" << ctx.props.major << "."
    << ctx.props.minor << "\",\"sms\":" << ctx.props.multiprocessors << ",\"memory\":" << ctx.props.total_memory
    << ",\"l2\":" << ctx.l2_bytes << "},\"ceilings\":{\"copy_gbps\":" << json_number(c.copy_gbps)
    << ",\"copy_bytes\":" << json_number(c.copy_bytes) << ",\"copy_ms\":" << json_number(c.copy_time.median_ms)
    << ",\"gemm_tflops\":" << json_number(c.gemm_tflops) << ",\"gemm_n\":" << c.gemm_n
    << ",\"gemm_ms\":" << json_number(c.gemm_time.median_ms) << ",\"gemm_note\":" << json_string(c.gemm_note) << "}";
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  try {
    if (!parse(argc, argv, opt)) {
      std::fputs(kUsage, stdout);
      return 0;
    }
  } catch (const BenchError& e) {
    std::fprintf(stderr, "forge_gpu_bench: %s\n%s", e.what(), kUsage);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("forge_gpu_bench: libforge_kernels ABI %d, CUDA compiled: %s, seed %llu%s\n", forge_abi_version(),
              forge_cuda_compiled() ? "yes" : "no", static_cast<unsigned long long>(opt.seed),
              opt.quick ? " (quick)" : opt.smoke ? " (smoke)" : "");
  const char* reason = nullptr;
  if (forge_cuda_device_count(&reason) == 0) {
    std::fprintf(stderr, "forge_gpu_bench: no usable GPU: %s\n", reason && *reason ? reason : "unknown reason");
    return 3;
  }

  std::unique_ptr<Context> ctx;
  try {
    GB_FORGE(forge_cuda_set_device(0));
    ctx = std::make_unique<Context>();
    ctx->opt = opt;
    ctx->rng = Rng(opt.seed);
    GB_FORGE(forge_cuda_get_device_props(0, &ctx->props));
    ctx->emulator = std::strstr(ctx->props.name, "emulator") != nullptr;
    int l2 = 0;
    GB_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    ctx->l2_bytes = l2;
    std::printf("device: %s, cc %d.%d, %d SMs, %.1f GiB, L2 %.0f MB\n", ctx->props.name, ctx->props.major,
                ctx->props.minor, ctx->props.multiprocessors, ctx->props.total_memory / 1073741824.0, l2 / 1e6);
    if (ctx->emulator)
      std::printf("THE DEVICE IS THE CPU EMULATOR: the checks are real, every time and rate below is host time\n");
#ifdef FORGE_BENCH_CUDA_ARCHS
    else if (const std::string why = arch_mismatch(FORGE_BENCH_CUDA_ARCHS, ctx->props.major * 10 + ctx->props.minor);
             !why.empty())
      std::printf("!! %s\n", why.c_str());  // "!!": run.sh shows the line
#endif
    // The copy far past any L2 (50-60 MB on Hopper), small enough for any card we run on; --smoke's
    // 8 MiB sits inside the L2 (a first look, no target judged).
    const size_t copy_bytes = by_mode(opt, size_t{2} << 30, size_t{1} << 30, size_t{8} << 20);
    ctx->ceil = measure_ceilings(ctx->stream, copy_bytes, by_mode(opt, 8192, 4096, 1024), ctx->emulator, opt.warmup,
                                 opt.reps, ctx->rng.fork());
    std::printf("ceilings%s: copy %.0f GB/s (%.2f GB copied, read+write counted); gemm %.0f TFLOP/s (%s)\n",
                ctx->emulator ? " (emulator, host time)" : "", ctx->ceil.copy_gbps, ctx->ceil.copy_bytes / 1e9,
                ctx->ceil.gemm_tflops, ctx->ceil.gemm_note.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "forge_gpu_bench: setup failed: %s\n", e.what());
    return 1;
  }

  if (wants(opt.sections, "layout")) run_layout(*ctx);
  if (wants(opt.sections, "merge")) run_merge(*ctx);
  if (wants(opt.sections, "cispo")) run_cispo(*ctx);
  if (wants(opt.sections, "attention")) run_attention(*ctx);

  std::printf("\n== forge_gpu_bench [%s] on %s ==", opt.sections.c_str(), ctx->props.name);
  ctx->report.print(stdout);
  if (!opt.jsonl.empty()) {
    if (FILE* f = std::fopen(opt.jsonl.c_str(), "a")) {
      std::fprintf(f, "%s\n", ctx->report.json(header(*ctx)).c_str());
      std::fclose(f);
    } else {
      std::fprintf(stderr, "forge_gpu_bench: cannot append to %s: %s\n", opt.jsonl.c_str(), std::strerror(errno));
      return 1;
    }
  }
  const bool failed = ctx->report.failed();
  std::printf("\nforge_gpu_bench [%s]: %s\n", opt.sections.c_str(), failed ? "FAILED" : "all checks passed");
  return failed ? 1 : 0;
}
