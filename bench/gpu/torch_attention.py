"""Tree attention: forge (ctypes + DLPack) against PyTorch on the same agent tree and the same tensors.

Baselines: SDPA with a dense boolean [N, N] tree mask (when it fits in memory; dense masks cost every
pair, attended or not) and FlexAttention with a BlockMask built from a mask_mod on subtree_end
(a <= q < subtree_end[a]), compiled with torch.compile. FLOPs are counted on the attended pairs for
every implementation alike (forward 4*pairs*D per query head, backward 2.5x).
"""
import ctypes

import numpy as np

from forge_ctypes import DTYPE_BF16, AttentionShape, device_ptr

VOCAB = 151936


def random_split(rng, total, parts):
    """`total` split into `parts` positive pieces of random size (0.6x to 1.4x of the mean)."""
    w = 0.6 + 0.8 * rng.random(parts)
    piece = np.maximum(1, (total * w / w.sum()).astype(np.int64))
    i = 0
    while piece.sum() != total:
        if piece.sum() < total:
            piece[i] += 1
        elif piece[i] > 1:
            piece[i] -= 1
        i = (i + 1) % parts
    return piece


def agent_samples(rng, nodes, prefix, branches, turns):
    """Calls of `branches` multi-turn sessions sharing a prefix; each call resends its session's history."""
    shared = rng.integers(0, VOCAB, prefix)
    firsts = rng.choice(VOCAB, size=branches, replace=False)  # distinct: branches part after the prefix
    samples = []
    for b, length in enumerate(random_split(rng, nodes - prefix, branches)):
        branch = rng.integers(0, VOCAB, int(length))
        branch[0] = firsts[b]
        for end in np.cumsum(random_split(rng, int(length), min(turns, int(length)))):
            samples.append(np.concatenate([shared, branch[:end]]))
    return samples


class Problem:
    def __init__(self, run, nodes, prefix, hq, hkv, d):
        torch = run.torch
        tree = run.forge.build_tree(np, agent_samples(run.rng, nodes, prefix, 16, 8), VOCAB)
        self.n, self.hq, self.hkv, self.d = len(tree["parent"]), hq, hkv, d
        self.pairs = int((tree["position"].astype(np.int64) + 1).sum())
        self.label = f"N={self.n} Hq={hq} Hkv={hkv} D={d}"
        dev = torch.device("cuda")
        self.subtree_end = torch.from_numpy(tree["subtree_end"]).to(dev)
        gen = torch.Generator(device=dev)
        gen.manual_seed(int(run.rng.integers(0, 2**62)))
        rand = lambda *shape: torch.randn(*shape, device=dev, dtype=torch.bfloat16, generator=gen)
        self.q, self.k, self.v = rand(self.n, hq, d), rand(self.n, hkv, d), rand(self.n, hkv, d)
        self.d_o = rand(self.n, hq, d)

    def fwd_flops(self):
        return 4.0 * self.pairs * self.d * self.hq

    def heads_first(self, t):  # [N, H, D] -> [1, H, N, D], contiguous (torch's preferred layout)
        return t.transpose(0, 1).unsqueeze(0).contiguous()


def poisoned(torch, shape, dtype=None):
    """A CUDA output buffer filled with NaN bit patterns (all ones), so unwritten elements show."""
    out = torch.empty(*shape, device="cuda", dtype=dtype or torch.bfloat16)
    out.view(torch.uint8).fill_(0xFF)
    return out


def forge_calls(run, p):
    """Closures running forge's forward and backward on the problem's tensors (pointers taken once)."""
    torch, lib, stream = run.torch, run.forge.lib, run.stream
    o, lse = poisoned(torch, p.q.shape), poisoned(torch, (p.n, p.hq), torch.float32)
    dq, dk, dv = poisoned(torch, p.q.shape), poisoned(torch, p.k.shape), poisoned(torch, p.v.shape)
    shape = AttentionShape(p.n, p.hq, p.hkv, p.d, 0.0)
    ptr = lambda t, kind="bfloat16": device_ptr(t, stream, kind)
    q, k, v, se = ptr(p.q), ptr(p.k), ptr(p.v), ptr(p.subtree_end, "int32")
    fwd_args = (ctypes.byref(shape), DTYPE_BF16, q, k, v, se, ptr(o), ptr(lse, "float32"), stream)
    bwd_args = (ctypes.byref(shape), DTYPE_BF16, q, k, v, se, ptr(o), ptr(lse, "float32"), ptr(p.d_o), ptr(dq),
                ptr(dk), ptr(dv), stream)

    def forward():
        run.forge.check(lib.forge_cuda_tree_attention_forward(*fwd_args), "forge_cuda_tree_attention_forward")

    def backward():
        run.forge.check(lib.forge_cuda_tree_attention_backward(*bwd_args), "forge_cuda_tree_attention_backward")

    return forward, backward, {"o": o, "lse": lse, "dq": dq, "dk": dk, "dv": dv}


def sdpa_forward(run, p):
    torch = run.torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    free, _ = torch.cuda.mem_get_info()
    if 3 * p.n * p.n > 0.4 * free:  # the bool mask and the bf16 bias torch makes of it
        raise MemoryError(f"a dense [{p.n}, {p.n}] mask does not fit beside the rest")
    rep = p.hq // p.hkv  # SDPA's efficient kernels take equal head counts: expand K/V for GQA
    qt = p.heads_first(p.q)
    kt = p.heads_first(p.k.repeat_interleave(rep, dim=1))
    vt = p.heads_first(p.v.repeat_interleave(rep, dim=1))
    pos = torch.arange(p.n, device=qt.device)
    mask = (pos[None, :] <= pos[:, None]) & (pos[:, None] < p.subtree_end.long()[None, :])  # [query, key]
    backends = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]  # never the O(N^2)-memory math path

    def forward():
        with sdpa_kernel(backends):
            return torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask)

    return forward


def flex_calls(run, p):
    torch = run.torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    se = p.subtree_end

    def tree_mask(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (q_idx < se[kv_idx])

    try:
        block_mask = create_block_mask(tree_mask, None, None, p.n, p.n, device="cuda", _compile=True)
    except TypeError:  # a torch without the _compile argument
        block_mask = create_block_mask(tree_mask, None, None, p.n, p.n, device="cuda")
    compiled = torch.compile(flex_attention, dynamic=False)
    gqa = p.hq != p.hkv
    qt, kt, vt = (p.heads_first(t).requires_grad_() for t in (p.q, p.k, p.v))
    dot = p.heads_first(p.d_o)

    def forward():
        with torch.no_grad():
            return compiled(qt, kt, vt, block_mask=block_mask, enable_gqa=gqa)

    def forward_backward():
        out = compiled(qt, kt, vt, block_mask=block_mask, enable_gqa=gqa)
        return torch.autograd.grad(out, (qt, kt, vt), dot)

    return forward, forward_backward


def back_to_nodes(t):  # [1, H, N, D] -> [N, H, D]
    return t[0].transpose(0, 1)


def run_problem(run, nodes, prefix, hq, hkv, d, backward, sdpa, target):
    torch = run.torch
    p = Problem(run, nodes, prefix, hq, hkv, d)
    run.note(f"tree {p.label}: {p.pairs} attended pairs (dense causal {p.n * (p.n + 1) // 2})")
    forward, forge_backward, out = forge_calls(run, p)
    forward()
    torch.cuda.synchronize()
    run.written("attention", f"forge fwd {p.label}", out["o"])
    run.written("attention", f"forge fwd {p.label} lse", out["lse"])
    forge_ms = run.time_ms(forward)
    run.rate("attention", f"forge tree fwd {p.label}", forge_ms, p.fwd_flops(), None)

    if sdpa:
        try:
            sdpa_fwd = sdpa_forward(run, p)
            ref = back_to_nodes(sdpa_fwd())
            run.compare("attention", f"forge vs SDPA dense mask fwd {p.label}", out["o"], ref, 1e-2)
            run.rate("attention", f"SDPA dense mask fwd {p.label}", run.time_ms(sdpa_fwd), p.fwd_flops(), forge_ms)
        except Exception as e:  # noqa: BLE001 - a baseline that cannot run is reported, not fatal
            run.skip(f"SDPA dense-mask baseline at {p.label}: {type(e).__name__}: {e}")
        sdpa_fwd = ref = None  # release the mask and the expanded K/V before FlexAttention
        torch.cuda.empty_cache()

    flex_fwd = flex_fwd_bwd = None
    if run.flex_reason:
        run.skip(f"FlexAttention at {p.label}: {run.flex_reason}")
    else:
        try:
            flex_fwd, flex_fwd_bwd = flex_calls(run, p)
            ref = back_to_nodes(flex_fwd())
            run.compare("attention", f"forge vs FlexAttention fwd {p.label}", out["o"], ref, 1e-2)
            flex_ms = run.time_ms(flex_fwd)
            run.rate("attention", f"FlexAttention fwd {p.label}", flex_ms, p.fwd_flops(), forge_ms)
            if target:
                run.target(f"forge tree fwd faster than FlexAttention at {p.label}", flex_ms / forge_ms, 1.0)
        except Exception as e:  # noqa: BLE001
            run.skip(f"FlexAttention at {p.label}: {type(e).__name__}: {str(e)[:300]}")
            flex_fwd_bwd = None

    if not backward:
        return
    forge_backward()
    torch.cuda.synchronize()
    for name in ("dq", "dk", "dv"):
        run.written("attention", f"forge bwd {p.label} {name}", out[name])
    both = lambda: (forward(), forge_backward())
    forge_both_ms = run.time_ms(both)
    run.rate("attention", f"forge tree fwd+bwd {p.label}", forge_both_ms, 3.5 * p.fwd_flops(), None)
    if flex_fwd_bwd is None:
        return
    try:
        grads = flex_fwd_bwd()
        for name, g in zip(("dq", "dk", "dv"), grads):
            run.compare("attention", f"forge vs FlexAttention bwd {p.label} {name}", out[name], back_to_nodes(g), 1e-2)
        del grads
        run.rate("attention", f"FlexAttention fwd+bwd {p.label}", run.time_ms(flex_fwd_bwd), 3.5 * p.fwd_flops(),
                 forge_both_ms)
    except Exception as e:  # noqa: BLE001
        run.skip(f"FlexAttention backward at {p.label}: {type(e).__name__}: {str(e)[:300]}")
