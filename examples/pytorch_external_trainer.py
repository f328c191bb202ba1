#!/usr/bin/env python3
"""The external trainer of forge-rl's loop, in PyTorch on forge's kernels.

`npm run demo -- --upstream-url <OpenAI-compatible server>` does not train in-process: it exports each
training batch as JSONL (demo-out/batches.jsonl, lib/demo/batchExport.ts: one line per trainable call
with step, group_id, prompt_ids, completion_ids, logprobs, versions, advantage, ...). This script reads
such a file and, step by step, builds the step's prefix tree (forge_kernels.PrefixTree: calls that share
context merged, each shared token computed once), runs a small transformer over the tree (its attention
is forge_kernels.tree_attention), takes the CISPO loss (forge_kernels.cispo_loss) and steps AdamW.
It prints per-step loss, token counts and the tree's token reduction. --check verifies on the first step
that the loss and every parameter gradient on the tree equal the sample-by-sample computation.

    /usr/bin/python3 examples/pytorch_external_trainer.py --batches demo-out/batches.jsonl --check

Needs PyTorch (1.13 or newer) and libforge_kernels (build/Release/, from `npm install`; or
$FORGE_KERNELS_LIB). The policy here is a toy: a real trainer puts its own model where ToyPolicy is.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

import torch  # noqa: E402

from forge_kernels import PrefixTree, cispo_loss, tree_attention  # noqa: E402

FIELDS = ("step", "prompt_ids", "completion_ids", "logprobs", "advantage")


def read_batches(path):
    """{step: [line, ...]} in file order; each line checked against the exporter's format."""
    steps = {}
    with open(path) as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            line = json.loads(text)
            for field in FIELDS:
                if field not in line:
                    raise ValueError(f"{path}:{number}: missing field {field!r} (expected batchExport.ts lines)")
            if len(line["logprobs"]) != len(line["completion_ids"]):
                raise ValueError(f"{path}:{number}: logprobs has {len(line['logprobs'])} entries for "
                                 f"{len(line['completion_ids'])} completion tokens")
            if not line["prompt_ids"] or not line["completion_ids"]:
                raise ValueError(f"{path}:{number}: empty prompt_ids or completion_ids")
            steps.setdefault(line["step"], []).append(line)
    return steps


def to_sample(line):
    """One call -> one sample: prompt + completion tokens, a loss term on every completion token."""
    P, C = len(line["prompt_ids"]), len(line["completion_ids"])
    versions = line.get("versions") or [line.get("version", 0)]
    return dict(tokens=line["prompt_ids"] + line["completion_ids"], trainable=[0] * P + [1] * C,
                old_logprobs=[0.0] * P + line["logprobs"], advantage=float(line["advantage"]), version=min(versions))


def rope(x, positions):
    """Rotate-half rotary embedding of x [N, H, D] at integer positions [N]."""
    half = x.shape[-1] // 2
    freq = 10000.0 ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)
    angle = positions.float()[:, None] * freq[None, :]
    cos, sin = angle.cos()[:, None, :], angle.sin()[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Block(torch.nn.Module):
    def __init__(self, dim, heads, kv_heads, head_dim):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, (heads + 2 * kv_heads) * head_dim, bias=False)
        self.out = torch.nn.Linear(heads * head_dim, dim, bias=False)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 4 * dim), torch.nn.GELU(), torch.nn.Linear(4 * dim, dim))

    def forward(self, x, tree):
        n, D = x.shape[0], self.head_dim
        q, k, v = self.qkv(self.norm1(x)).split([self.heads * D, self.kv_heads * D, self.kv_heads * D], dim=-1)
        q = rope(q.reshape(n, self.heads, D), tree["position"]).contiguous()
        k = rope(k.reshape(n, self.kv_heads, D), tree["position"]).contiguous()
        o, _ = tree_attention(q, k, v.reshape(n, self.kv_heads, D).contiguous(), tree["subtree_end"],
                              parent=tree["parent"])
        x = x + self.out(o.reshape(n, self.heads * D))
        return x + self.mlp(self.norm2(x))


class ToyPolicy(torch.nn.Module):
    """A small decoder-only transformer over a prefix tree: each node's logits see only its root path."""

    def __init__(self, vocab, dim, layers, heads, kv_heads, head_dim):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList(Block(dim, heads, kv_heads, head_dim) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, vocab, bias=False)

    def forward(self, tree):
        """tree: token, position, parent, subtree_end ([N] int32 each). Returns logits [N, vocab]."""
        x = self.embed(tree["token"].long())
        for block in self.blocks:
            x = block(x, tree)
        return self.head(self.norm(x))


def tree_inputs(tree):
    return {k: getattr(tree, k) for k in ("token", "position", "parent", "subtree_end")}


def chain_inputs(tokens, device):
    """One sample alone, unmerged: a chain 0 -> 1 -> ... -> L-1."""
    L = len(tokens)
    i32 = dict(dtype=torch.int32, device=device)
    return {"token": torch.tensor(tokens, **i32), "position": torch.arange(L, **i32),
            "parent": torch.arange(-1, L - 1, **i32), "subtree_end": torch.full((L,), L, **i32)}


def check_exactness(model, tree, samples, loss_opts, device):
    """Loss and gradients on the tree vs on each sample alone (its terms written out from contract 1)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss_tree, _ = cispo_loss(model(tree_inputs(tree)), *tree.terms[:4], normalizer=tree.num_terms, **loss_opts)
    grads_tree = torch.autograd.grad(loss_tree, params)
    total, scale = 0.0, 0.0
    for s in samples:
        ts = [t for t in range(1, len(s["tokens"])) if s["trainable"][t]]
        terms = (torch.tensor([t - 1 for t in ts], dtype=torch.int32, device=device),
                 torch.tensor([s["tokens"][t] for t in ts], dtype=torch.int32, device=device),
                 torch.tensor([s["old_logprobs"][t] for t in ts], dtype=torch.float32, device=device),
                 torch.full((len(ts),), s["advantage"], dtype=torch.float32, device=device))
        loss_s, _ = cispo_loss(model(chain_inputs(s["tokens"], device)), *terms, normalizer=tree.num_terms, **loss_opts)
        total = total + loss_s
        scale += abs(loss_s.item())
    grads_ref = torch.autograd.grad(total, params)
    worst = max(float((g - r).abs().max()) / max(float(r.abs().max()), 1e-12) for g, r in zip(grads_tree, grads_ref))
    # Relative to the per-sample losses' magnitudes: advantages of both signs can make the total nearly
    # cancel, and float32 rounding is then large against the total but not against its terms.
    loss_err = abs(loss_tree.item() - total.item()) / max(scale, 1e-12)
    return {"loss_tree": loss_tree.item(), "loss_samples": total.item(), "loss_rel_err": loss_err, "loss_scale": scale,
            "grad_rel_err": worst, "ok": loss_err <= 1e-5 and worst <= 1e-5}


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used by this torch: reported as one line, exit status 2."""


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", required=True, help="JSONL exported by `npm run demo -- --upstream-url ...`")
    ap.add_argument("--steps", type=int, default=None, help="train on at most this many steps of the file")
    ap.add_argument("--check", action="store_true", help="verify tree == sample-by-sample on the first step")
    ap.add_argument("--vocab-size", type=int, default=None, help="default: the largest token id in the file + 1")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--head-dim", type=int, default=64, help="64 or 128 on a GPU; any size on the CPU")
    ap.add_argument("--mode", default="cispo", choices=("cispo", "ppo-clip", "cross-entropy"))
    ap.add_argument("--eps-high", type=float, default=None, help="upper clip 1 + eps_high (default 4: ratio cap 5)")
    ap.add_argument("--eps-low", type=float, default=None, help="lower clip 1 - eps_low (CISPO default: none)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (forge's device kernels on torch's stream)")
    return ap.parse_args(argv)


def main(argv=None, out=sys.stdout):
    """Trains on the file; returns a summary (per-step records and the check). Exit status 1 when --check fails."""
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    steps = read_batches(args.batches)
    if not steps:
        raise ValueError(f"{args.batches}: no batches")
    order = sorted(steps)[: args.steps]
    vocab = args.vocab_size or 1 + max(max(l["prompt_ids"] + l["completion_ids"]) for s in order for l in steps[s])
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"--device {args.device}: this torch ({torch.__version__}) has no usable CUDA device "
                                f"({'built without CUDA' if torch.version.cuda is None else 'no GPU visible'}); "
                                "use --device cpu")
    model = ToyPolicy(vocab, args.dim, args.layers, args.heads, args.kv_heads, args.head_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_opts = dict(mode=args.mode, eps_low=args.eps_low, eps_high=args.eps_high)
    print(f"external trainer: {len(order)} steps from {args.batches}, vocab {vocab}, "
          f"{sum(p.numel() for p in model.parameters())} parameters on {device}", file=out)
    summary = {"steps": [], "check": None}
    for step in order:
        started = time.perf_counter()
        samples = [to_sample(line) for line in steps[step]]
        tree = PrefixTree.build(samples, vocab_size=vocab, device=device)
        if args.check and summary["check"] is None:
            summary["check"] = check_exactness(model, tree, samples, loss_opts, device)
            c = summary["check"]
            print(f"check: loss on the tree {c['loss_tree']:.8g}, sample by sample {c['loss_samples']:.8g} "
                  f"(rel err {c['loss_rel_err']:.2g} of the per-sample losses' summed magnitude "
                  f"{c['loss_scale']:.4g}); worst gradient rel err {c['grad_rel_err']:.2g}: "
                  f"{'ok' if c['ok'] else 'FAILED'}", file=out)
        optimizer.zero_grad(set_to_none=True)
        loss, stats = cispo_loss(model(tree_inputs(tree)), *tree.terms[:4], **loss_opts)
        loss.backward()
        optimizer.step()
        record = {"step": step, "samples": tree.num_samples, "input_tokens": tree.input_tokens,
                  "tree_tokens": tree.num_nodes, "reduction": tree.stats["ratio"], "terms": tree.num_terms,
                  "loss": loss.item(), "mean_ratio": stats.mean_ratio, "clip_frac_high": stats.clip_frac_high,
                  "entropy": stats.mean_entropy, "seconds": time.perf_counter() - started}
        summary["steps"].append(record)
        print(f"step {step}: {record['samples']} samples, {record['input_tokens']} tokens -> {record['tree_tokens']} "
              f"in the tree ({record['reduction']:.2f}x fewer), {record['terms']} terms, loss {record['loss']:.5f}, "
              f"mean ratio {stats.mean_ratio:.3f}, clipped {100 * stats.clip_frac_high:.1f}%, entropy "
              f"{stats.mean_entropy:.2f}, {record['seconds']:.2f} s", file=out)
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"step {step}: the loss is {record['loss']}")
    return summary


if __name__ == "__main__":
    try:
        result = main()
    except DeviceUnavailable as e:
        print(f"pytorch_external_trainer: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result["check"] is not None and not result["check"]["ok"] else 0)
