"""CISPO forward+backward: forge's fused kernel against eager PyTorch on the same bf16 logits.

Eager baseline, as RL trainers write it: log_softmax of the float32-upcast logits, gather of the
target log-probs, the CISPO weight clip(exp(logp - old), 1 - eps_low, 1 + eps_high) under a stop-
gradient, loss = -(1/Z) sum w A logp, autograd backward to the bf16 logits. Bandwidth is counted as one
read of the logits and one write of dlogits for both (the eager version moves several times that).
"""
import ctypes
import math

from forge_ctypes import DTYPE_BF16, PG_CISPO, CispoOptions, CispoStats, device_ptr

VOCAB = 151936
EPS_LOW, EPS_HIGH = 1000.0, 0.28  # CISPO (M1): no lower bound; the upper one tuned


class Problem:
    def __init__(self, run, rows, vocab=VOCAB):
        torch = run.torch
        gen = torch.Generator(device="cuda")
        gen.manual_seed(int(run.rng.integers(0, 2**62)))
        self.rows, self.vocab = rows, vocab
        self.logits = torch.randn(rows, vocab, device="cuda", dtype=torch.bfloat16, generator=gen) * 2
        # 0-3 terms per row (10% none), shuffled as a prefix tree emits them.
        probs = torch.tensor([0.1, 0.7, 0.15, 0.05], device="cuda")
        counts = torch.multinomial(probs, rows, replacement=True, generator=gen)
        node = torch.repeat_interleave(torch.arange(rows, device="cuda"), counts)
        node = node[torch.randperm(node.numel(), device="cuda", generator=gen)]
        self.node = node
        self.target = torch.randint(0, vocab, (node.numel(),), device="cuda", generator=gen)
        self.node32, self.target32 = node.int().contiguous(), self.target.int().contiguous()
        # Old log-probs near the true ones, so ratios sit near 1 and some are clipped.
        lse = torch.cat([torch.logsumexp(c.float(), dim=-1) for c in self.logits.split(1024)])
        logp = self.logits[node, self.target].float() - lse[node]
        self.old = (logp + 0.3 * torch.randn(node.numel(), device="cuda", generator=gen)).contiguous()
        self.adv = torch.randn(node.numel(), device="cuda", generator=gen)
        self.label = f"N={rows} V={vocab} J={node.numel()}"

    def bytes_moved(self):
        return 2.0 * 2 * self.rows * self.vocab


def forge_call(run, p, dlogits, logp, stats=None):
    lib, stream = run.forge.lib, run.stream
    opts = CispoOptions(PG_CISPO, EPS_LOW, EPS_HIGH, 0.0)
    ptr = lambda t, kind: device_ptr(t, stream, kind)
    args = (DTYPE_BF16, p.rows, p.vocab, ptr(p.logits, "bfloat16"), p.node.numel(), ptr(p.node32, "int32"),
            ptr(p.target32, "int32"), ptr(p.old, "float32"), ptr(p.adv, "float32"), ctypes.byref(opts),
            ptr(dlogits, "bfloat16"), ptr(logp, "float32"), ctypes.byref(stats) if stats is not None else None, stream)
    return lambda: run.forge.check(lib.forge_cuda_cispo_loss(*args), "forge_cuda_cispo_loss")


def eager_cispo(torch, p):
    logits = p.logits.detach().requires_grad_()
    logp_all = torch.log_softmax(logits.float(), dim=-1)
    logp = logp_all[p.node, p.target]
    weight = torch.exp(logp.detach() - p.old).clamp(1 - EPS_LOW, 1 + EPS_HIGH)
    loss = -(weight * p.adv * logp).sum() / p.node.numel()
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), logp.detach(), grad


def run_cispo(run, rows):
    torch = run.torch
    p = Problem(run, rows)
    dlogits = torch.empty_like(p.logits)
    logp = torch.empty(p.node.numel(), device="cuda", dtype=torch.float32)
    for t in (dlogits, logp):
        t.view(torch.uint8).fill_(0xFF)  # poison: unwritten elements are NaN
    stats = CispoStats()
    forge_call(run, p, dlogits, logp, stats)()  # with stats: waits for the stream
    run.written("cispo", f"forge dlogits {p.label}", dlogits)
    forge_ms = run.time_ms(forge_call(run, p, dlogits, logp))
    run.bandwidth("cispo", f"forge cispo fwd+bwd {p.label}", forge_ms, p.bytes_moved(), None)
    try:
        loss, ref_logp, grad = eager_cispo(torch, p)
        run.compare("cispo", f"forge vs eager dlogits {p.label}", dlogits, grad, 1e-2)
        run.compare("cispo", f"forge vs eager logp {p.label}", logp, ref_logp, 1e-4)
        ref_loss = loss.item()
        run.scalar("cispo", f"forge vs eager loss {p.label}", stats.loss, ref_loss, 1e-4)
        del loss, ref_logp, grad
        eager_ms = run.time_ms(lambda: eager_cispo(torch, p))
        run.bandwidth("cispo", f"eager torch cispo fwd+bwd {p.label}", eager_ms, p.bytes_moved(), forge_ms)
    except torch.cuda.OutOfMemoryError as e:
        run.skip(f"eager CISPO at {p.label}: out of memory ({str(e)[:200]})")
        return False
    finally:
        torch.cuda.empty_cache()
    if math.isfinite(stats.loss):
        run.note(f"cispo {p.label}: loss {stats.loss:.5g}, mean ratio {stats.mean_ratio:.4g}, "
                 f"clipped high {stats.clip_frac_high:.3g}, entropy {stats.mean_entropy:.4g}")
    return True
