#!/usr/bin/env bash
# forge-rl GPU bench in one command: build (Release, sm_90 unless --arch), check every CUDA kernel against
# the CPU kernels, time them against ceilings measured in the same run, compare with PyTorch.
#   bash bench/gpu/run.sh [--quick | --smoke | --emulator] [--arch N] [--skip-build] [--no-torch]
# Without --emulator it first asks `nvidia-smi -L` for a GPU and, finding none, exits 3 at once
# (nothing built). --arch N: the GPU's compute capability without the dot (80 A100, 86/89 RTX and
# L40S, 90 H100/H200, default 90; or FORGE_BENCH_ARCH), passed to CMake as CMAKE_CUDA_ARCHITECTURES
# (a changed value reconfigures and rebuilds).
# --smoke: on the GPU, every check on tiny problems and each timing path once, no torch (about a
# minute, build included): a first look before the full bench's budget is spent.
# --emulator: no GPU needed; builds for the CPU emulator of cuda/simt/ into bench/gpu/build-simt and
# runs every section with --smoke (tiny problems, real checks, host times labelled as such), no torch.
# Output folder: $OUT if set, else bench/gpu/out/ (out-simt/ with --emulator): gpu_bench.log
# (everything, build included), gpu_bench.jsonl (C++ results, one line per section), torch_bench.json,
# results.md (an entry for bench/RESULTS.md). The short table comes last on stdout.
# Exit status: 0 all checks passed; 1 a check failed, a section crashed or the build failed; 2 bad
# arguments (or a GPU older than --arch); 3 no GPU.
# Environment: FORGE_BENCH_ARCH (as --arch), FORGE_BENCH_NO_PROBE=1 (skip the nvidia-smi probe, for a
# machine whose GPU is usable but has no nvidia-smi), FORGE_COMMIT (recorded; default git rev-parse),
# FORGE_TEST_SEED (inputs; default fresh), FORGE_BENCH_BUDGET (seconds for the whole script, build
# included, default 450: each step's limit is cut to what is left, so the summary is always written),
# FORGE_BENCH_SECTION_TIMEOUT (120), FORGE_BENCH_TORCH_TIMEOUT (300).
set -u -o pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$HERE/build
QUICK=""
BUILD=1
TORCH=1
EMULATOR=0
ARCH=${FORGE_BENCH_ARCH:-90}
ARCH_FLAG=0
while [ $# -gt 0 ]; do
  arg=$1
  shift
  case $arg in
    --quick | --smoke)
      [ -z "$QUICK" ] || [ "$QUICK" = "$arg" ] || { echo "run.sh: --quick and --smoke: choose one" >&2; exit 2; }
      QUICK=$arg ;;
    --emulator) EMULATOR=1 ;;
    --arch) [ $# -gt 0 ] || { echo "run.sh: --arch needs a value (e.g. --arch 80)" >&2; exit 2; }
      ARCH=$1 ARCH_FLAG=1
      shift ;;
    --arch=*) ARCH=${arg#--arch=} ARCH_FLAG=1 ;;
    --skip-build) BUILD=0 ;;
    --no-torch) TORCH=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done
# One compute capability without the dot (an "a"/"f" suffix for arch-specific features), or native.
if ! [[ $ARCH =~ ^([0-9]{2,3}[af]?|native)$ ]]; then
  echo "run.sh: --arch / FORGE_BENCH_ARCH: expected a compute capability like 80, 89, 90 or 90a, or native; got '$ARCH'" >&2
  exit 2
fi
CMAKE_FLAGS=(-DCMAKE_CUDA_ARCHITECTURES="$ARCH")
[ "$QUICK" != --smoke ] || TORCH=0
if [ "$EMULATOR" = 1 ]; then
  [ "$QUICK" != --quick ] || { echo "run.sh: --quick and --emulator: choose one (--emulator runs --smoke)" >&2; exit 2; }
  [ "$ARCH_FLAG" = 0 ] || { echo "run.sh: --arch and --emulator: choose one (the emulator has no CUDA architecture)" >&2; exit 2; }
  BUILD_DIR=$HERE/build-simt
  CMAKE_FLAGS=(-DFORGE_SIMT=on)
  QUICK=--smoke
  TORCH=0
fi
# The emulator's results go elsewhere by default, never over a GPU run's.
OUTDIR=${OUT:-$HERE/$([ "$EMULATOR" = 1 ] && echo out-simt || echo out)}

mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_bench.log
JSONL=$OUTDIR/gpu_bench.jsonl
TJSON=$OUTDIR/torch_bench.json
rm -f "$JSONL" "$TJSON" "$OUTDIR/results.md"
: > "$LOG"
log() { echo "[run.sh $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
START=$(date +%s)

# Ask the driver for a GPU before spending minutes on a CUDA build that could not run.
if [ "$EMULATOR" = 0 ] && [ "${FORGE_BENCH_NO_PROBE:-0}" != 1 ]; then
  WHY=""
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    WHY="nvidia-smi not found (no NVIDIA driver installed)"
  else
    GPUS=$(nvidia-smi -L 2>&1)
    grep -q '^GPU [0-9]' <<<"$GPUS" || WHY="nvidia-smi -L lists no GPU ($(head -1 <<<"$GPUS"))"
  fi
  if [ -n "$WHY" ]; then
    log "no usable GPU: $WHY; nothing built. bash bench/gpu/run.sh --emulator runs the bench on the CPU emulator"
    exit 3
  fi
  # A GPU older than the architecture built for cannot load any kernel: say so now, not as failed checks.
  CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i 0 2>/dev/null | tr -d ' .' || true)
  NUM=${ARCH%[af]}
  if [[ $CC =~ ^[0-9]+$ ]] && [[ $NUM =~ ^[0-9]+$ ]]; then
    if [ "$CC" -lt "$NUM" ]; then
      log "GPU 0 has compute capability $CC: code built for $ARCH cannot load on it; rerun with --arch $CC"
      exit 2
    elif [ "$CC" != "$NUM" ]; then
      log "note: GPU 0 has compute capability $CC, the build is for $ARCH (it can run; --arch $CC builds code for it)"
    fi
  fi
fi
DEADLINE=$((START + ${FORGE_BENCH_BUDGET:-450}))
# Seconds a step may take: its own limit, cut to what the budget leaves (keeping 15 s for the summary).
limit() { local left=$((DEADLINE - $(date +%s) - 15)); echo $(( left < $1 ? left : $1 )); }

{
  echo "== machine"
  if [ "$EMULATOR" = 1 ]; then echo "no GPU: the CPU emulator of cuda/simt/ (--emulator)"; else
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
      --format=csv 2>&1 || true
  fi
  nvcc --version 2>&1 | tail -1 || true
  cmake --version 2>&1 | head -1 || true
  nproc
} >> "$LOG" 2>&1

# cuBLAS for the GEMM ceiling is opened at run time: the toolkit's, else the one PyTorch's wheels carry.
CUBLAS_DIR=$(python3 -c 'import nvidia.cublas as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="${CUDA_HOME:-/usr/local/cuda}/lib64${CUBLAS_DIR:+:$CUBLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

if [ "$BUILD" = 1 ]; then
  GENERATOR=()
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then GENERATOR=(-G Ninja); fi
  log "configure + build into $BUILD_DIR$([ "$EMULATOR" = 1 ] || echo ", CUDA architecture $ARCH") (log: $LOG)"
  T0=$(date +%s)
  if ! { cmake -S "$HERE" -B "$BUILD_DIR" "${GENERATOR[@]}" "${CMAKE_FLAGS[@]}" -DCMAKE_BUILD_TYPE=Release &&
         cmake --build "$BUILD_DIR" -j "$(nproc)"; } >> "$LOG" 2>&1; then
    log "BUILD FAILED; the end of the log:"
    tail -40 "$LOG"
    exit 1
  fi
  log "built in $(( $(date +%s) - T0 )) s"
fi
BIN=$BUILD_DIR/forge_gpu_bench
LIB=$BUILD_DIR/forge/libforge_kernels.so
[ -x "$BIN" ] || { log "no $BIN: build first"; exit 1; }
if [ "$EMULATOR" = 0 ] && [ "$BUILD" = 0 ]; then
  BUILT=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null)
  # (Empty: a folder configured before run.sh passed the architecture; then it cannot tell.)
  [ -z "$BUILT" ] || [ "$BUILT" = "$ARCH" ] ||
    { log "$BUILD_DIR was built for CUDA architecture $BUILT, not $ARCH: drop --skip-build"; exit 2; }
fi

SEED=${FORGE_TEST_SEED:-$(( $(od -An -N4 -tu4 /dev/urandom | tr -d ' ') ))}
STATUS=0
I=0
SECTION_LOG=$(mktemp)
trap 'rm -f "$SECTION_LOG"' EXIT
# One process per section: a CUDA error that poisons the context (an illegal address) ends one
# section, not the run. Each process measures its own ceilings (about a second).
for SECTION in layout merge cispo attention; do
  I=$((I + 1))
  LIMIT=$(limit "${FORGE_BENCH_SECTION_TIMEOUT:-120}")
  if [ "$LIMIT" -lt 10 ]; then STATUS=1; log "section $SECTION: not run, the time budget is spent"; continue; fi
  log "forge_gpu_bench --sections $SECTION --seed $((SEED + I)) $QUICK (limit ${LIMIT} s)"
  timeout -k 10 "$LIMIT" "$BIN" $QUICK --seed $((SEED + I)) --sections "$SECTION" \
    --jsonl "$JSONL" > "$SECTION_LOG" 2>&1
  RC=$?
  cat "$SECTION_LOG" >> "$LOG"
  grep -E "FAIL|ERROR|!!" "$SECTION_LOG" | head -8 || true
  if [ $RC = 3 ]; then log "$(grep -m1 "no usable GPU" "$SECTION_LOG" || echo "no usable GPU")"; exit 3; fi
  if [ $RC != 0 ]; then STATUS=1; log "section $SECTION: exit status $RC (124/137: timed out)"; fi
done

LIMIT=$(limit "${FORGE_BENCH_TORCH_TIMEOUT:-300}")
if [ "$TORCH" = 1 ] && [ "$LIMIT" -lt 30 ]; then
  STATUS=1
  log "torch_bench.py: not run, the time budget is spent"
elif [ "$TORCH" = 1 ]; then
  log "torch_bench.py $QUICK (limit ${LIMIT} s)"
  # SIGINT at the limit: the script keeps what it measured and writes it out.
  PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 timeout -s INT -k 15 "$LIMIT" \
    python3 "$HERE/torch_bench.py" $QUICK --lib "$LIB" --json "$TJSON" --seed "$SEED" >> "$LOG" 2>&1
  RC=$?
  if [ $RC != 0 ] && [ $RC != 3 ]; then STATUS=1; log "torch_bench.py: exit status $RC"; fi
  if [ $RC = 3 ]; then log "torch_bench.py could not run: $(tail -1 "$LOG")"; fi
fi

COMMIT=${FORGE_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
log "done in $(( $(date +%s) - START )) s; full log $LOG"
PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/summarize.py" --jsonl "$JSONL" --torch "$TJSON" \
  --md "$OUTDIR/results.md" --commit "$COMMIT" | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || STATUS=1
exit $STATUS
