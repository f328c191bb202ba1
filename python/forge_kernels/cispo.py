"""The CISPO policy-gradient loss (DESIGN.md contract 3) — and PPO-clip and cross-entropy through the same
fused kernel — as a torch.autograd.Function.

For term j at node n with target y: logp = z[n,y] - logsumexp(z[n,:]), r = exp(logp - old_logprob),
w = clip(r, 1 - eps_low, 1 + eps_high) under a stop-gradient, loss = -(1/Z) sum_j w_j A_j logp_j.
The kernel computes the loss and dlogits in one pass over the logits (no [N, V] softmax); the
forward keeps dlogits and the backward only scales them by the incoming gradient.
"""
import ctypes
import math
from dataclasses import dataclass

import torch

from . import _abi, _tensors

MODES = {"cispo": _abi.PG_CISPO, "ppo-clip": _abi.PG_PPO_CLIP, "cross-entropy": _abi.PG_CROSS_ENTROPY}
# MiniMax-M1 sets no lower bound on the IS weight and tunes the upper one; peers cap the ratio near 5
# (TRL's cispo epsilon_high 5.0, Tinker's clip threshold 4): 1 + eps_high = 5. PPO: the usual 0.2.
DEFAULT_EPS = {"cispo": (math.inf, 4.0), "ppo-clip": (0.2, 0.2), "cross-entropy": (math.inf, 4.0)}
INDEX = (torch.int32,)


@dataclass
class CispoStats:
    """What forge_cispo_loss reports for a batch (DESIGN.md contract 3), plus logp of each term."""
    loss: float
    mean_ratio: float          # mean of r over terms
    clip_frac_high: float      # fraction of terms with r > 1 + eps_high
    clip_frac_low: float       # fraction of terms with r < 1 - eps_low
    clip_frac_pos_adv: float   # among terms with A > 0, the fraction with r > 1 + eps_high
    clip_frac_neg_adv: float   # among terms with A < 0, the fraction with r < 1 - eps_low
    mean_entropy: float        # mean softmax entropy (nats) over rows carrying terms
    mean_logprob: float
    num_terms: int
    num_rows: int              # rows carrying at least one term
    logprobs: torch.Tensor     # [J] float32 logp_j, on the logits' device


def launch(lib, dtype, num_rows, vocab, logits, num_terms, node, target, old, adv, options, dlogits, logprobs, stats,
           stream=None):
    """forge_cispo_loss (stream None) or forge_cuda_cispo_loss on `stream`, with plain pointers (ints)."""
    if stream is not None:
        lib.call("forge_cuda_cispo_loss", dtype, num_rows, vocab, logits, num_terms, node, target, old, adv,
                 ctypes.byref(options), dlogits, logprobs, ctypes.byref(stats), stream)
    else:
        lib.call("forge_cispo_loss", num_rows, vocab, logits, num_terms, node, target, old, adv, ctypes.byref(options),
                 dlogits, logprobs, ctypes.byref(stats))


class _CispoLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, node, target, old, adv, options, report):
        lib = _abi.load_library()
        dlogits = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        logprobs = torch.empty(node.numel(), dtype=torch.float32, device=logits.device)
        stats = _abi.CispoStats()
        stream = _tensors.cuda_stream(lib, logits, "logits") if logits.is_cuda else None
        p = _tensors.ptr
        launch(lib, _tensors.DTYPE_CODES[logits.dtype], logits.shape[0], logits.shape[1], p(logits), node.numel(),
               p(node), p(target), p(old), p(adv), options, p(dlogits), p(logprobs), stats, stream=stream)
        report.append((stats, logprobs))
        ctx.dlogits = dlogits
        return torch.tensor(stats.loss, dtype=torch.float32, device=logits.device)

    @staticmethod
    def backward(ctx, grad_loss):
        dlogits, ctx.dlogits = ctx.dlogits, None
        if dlogits is None:
            raise RuntimeError("cispo_loss: backward ran twice: the kept dlogits are scaled in place by the first "
                               "(retain_graph is not supported; compute the loss again)")
        # Scaled in place: dlogits can be as large as the logits, a second [N, V] buffer is not affordable.
        return dlogits.mul_(grad_loss.to(dlogits.dtype)), None, None, None, None, None, None


def _eps(name, value, default):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise ValueError(f"{name}: expected a number >= 0 (math.inf: no bound), got {value!r}")
    return float(value)


def cispo_loss(logits, node, target, old_logprob, advantage, mode="cispo", eps_low=None, eps_high=None,
               normalizer=None):
    """The policy-gradient loss over logits [N, V] (one row per tree node): returns (loss, CispoStats).

    node, target: int32 [J] (PrefixTree.terms.node / .target); old_logprob, advantage: float32 [J]; all
    on the logits' device, contiguous. CPU logits: float32; CUDA logits: float32 or bfloat16.
    mode: 'cispo' (default), 'ppo-clip' or 'cross-entropy' (weight 1 on every term; eps ignored).
    eps_low, eps_high: clip bounds 1 - eps_low, 1 + eps_high (math.inf: none); defaults: CISPO no lower
    bound and 1 + eps_high = 5, PPO 0.2 each. normalizer: Z > 0 (default: the number of terms J here;
    pass the global batch's J when the batch is split across calls).

    loss is a 0-d float32 tensor; loss.backward() gives logits.grad = d loss / d logits, computed in the
    forward pass and kept until then (as large as the logits). On CUDA the call waits for the stream
    (the stats are read on the host). Node or target ids out of range raise ValueError; NaN/Inf logits
    raise ForgeError with code FORGE_ERR_NON_FINITE naming the row.
    """
    f32 = dict(cpu_dtypes=_tensors.F32, cuda_dtypes=_tensors.F32)
    _tensors.check("logits", logits, ndim=2, cuda_dtypes=(torch.float32, torch.bfloat16))
    N, V = logits.shape
    _tensors.check("node", node, ndim=1, cpu_dtypes=INDEX, cuda_dtypes=INDEX, like=("logits", logits))
    J = node.numel()
    _tensors.check("target", target, shape=(J,), cpu_dtypes=INDEX, cuda_dtypes=INDEX, like=("logits", logits))
    _tensors.check("old_logprob", old_logprob, shape=(J,), like=("logits", logits), **f32)
    _tensors.check("advantage", advantage, shape=(J,), like=("logits", logits), **f32)
    if mode not in MODES:
        raise ValueError(f"mode: expected 'cispo', 'ppo-clip' or 'cross-entropy', got {mode!r}")
    low, high = DEFAULT_EPS[mode]
    options = _abi.CispoOptions(MODES[mode], _eps("eps_low", eps_low, low), _eps("eps_high", eps_high, high), 0.0)
    if normalizer is not None:
        if isinstance(normalizer, bool) or not isinstance(normalizer, (int, float)) or not math.isfinite(normalizer) \
                or normalizer <= 0:
            raise ValueError(f"normalizer: expected a finite number > 0, got {normalizer!r}")
        options.normalizer = float(normalizer)
    # Checked here on both devices (the device kernel trusts its index arrays): the same ValueError everywhere.
    _tensors.check_int_range("node", node, 0, N)
    _tensors.check_int_range("target", target, 0, V)
    report = []
    loss = _CispoLoss.apply(logits, node, target, old_logprob, advantage, options, report)
    stats, logprobs = report[0]
    fields = {name: getattr(stats, name) for name, _ in _abi.CispoStats._fields_}
    return loss, CispoStats(**fields, logprobs=logprobs)
