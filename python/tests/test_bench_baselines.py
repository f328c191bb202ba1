"""The GPU bench's PyTorch CISPO baselines (bench/gpu/torch_cispo.py: eager, and the chunked Liger-style
loss) on CPU tensors, against a float64 reference of DESIGN.md contract 3 written out term by term here:
the baselines forge is timed against must themselves be right. All three modes (CISPO, PPO-clip,
cross-entropy), float32 and bf16 logits, chunk sizes that do and do not divide the rows; and the chunked
loss never creates a float32 tensor of more than one chunk's rows, where the eager one creates [N, V]."""
import os
import sys
import unittest

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import support

sys.path.insert(0, os.path.join(support.REPO, "bench", "gpu"))
import torch_cispo  # noqa: E402

ROWS, VOCAB = 96, 263  # about 120 terms: every clip case occurs
EPS = {"cispo": (torch_cispo.EPS_LOW, torch_cispo.EPS_HIGH), "ppo-clip": (0.2, 0.2), "cross-entropy": (0.2, 0.2)}


def reference(logits, node, target, old, adv, mode, eps_low, eps_high, Z):
    """Contract 3 in float64, the gradient from its formula: (loss, dlogits, logp, coefficient per term,
    sum of |term| / Z: the scale the loss's rounding is judged against)."""
    z = logits.double()
    lse = torch.logsumexp(z, dim=-1)
    softmax = torch.exp(z - lse[:, None])
    dz = torch.zeros_like(z)
    loss, logps, coefs, scale = 0.0, [], [], 0.0
    for j in range(node.numel()):
        n, y, A = int(node[j]), int(target[j]), float(adv[j])
        logp = float(z[n, y] - lse[n])
        r = torch.exp(torch.tensor(logp - float(old[j]), dtype=torch.float64)).item()
        clipped = min(max(r, 1 - eps_low), 1 + eps_high)
        if mode == "cispo":  # w = clip(r) under a stop-gradient
            term, c = clipped * A * logp, clipped * A
        elif mode == "ppo-clip":  # min(r A, clip(r) A): the clipped branch has no gradient
            term = min(r * A, clipped * A)
            c = r * A if r * A <= clipped * A else 0.0
        else:
            term, c = A * logp, A
        loss -= term / Z
        scale += abs(term) / Z
        dz[n] += c * softmax[n] / Z
        dz[n, y] -= c / Z
        logps.append(logp)
        coefs.append(c)
    return loss, dz, torch.tensor(logps, dtype=torch.float64), coefs, scale


class FloatTensorsSeen(TorchDispatchMode):
    """Records the largest float32 tensor any operation returns while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.dtype == torch.float32:
                self.largest = max(self.largest, t.numel())
        return out


class BenchBaselines(unittest.TestCase):
    def problem(self, stream, dtype):
        rnd, _ = support.rngs(stream)
        return torch_cispo.Problem(torch, rnd.randrange(2**62), ROWS, vocab=VOCAB, device="cpu", dtype=dtype)

    def check(self, what, p, mode, got, normalizer=None):
        """got = (loss, logp, dlogits) of a baseline; compared with the reference at the dtype's rounding."""
        eps_low, eps_high = EPS[mode]
        J = p.node.numel()
        Z = normalizer or J
        ref_loss, ref_dz, ref_logp, coefs, scale = reference(p.logits, p.node, p.target, p.old, p.adv, mode, eps_low,
                                                             eps_high, Z)
        loss, logp, dz = got
        self.assertEqual((dz.dtype, tuple(dz.shape)), (p.logits.dtype, (ROWS, VOCAB)), support.why(what))
        # Relative to the terms' magnitudes: advantages of both signs can make the loss nearly cancel.
        self.assertLessEqual(abs(float(loss) - ref_loss), 1e-5 * scale,
                             support.why(f"{what}: loss {float(loss)} vs {ref_loss} (scale {scale:.3g})"))
        support.assert_close(self, logp, ref_logp, 1e-5, f"{what}: logp")
        # float32 math throughout; a bf16 dlogits is rounded once at the end (2^-9 relative).
        support.assert_close(self, dz, ref_dz, 1e-5 if p.logits.dtype == torch.float32 else 4e-3, f"{what}: dlogits")
        no_terms = torch.ones(ROWS, dtype=torch.bool)
        no_terms[p.node] = False
        self.assertTrue(bool(no_terms.any()) and bool((dz[no_terms] == 0).all()),
                        support.why(f"{what}: rows without terms get exactly 0"))
        return coefs

    def run_modes(self, stream, dtype):
        for k, mode in enumerate(torch_cispo.MODES):
            p = self.problem(stream + k, dtype)
            eps_low, eps_high = EPS[mode]
            args = (torch, p.logits, p.node, p.target, p.old, p.adv)
            opts = dict(mode=mode, eps_low=eps_low, eps_high=eps_high)
            what = f"{mode} {dtype}"
            coefs = self.check(f"eager {what}", p, mode, torch_cispo.eager_policy_loss(*args, **opts))
            for chunk in (1, 7, 32, ROWS + 5):
                self.check(f"chunked ({chunk} rows) {what}", p, mode,
                           torch_cispo.chunked_policy_loss(*args, **opts, chunk_rows=chunk))
            self.check(f"chunked, explicit Z {what}", p, mode,
                       torch_cispo.chunked_policy_loss(*args, **opts, normalizer=1000.0, chunk_rows=10), 1000.0)
            self.check(f"eager, explicit Z {what}", p, mode, torch_cispo.eager_policy_loss(*args, **opts, normalizer=1000.0),
                       1000.0)
            if mode == "ppo-clip":  # both clipped branches (no gradient) occurred, so they were checked
                r = torch.exp(torch.log_softmax(p.logits.double(), -1)[p.node, p.target] - p.old.double())
                zero = [c == 0.0 for c in coefs]
                self.assertTrue(any(z and float(a) > 0 and float(x) > 1 + eps_high for z, a, x in zip(zero, p.adv, r)),
                                support.why("ppo: a positive advantage clipped above"))
                self.assertTrue(any(z and float(a) < 0 and float(x) < 1 - eps_low for z, a, x in zip(zero, p.adv, r)),
                                support.why("ppo: a negative advantage clipped below"))
            if mode == "cispo":
                r = torch.exp(torch.log_softmax(p.logits.double(), -1)[p.node, p.target] - p.old.double())
                self.assertTrue(bool((r > 1 + eps_high).any()), support.why("cispo: some weights clipped"))

    def test_float32_logits(self):
        self.run_modes(100, torch.float32)

    def test_bf16_logits(self):
        self.run_modes(110, torch.bfloat16)

    def test_chunked_never_holds_a_float32_logits_sized_tensor(self):
        p = self.problem(120, torch.bfloat16)
        args = (torch, p.logits, p.node, p.target, p.old, p.adv)
        with FloatTensorsSeen() as eager:
            torch_cispo.eager_policy_loss(*args)
        self.assertGreaterEqual(eager.largest, ROWS * VOCAB, "the probe sees the eager [N, V] float32 tensors")
        chunk = 16
        with FloatTensorsSeen() as chunked:
            loss, _, dz = torch_cispo.chunked_policy_loss(*args, chunk_rows=chunk)
        self.assertLessEqual(chunked.largest, chunk * VOCAB, "float32 temporaries of one chunk at most")
        self.check("chunked under the probe", p, "cispo", (loss, _, dz))

    def test_compiled_chunk_step_when_torch_has_it(self):
        step, how = torch_cispo.compiled_chunk_step(torch)
        if step is torch_cispo.chunk_step:
            self.assertIn("no torch.compile", how)
            self.skipTest(f"torch {torch.__version__} has no torch.compile: the bench times eager chunks ({how})")
        p = self.problem(130, torch.float32)
        self.check("compiled chunks", p, "cispo",
                   torch_cispo.chunked_policy_loss(torch, p.logits, p.node, p.target, p.old, p.adv, chunk_rows=7,
                                                   step=step))

    def test_unknown_mode_is_named(self):
        p = self.problem(140, torch.float32)
        for fn in (torch_cispo.eager_policy_loss, torch_cispo.chunked_policy_loss):
            with self.assertRaisesRegex(ValueError, "mode: expected one of cispo, ppo-clip, cross-entropy, got 'grpo'"):
                fn(torch, p.logits, p.node, p.target, p.old, p.adv, mode="grpo")

    def test_liger_absence_is_reported_not_fatal(self):
        call, why = torch_cispo.liger_cross_entropy(torch)
        if call is not None:
            self.skipTest("liger_kernel is installed here: the GPU bench exercises it")
        self.assertIn("liger_kernel is not installed here", why)


if __name__ == "__main__":
    unittest.main()
