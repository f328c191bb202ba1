"""CISPO forward+backward: forge's fused kernel against the PyTorch losses a trainer would use instead,
on the same bf16 logits.

Baselines (each serves CISPO, PPO-clip and cross-entropy as DESIGN.md contract 3 defines them; the bench
times CISPO; python/tests/test_bench_baselines.py checks all three modes on CPU tensors against float64):
- eager: log_softmax of the float32-upcast logits, gather, the clipped stop-gradient weight, autograd
  backward, as RL trainers write it. Materialises several [N, V] float32 tensors.
- chunked, Liger-style: the rows in chunks; per chunk the log-sum-exp, the gathered log-probs and the
  gradient (C softmax - S) / Z written straight into dlogits in the logits dtype, so no [N, V] float32
  tensor ever exists (only [chunk, V] ones). torch.compile'd per chunk when this torch has it.
- liger_kernel's fused cross-entropy on the same logits, when the package is installed: not CISPO (one
  target per row, weight 1), a speed reference for a fused Triton loss; the run says when it is absent.
Bandwidth is counted as one read of the logits and one write of dlogits for every implementation (the
eager one moves several times that). Peak memory is the allocator's peak above the inputs, output included.
"""
import ctypes
import math

import torch  # torch_bench.py imports this module only once torch is known to be there

from forge_ctypes import DTYPE_BF16, PG_CISPO, CispoOptions, CispoStats, device_ptr

VOCAB = 151936
EPS_LOW, EPS_HIGH = 1000.0, 0.28  # CISPO (M1): no lower bound; the upper one tuned
MODES = ("cispo", "ppo-clip", "cross-entropy")
CHUNK_BYTES = 256 << 20  # float32 bytes of one chunk's [rows, V] block (Liger sizes its chunks similarly)


class Problem:
    """Logits [rows, vocab] ~ N(0, 2) and 0-3 terms per row (10% none) in shuffled order, as a prefix tree
    emits them; old log-probs near the true ones so that ratios sit near 1 and some are clipped."""

    def __init__(self, torch, seed, rows, vocab=VOCAB, device="cuda", dtype=None):
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        self.rows, self.vocab = rows, vocab
        dtype = dtype or torch.bfloat16
        self.logits = (torch.randn(rows, vocab, device=device, generator=gen) * 2).to(dtype)
        probs = torch.tensor([0.1, 0.7, 0.15, 0.05], device=device)
        counts = torch.multinomial(probs, rows, replacement=True, generator=gen)
        node = torch.repeat_interleave(torch.arange(rows, device=device), counts)
        node = node[torch.randperm(node.numel(), device=device, generator=gen)]
        self.node = node
        self.target = torch.randint(0, vocab, (node.numel(),), device=device, generator=gen)
        self.node32, self.target32 = node.int().contiguous(), self.target.int().contiguous()
        lse = torch.cat([torch.logsumexp(c.float(), dim=-1) for c in self.logits.split(1024)])
        logp = self.logits[node, self.target].float() - lse[node]
        self.old = (logp + 0.3 * torch.randn(node.numel(), device=device, generator=gen)).contiguous()
        self.adv = torch.randn(node.numel(), device=device, generator=gen)
        self.label = f"N={rows} V={vocab} J={node.numel()}"

    def bytes_moved(self):
        return 2.0 * self.logits.element_size() * self.rows * self.vocab


def forge_call(run, p, dlogits, logp, stats=None):
    lib, stream = run.forge.lib, run.stream
    opts = CispoOptions(PG_CISPO, EPS_LOW, EPS_HIGH, 0.0)
    ptr = lambda t, kind: device_ptr(t, stream, kind)
    args = (DTYPE_BF16, p.rows, p.vocab, ptr(p.logits, "bfloat16"), p.node.numel(), ptr(p.node32, "int32"),
            ptr(p.target32, "int32"), ptr(p.old, "float32"), ptr(p.adv, "float32"), ctypes.byref(opts),
            ptr(dlogits, "bfloat16"), ptr(logp, "float32"), ctypes.byref(stats) if stats is not None else None, stream)
    return lambda: run.forge.check(lib.forge_cuda_cispo_loss(*args), "forge_cuda_cispo_loss")


def _bounds(mode, eps_low, eps_high):
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return 1.0 - eps_low, 1.0 + eps_high


def eager_policy_loss(torch, logits, node, target, old, adv, mode="cispo", eps_low=EPS_LOW, eps_high=EPS_HIGH,
                      normalizer=None):
    """The eager baseline: (loss, logp [J] float32, dlogits in the logits dtype) through autograd."""
    lo, hi = _bounds(mode, eps_low, eps_high)
    z = logits.detach().requires_grad_()
    logp = torch.log_softmax(z.float(), dim=-1)[node.long(), target.long()]
    if mode == "cispo":
        terms = torch.exp(logp.detach() - old).clamp(lo, hi) * adv * logp
    elif mode == "ppo-clip":
        ratio = torch.exp(logp - old)
        terms = torch.minimum(ratio * adv, ratio.clamp(lo, hi) * adv)
    else:
        terms = adv * logp
    loss = -terms.sum() / (normalizer or node.numel())
    (grad,) = torch.autograd.grad(loss, z)
    return loss.detach(), logp.detach(), grad


def eager_cispo(torch, p):
    return eager_policy_loss(torch, p.logits, p.node, p.target, p.old, p.adv)


def _term_values(torch, logp, old, adv, mode, lo, hi):
    """Per term: its contribution to -Z loss, and its derivative with respect to logp (the coefficient c)."""
    if mode == "cross-entropy":
        return adv * logp, adv
    ratio = torch.exp(logp - old)
    clipped = ratio.clamp(lo, hi)
    if mode == "cispo":  # the weight is a constant (stop-gradient)
        return clipped * adv * logp, clipped * adv
    unclipped, capped = ratio * adv, clipped * adv  # PPO: the clipped branch carries no gradient
    return torch.minimum(unclipped, capped), torch.where(unclipped <= capped, unclipped, torch.zeros_like(unclipped))


def chunk_step(z_in, node, target, old, adv, mode, lo, hi, inv_z):
    """One chunk of rows: (-sum of its terms / Z, logp of its terms, its dlogits in z_in's dtype). node is
    the row inside the chunk. dlogits = (c_row softmax - sum of c_j at the target) / Z, contract 3."""
    z = z_in.float()
    lse = torch.logsumexp(z, dim=-1)
    logp = z[node, target] - lse[node]
    value, coef = _term_values(torch, logp, old, adv, mode, lo, hi)
    row_coef = torch.zeros_like(lse).index_add_(0, node, coef)
    grad = torch.sub(z, lse[:, None]).exp_().mul_((row_coef * inv_z)[:, None])  # never in place on z_in
    grad.index_put_((node, target), -coef * inv_z, accumulate=True)
    return -value.sum() * inv_z, logp, grad.to(z_in.dtype)


def compiled_chunk_step(torch):
    """(step, how): chunk_step torch.compile'd (dynamic shapes: the last chunk and the terms per chunk
    vary) when torch has torch.compile, else chunk_step itself."""
    if not hasattr(torch, "compile"):
        return chunk_step, f"eager (torch {torch.__version__} has no torch.compile)"
    return torch.compile(chunk_step, dynamic=True), "torch.compile'd"


def chunked_policy_loss(torch, logits, node, target, old, adv, mode="cispo", eps_low=EPS_LOW, eps_high=EPS_HIGH,
                        normalizer=None, chunk_rows=None, step=chunk_step):
    """The Liger-style baseline: (loss, logp [J] float32, dlogits in the logits dtype), chunk by chunk over
    the rows; float32 temporaries are [chunk_rows, V] at most."""
    lo, hi = _bounds(mode, eps_low, eps_high)
    rows, vocab = logits.shape
    chunk_rows = chunk_rows or max(1, CHUNK_BYTES // (4 * vocab))
    inv_z = 1.0 / (normalizer or node.numel())
    order = torch.argsort(node)  # the terms grouped by row, so each chunk's terms are one slice
    node_s = node.long()[order]
    target_s, old_s, adv_s = target.long()[order], old[order], adv[order]
    starts = list(range(0, rows, chunk_rows)) + [rows]
    at = torch.searchsorted(node_s, torch.tensor(starts, device=node_s.device)).tolist()
    dlogits = torch.empty_like(logits)
    logp = torch.empty(node.numel(), dtype=torch.float32, device=logits.device)
    loss = torch.zeros((), dtype=torch.float32, device=logits.device)
    for c in range(len(starts) - 1):
        r0, r1, t0, t1 = starts[c], starts[c + 1], at[c], at[c + 1]
        part, lp, grad = step(logits[r0:r1], node_s[t0:t1] - r0, target_s[t0:t1], old_s[t0:t1], adv_s[t0:t1],
                              mode, lo, hi, inv_z)
        dlogits[r0:r1] = grad
        logp[order[t0:t1]] = lp
        loss += part
    return loss, logp, dlogits


def liger_cross_entropy(torch):
    """(call(logits, labels) -> (loss, dlogits), None) from liger_kernel, or (None, why) when it is absent.
    Liger's fused cross-entropy writes the gradient over its input, so `logits` must be a scratch copy."""
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except Exception as e:  # noqa: BLE001 - absent or broken: the bench says which and goes on
        return None, f"liger_kernel is not installed here ({type(e).__name__}: {str(e)[:120]})"
    loss_fn = LigerCrossEntropyLoss(reduction="sum", ignore_index=-100)

    def call(scratch, labels):
        x = scratch.detach().requires_grad_()
        loss = loss_fn(x, labels)
        (grad,) = torch.autograd.grad(loss, x)
        return loss.detach(), grad

    return call, None


def _peak(run, fn):
    return run.peak_bytes(fn) if hasattr(run, "peak_bytes") else None


def run_chunked(run, p, forge_ms, forge_stats, dlogits, logp):
    """The Liger-style baseline on the bench problem: checked against forge, then timed."""
    torch = run.torch
    step, how = chunk_step, "eager (--skip compile)"
    if "compile" not in run.args.skip.split(","):
        step, how = compiled_chunk_step(torch)
    call = lambda s: chunked_policy_loss(torch, p.logits, p.node, p.target, p.old, p.adv, step=s)
    try:
        loss, c_logp, c_grad = call(step)
    except Exception as e:  # noqa: BLE001 - a compile failure: the eager chunks are still a baseline
        if step is chunk_step:
            raise
        step, how = chunk_step, f"eager: torch.compile failed ({type(e).__name__}: {str(e)[:200]})"
        loss, c_logp, c_grad = call(step)
    run.note(f"chunked CISPO (Liger-style) per-chunk step: {how}")
    name = f"chunked cispo (Liger-style, {'eager' if step is chunk_step else 'compiled'})"
    run.compare("cispo", f"{name} vs forge dlogits {p.label}", c_grad, dlogits, 1e-2)
    run.compare("cispo", f"{name} vs forge logp {p.label}", c_logp, logp, 1e-4)
    run.scalar("cispo", f"{name} vs forge loss {p.label}", loss.item(), forge_stats.loss, 1e-4)
    del loss, c_logp, c_grad
    ms = run.time_ms(lambda: call(step))
    run.bandwidth("cispo", f"{name} fwd+bwd {p.label}", ms, p.bytes_moved(), forge_ms, _peak(run, lambda: call(step)))


def run_liger(run, p, forge_ms):
    """liger_kernel's fused cross-entropy on the same logits (one target per row): a speed reference."""
    torch = run.torch
    call, why = liger_cross_entropy(torch)
    if call is None:
        run.skip(f"Liger fused cross-entropy at {p.label}: {why}")
        return
    labels = torch.full((p.rows,), -100, dtype=torch.long, device=p.logits.device)
    labels[p.node] = p.target  # a row with several terms keeps one of them
    rows = labels >= 0
    node, target = torch.nonzero(rows).flatten(), labels[rows]
    ones = torch.ones(node.numel(), device=p.logits.device)
    ref_loss, _, ref_grad = chunked_policy_loss(torch, p.logits, node, target, ones, ones, mode="cross-entropy",
                                                normalizer=1.0)
    scratch = p.logits.clone()
    try:
        loss, grad = call(scratch, labels)
        name = "liger fused cross-entropy (not CISPO)"  # one target per row, weight 1
        run.compare("cispo", f"{name} vs chunked dlogits {p.label}", grad, ref_grad, 1e-2)
        run.scalar("cispo", f"{name} vs chunked loss {p.label}", loss.item(), ref_loss.item(), 1e-3)
        del loss, grad, ref_grad
        ms = run.time_ms(lambda: call(scratch, labels))  # on its own earlier output: same work, finite values
        run.bandwidth("cispo", f"{name} fwd+bwd {p.label}", ms, p.bytes_moved(), forge_ms,
                      _peak(run, lambda: call(scratch, labels)))
    except Exception as e:  # noqa: BLE001 - an API this script does not know: reported, not fatal
        run.skip(f"Liger fused cross-entropy at {p.label}: {type(e).__name__}: {str(e)[:200]}")


def run_cispo(run, rows):
    torch = run.torch
    p = Problem(torch, int(run.rng.integers(0, 2**62)), rows)
    dlogits = torch.empty_like(p.logits)
    logp = torch.empty(p.node.numel(), device="cuda", dtype=torch.float32)
    for t in (dlogits, logp):
        t.view(torch.uint8).fill_(0xFF)  # poison: unwritten elements are NaN
    stats = CispoStats()
    forge_call(run, p, dlogits, logp, stats)()  # with stats: waits for the stream
    run.written("cispo", f"forge dlogits {p.label}", dlogits)
    forge_ms = run.time_ms(forge_call(run, p, dlogits, logp))
    def forge_fresh_outputs():  # its outputs, allocated by torch and alive through the call; forge's
        out = (torch.empty_like(p.logits), torch.empty_like(logp))  # O(N + J) scratch is CUDA's pool's
        forge_call(run, p, *out)()
        return out

    forge_peak = _peak(run, forge_fresh_outputs)
    run.bandwidth("cispo", f"forge cispo fwd+bwd {p.label}", forge_ms, p.bytes_moved(), None, forge_peak)
    try:
        loss, ref_logp, grad = eager_cispo(torch, p)
        run.compare("cispo", f"forge vs eager dlogits {p.label}", dlogits, grad, 1e-2)
        run.compare("cispo", f"forge vs eager logp {p.label}", logp, ref_logp, 1e-4)
        ref_loss = loss.item()
        run.scalar("cispo", f"forge vs eager loss {p.label}", stats.loss, ref_loss, 1e-4)
        del loss, ref_logp, grad
        eager_ms = run.time_ms(lambda: eager_cispo(torch, p))
        run.bandwidth("cispo", f"eager torch cispo fwd+bwd {p.label}", eager_ms, p.bytes_moved(), forge_ms,
                      _peak(run, lambda: eager_cispo(torch, p)))
    except torch.cuda.OutOfMemoryError as e:
        run.skip(f"eager CISPO at {p.label}: out of memory ({str(e)[:200]})")
        return False
    finally:
        torch.cuda.empty_cache()
    run_chunked(run, p, forge_ms, stats, dlogits, logp)
    torch.cuda.empty_cache()
    if "liger" not in run.args.skip.split(","):
        run_liger(run, p, forge_ms)
        torch.cuda.empty_cache()
    if math.isfinite(stats.loss):
        run.note(f"cispo {p.label}: loss {stats.loss:.5g}, mean ratio {stats.mean_ratio:.4g}, "
                 f"clipped high {stats.clip_frac_high:.3g}, entropy {stats.mean_entropy:.4g}")
    return True
