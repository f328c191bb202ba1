#!/usr/bin/env python3
"""Joins the C++ bench's JSON lines and the PyTorch bench's JSON into one short table (printed) and a
markdown entry for bench/RESULTS.md. Standard library only. Exit status 1 when either side recorded a
failed check or an error, 0 otherwise."""
import argparse
import json
import os
import sys


def load(args):
    sections = []
    if os.path.exists(args.jsonl):
        with open(args.jsonl) as f:
            sections = [json.loads(line) for line in f if line.strip()]
    torch = None
    if args.torch and os.path.exists(args.torch):
        with open(args.torch) as f:
            torch = json.load(f)
    return sections, torch


def pct(x):
    return f"{100 * x:.0f}%" if isinstance(x, (int, float)) else "-"


def num(x):
    return f"{x:.4g}" if isinstance(x, (int, float)) else "-"


def build(sections, torch, commit):
    dev = sections[0]["device"] if sections else {}
    gpu = dev.get("name") or (torch or {}).get("device", "unknown GPU")
    date = (sections[0] if sections else torch or {}).get("date", "")[:10]
    md, short, failed = [], [], False
    emulated = any(s.get("emulator") for s in sections)
    md.append(f"## {date} · {gpu} · commit {commit} · GPU bench (bench/gpu/run.sh{' --emulator' if emulated else ''})\n")
    if emulated:
        note = ("ON THE CPU EMULATOR (cuda/simt/), tiny problems (--smoke): the correctness checks are real; "
                "every time and rate is host time, NOT a GPU result, and no target is judged.")
        md.append(note + "\n")
        short.append(note)
    if sections:
        copies = [s["ceilings"]["copy_gbps"] for s in sections if s["ceilings"].get("copy_gbps")]
        gemms = [s["ceilings"]["gemm_tflops"] for s in sections if s["ceilings"].get("gemm_tflops")]
        md.append(f"Device: {gpu}, cc {dev.get('cc')}, {dev.get('sms')} SMs, L2 {dev.get('l2', 0) / 1e6:.0f} MB. "
                  f"Ceilings measured in each bench process: device-to-device copy "
                  f"{num(min(copies)) if copies else '-'}-{num(max(copies)) if copies else '-'} GB/s (read+write), "
                  f"cuBLAS bf16 GEMM {num(min(gemms)) if gemms else '-'}-{num(max(gemms)) if gemms else '-'} TFLOP/s "
                  f"({sections[0]['ceilings'].get('gemm_note', '')}). Seeds "
                  f"{', '.join(str(s['seed']) for s in sections)}; medians of {sections[0].get('reps')} timed runs "
                  f"after warm-up.\n")
        checks = [c for s in sections for c in s["checks"]]
        bad = [c for c in checks if not c["pass"]]
        errors = [e for s in sections for e in s["errors"]]
        failed |= bool(bad or errors)
        md.append(f"Correctness (device vs CPU kernels, fresh random inputs, outputs poisoned): "
                  f"{len(checks) - len(bad)}/{len(checks)} checks passed; worst relative L2 error "
                  f"{num(max((c['rel_err'] for c in checks if c['rel_err'] is not None), default=0))}.\n")
        for c in bad:
            line = (f"FAIL {c['section']}: {c['name']} [{c['dtype']} {c['output']}] rel err {num(c['rel_err'])} "
                    f"(bound {c['bound']:g}), unwritten/non-finite {c['unwritten_or_non_finite']}")
            md.append(f"- {line}")
            short.append(line)
        for e in errors:
            md.append(f"- ERROR {e}")
            short.append(f"ERROR {e}")
        md.append("\n| section | problem | dtype | median ms | rate | % of ceiling | counted |")
        md.append("|---|---|---|---|---|---|---|")
        short.append(f"{'problem':58} {'dtype':5} {'ms':>8} {'rate':>12} {'ceiling':>8}")
        for s in sections:
            for t in s["timings"]:
                emu = t.get("emulated")
                share = "emulator: host time" if emu else f"{pct(t['ratio'])} of {t['ceiling']}"
                md.append(f"| {t['section']} | {t['name']} {t['shape']} | {t['dtype']} | {num(t['median_ms'])} | "
                          f"{num(t['value'])} {t['unit']} | {share} | {t['counted']}"
                          f"{' **' + t['flag'] + '**' if t['flag'] else ''} |")
                short.append(f"{(t['name'] + ' ' + t['shape'])[:58]:58} {t['dtype']:5} {num(t['median_ms']):>8} "
                             f"{num(t['value']) + ' ' + t['unit']:>12} {'emu' if emu else pct(t['ratio']):>8}"
                             f"{' !' if t['flag'] else ''}")
        targets = [t for s in sections for t in s["targets"]]
    else:
        targets = []
        md.append("The C++ bench recorded nothing (see gpu_bench.log).\n")
        short.append("C++ bench: no results")
        failed = True

    if torch:
        tchecks = torch.get("checks", [])
        tbad = [c for c in tchecks if not c["pass"]]
        failed |= bool(tbad or torch.get("errors"))
        tc = torch.get("ceilings", {})
        md.append(f"\nPyTorch {torch.get('torch')} on the same card (ceilings in that process: copy "
                  f"{num(tc.get('copy_gbps'))} GB/s, bf16 matmul {num(tc.get('gemm_tflops'))} TFLOP/s); forge "
                  f"through ctypes + DLPack: {len(tchecks) - len(tbad)}/{len(tchecks)} agreement checks passed.\n")
        md.append("| measurement | median ms | rate | % of ceiling | forge speed-up |")
        md.append("|---|---|---|---|---|")
        short.append("")
        short.append(f"{'torch side':58} {'ms':>8} {'rate':>12} {'forge x':>8}")
        for t in torch.get("timings", []):
            speed = f"{t['forge_speedup']:.2f}x" if t.get("forge_speedup") else ""
            md.append(f"| {t['name']} | {num(t['median_ms'])} | {num(t['value'])} {t['unit']} | {pct(t['ratio'])} | "
                      f"{speed} |")
            short.append(f"{t['name'][:58]:58} {num(t['median_ms']):>8} {num(t['value']) + ' ' + t['unit']:>12} "
                         f"{speed:>8}")
        for c in tbad:
            short.append(f"FAIL torch: {c['name']} rel err {num(c['rel_err'])} (bound {c['bound']:g}), "
                         f"non-finite {c['non_finite']}")
        for text in torch.get("skipped", []) + [f"ERROR {e}" for e in torch.get("errors", [])]:
            md.append(f"- {text}")
            short.append(text)
        targets += torch.get("targets", [])
    else:
        md.append("\nThe PyTorch comparison did not run (see gpu_bench.log).")
        short.append("torch side: no results")

    if targets:
        md.append("\nTargets (issue 7):\n")
        short.append("")
        for t in targets:
            goal = t.get("goal") or f">= {t['threshold']}"
            verdict = "met" if t["met"] else "NOT met"
            value = pct(t["ratio"]) if t.get("goal") else f"{num(t['ratio'])}x"  # share of a ceiling, or a speed-up
            md.append(f"- {t['name']} ({goal}): {value} — **{verdict}**")
            short.append(f"target {t['name']}: {value} ({goal}) {verdict}")
    short.append("")
    short.append("RESULT: " + ("FAILED (see above)" if failed else "all correctness checks passed"))
    return "\n".join(md) + "\n", short, failed


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--torch", default=None)
    ap.add_argument("--md", default=None)
    ap.add_argument("--commit", default="unknown")
    args = ap.parse_args(argv)
    sections, torch = load(args)
    md, short, failed = build(sections, torch, args.commit)
    if args.md:
        with open(args.md, "w") as f:
            f.write(md)
    print("\n== forge GPU bench summary ==")
    print("\n".join(short))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
