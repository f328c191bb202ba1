#!/usr/bin/env python3
"""forge-rl GPU bench, PyTorch side.

Loads libforge_kernels with ctypes, hands it torch CUDA tensors through DLPack, and runs the same
problems through PyTorch: tree attention against SDPA with a dense tree mask and FlexAttention with a
tree BlockMask, CISPO against eager log_softmax + gather with autograd, a Liger-style chunked loss
(torch.compile'd when available) and liger_kernel's fused cross-entropy if installed (time and peak
memory each). Checks forge against them
(bf16 1e-2, f32 1e-4 relative L2; forge outputs poisoned first), times everything with CUDA events
(warm-up, median of --reps), and prints the ratios. Ceilings (a device-to-device copy, a bf16 matmul)
are measured in the same run. Exit status: 0 all checks passed, 1 a check failed or forge raised,
3 nothing could run here (no torch, no GPU, no library).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from forge_ctypes import Forge, default_library_path  # noqa: E402  (no torch import at load)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lib", default=None, help="libforge_kernels.so (default: bench/gpu/build/forge/, or "
                                                 "$FORGE_KERNELS_LIB)")
    ap.add_argument("--quick", action="store_true", help="only the target problems, no backward baselines")
    ap.add_argument("--json", default=None, help="write the results here (rewritten after each problem)")
    ap.add_argument("--seed", type=int, default=None, help="input seed (default: fresh each run)")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions per measurement (median taken)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: attention,cispo,sdpa,flex,liger, "
                                                "compile (the chunked CISPO baseline runs eager)")
    return ap.parse_args(argv)


class Run:
    """Results of this process, and the measuring helpers the problem modules use."""

    def __init__(self, torch, np, forge, args):
        self.torch, self.forge, self.args = torch, forge, args
        self.seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(6), "little")
        self.rng = np.random.default_rng(self.seed)
        self.stream = torch.cuda.current_stream().cuda_stream
        self.flex_reason = None
        self.out = {"tool": "torch_bench", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "seed": self.seed, "quick": args.quick, "reps": args.reps, "checks": [], "timings": [],
                    "targets": [], "skipped": [], "notes": [], "errors": []}
        self.ceil = {}

    # -- measuring -----------------------------------------------------------------------------------
    def time_ms(self, fn, warmup=3):
        torch = self.torch
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        start = [torch.cuda.Event(enable_timing=True) for _ in range(self.args.reps)]
        end = [torch.cuda.Event(enable_timing=True) for _ in range(self.args.reps)]
        for s, e in zip(start, end):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        ms = sorted(s.elapsed_time(e) for s, e in zip(start, end))
        mid = len(ms) // 2
        return ms[mid] if len(ms) % 2 else 0.5 * (ms[mid - 1] + ms[mid])

    def peak_bytes(self, fn):
        """The allocator's peak during one call of fn, above what was allocated before it (outputs included)."""
        torch = self.torch
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        return peak

    def rel_l2(self, got, ref):
        """||got - ref|| / ||ref|| in float64, chunked (the CISPO tensors hold billions of elements)."""
        torch = self.torch
        num = den = 0.0
        bad = 0
        for g, r in zip(got.reshape(-1).split(1 << 26), ref.reshape(-1).split(1 << 26)):
            g, r = g.double(), r.double()
            finite = torch.isfinite(g)
            bad += int((~finite).sum().item())
            num += float(torch.where(finite, g - r, 0).pow(2).sum().item())
            den += float(r.pow(2).sum().item())
        return (num / den) ** 0.5 if den > 0 else num ** 0.5, bad

    # -- recording -----------------------------------------------------------------------------------
    def _check(self, section, name, rel_err, bound, bad):
        ok = bad == 0 and rel_err <= bound
        self.out["checks"].append({"section": section, "name": name, "rel_err": rel_err, "bound": bound,
                                   "non_finite": bad, "pass": ok})
        print(f"  check {name}: rel err {rel_err:.3g} (bound {bound:g}), non-finite {bad}: {'ok' if ok else 'FAIL'}")

    def compare(self, section, name, got, ref, bound):
        if got.shape != ref.shape:
            raise ValueError(f"{name}: shapes differ {tuple(got.shape)} vs {tuple(ref.shape)}")
        rel, bad = self.rel_l2(got, ref)
        self._check(section, name, rel, bound, bad)

    def scalar(self, section, name, got, ref, bound):
        rel = abs(got - ref) / max(abs(ref), 1e-6)
        self._check(section, name, rel, bound, 0 if rel == rel else 1)

    def written(self, section, name, t):
        bad = int((~self.torch.isfinite(t)).sum().item())
        self._check(section, name + " (all written)", 0.0, 0.0, bad)

    def _timing(self, section, name, ms, unit, value, ceiling, forge_ms, peak=None):
        ceil = self.ceil.get(ceiling, 0)
        row = {"section": section, "name": name, "median_ms": ms, "unit": unit, "value": value, "ceiling": ceiling,
               "ratio": value / ceil if ceil else None, "forge_speedup": ms / forge_ms if forge_ms else None,
               "peak_gb": peak / 1e9 if peak is not None else None}
        self.out["timings"].append(row)
        vs = f", forge {ms / forge_ms:.2f}x faster" if forge_ms else ""
        mem = f", peak {peak / 1e9:.3g} GB" if peak is not None else ""
        print(f"  time {name}: {ms:.4g} ms, {value:.4g} {unit}{vs}{mem}")

    def rate(self, section, name, ms, flops, forge_ms):
        self._timing(section, name, ms, "TFLOP/s", flops / (ms * 1e-3) / 1e12, "gemm", forge_ms)

    def bandwidth(self, section, name, ms, nbytes, forge_ms, peak=None):
        self._timing(section, name, ms, "GB/s", nbytes / (ms * 1e-3) / 1e9, "copy", forge_ms, peak)

    def target(self, name, ratio, threshold):
        self.out["targets"].append({"name": name, "ratio": ratio, "threshold": threshold, "met": ratio >= threshold})

    def skip(self, reason):
        self.out["skipped"].append(reason)
        print(f"  skipped: {reason}")

    def note(self, text):
        self.out["notes"].append(text)

    def error(self, text):
        self.out["errors"].append(text)
        print(f"  ERROR: {text}", file=sys.stderr)

    def failed(self):
        return bool(self.out["errors"]) or any(not c["pass"] for c in self.out["checks"])

    def save(self):
        self.out["failed"] = self.failed()
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(self.out, f, indent=1)


def measure_ceilings(run):
    torch = run.torch
    n_bytes = 2 << 30
    src = torch.randn(n_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = run.time_ms(lambda: dst.copy_(src))
    del src, dst
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    mm_ms = run.time_ms(lambda: a @ b)
    run.ceil = {"copy": 2 * n_bytes / (copy_ms * 1e-3) / 1e9, "gemm": 2 * n ** 3 / (mm_ms * 1e-3) / 1e12}
    run.out["ceilings"] = {"copy_gbps": run.ceil["copy"], "gemm_tflops": run.ceil["gemm"],
                           "how": "torch copy_ of 2 GiB (read+write); torch bf16 matmul 8192^3"}
    print(f"ceilings: copy {run.ceil['copy']:.0f} GB/s, bf16 matmul {run.ceil['gemm']:.0f} TFLOP/s")


def flex_unavailable(torch):
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"FlexAttention is not available in torch {torch.__version__} ({type(e).__name__}: {e})"
    return None


def print_summary(run):
    print("\n== torch_bench summary ==")
    print(f"  {'measurement':60} {'ms':>9} {'rate':>10} {'unit':8} {'ceiling':>8} {'forge x':>8} {'peak GB':>8}")
    for t in run.out["timings"]:
        ratio = f"{100 * t['ratio']:.0f}%" if t["ratio"] is not None else "-"
        speed = f"{t['forge_speedup']:.2f}" if t["forge_speedup"] else ""
        peak = f"{t['peak_gb']:.3g}" if t.get("peak_gb") is not None else ""
        print(f"  {t['name'][:60]:60} {t['median_ms']:9.4g} {t['value']:10.4g} {t['unit']:8} {ratio:>8} {speed:>8} "
              f"{peak:>8}")
    for t in run.out["targets"]:
        print(f"  target {t['name']}: {t['ratio']:.2f} (need >= {t['threshold']}): {'met' if t['met'] else 'NOT met'}")
    fails = [c["name"] for c in run.out["checks"] if not c["pass"]]
    print(f"  checks: {len(run.out['checks']) - len(fails)} passed, {len(fails)} failed {fails if fails else ''}")
    for s in run.out["skipped"]:
        print(f"  skipped: {s}")


def main(argv):
    args = parse_args(argv)
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(f"torch_bench: cannot run here: {e} (PyTorch and numpy are needed; run on the GPU machine)")
        return 3
    if not torch.cuda.is_available():
        print("torch_bench: cannot run here: torch sees no CUDA device")
        return 3
    path = args.lib or default_library_path()
    if not os.path.exists(path):
        print(f"torch_bench: {path} does not exist: build it first (bash bench/gpu/run.sh does)")
        return 3
    forge = Forge(path)
    count, reason = forge.device_count()
    if not forge.lib.forge_cuda_compiled() or count == 0 or forge.missing:
        print(f"torch_bench: {path} cannot run device kernels: compiled={forge.lib.forge_cuda_compiled()}, "
              f"devices={count} {reason}, missing symbols={forge.missing}")
        return 3

    run = Run(torch, np, forge, args)
    skip = set(filter(None, args.skip.split(",")))
    run.flex_reason = "skipped (--skip flex)" if "flex" in skip else flex_unavailable(torch)
    run.out.update({"torch": torch.__version__, "device": torch.cuda.get_device_name(0),
                    "library": os.path.abspath(path)})
    print(f"torch_bench: torch {torch.__version__} on {run.out['device']}, seed {run.seed}, library {path}")
    import torch_attention
    import torch_cispo
    try:
        measure_ceilings(run)
        run.save()
        if "cispo" not in skip:
            rows = 16384
            while not torch_cispo.run_cispo(run, rows) and rows > 2048:
                rows //= 2  # eager PyTorch ran out of memory: both sides again at half the rows
            run.save()
        if "attention" not in skip:
            problems = [(32768, 4096, 32, 32, 128, not args.quick, True)]
            if not args.quick:
                problems += [(32768, 4096, 32, 8, 128, False, False), (16384, 2048, 32, 8, 64, False, False)]
            for nodes, prefix, hq, hkv, d, backward, target in problems:
                torch_attention.run_problem(run, nodes, prefix, hq, hkv, d, backward, "sdpa" not in skip and target,
                                            target)
                run.save()
    except KeyboardInterrupt:  # run.sh's time limit: keep what was measured
        run.error("interrupted by the time limit; results are partial")
    except Exception as e:  # noqa: BLE001 - a forge error or a failed check ends the run, reported
        run.error(f"{type(e).__name__}: {e}")
    run.save()
    print_summary(run)
    return 1 if run.failed() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
