"""cispo_loss (contract 3) in its three modes against a float64 log_softmax + gather reference: the loss,
dlogits (from loss.backward()), the per-term log-probs and the stats."""
import math
import unittest

import torch

import support
from forge_kernels import cispo_loss

N, V = 40, 257


def problem(gen):
    """Logits with 0-4 terms per row (some rows carry none), old log-probs near the true ones so that the
    ratios straddle the clip bounds, advantages of both signs."""
    logits = torch.randn(N, V, generator=gen) * 2
    counts = torch.multinomial(torch.tensor([0.2, 0.4, 0.2, 0.1, 0.1]), N, replacement=True, generator=gen)
    node = torch.repeat_interleave(torch.arange(N), counts)
    node = node[torch.randperm(node.numel(), generator=gen)]
    target = torch.randint(0, V, (node.numel(),), generator=gen)
    logp = torch.log_softmax(logits.double(), -1)[node, target]
    old = (logp + 0.5 * torch.randn(node.numel(), generator=gen, dtype=torch.float64)).float()
    adv = torch.randn(node.numel(), generator=gen)
    return logits, node.int(), target.int(), old, adv


def reference(logits, node, target, old, adv, mode, eps_low, eps_high, Z):
    """Contract 3 in float64 with autograd: (loss, dlogits, logp, ratio)."""
    z = logits.double().requires_grad_()
    logp_all = torch.log_softmax(z, -1)
    logp = logp_all[node.long(), target.long()]
    r = torch.exp(logp - old.double())
    A = adv.double()
    if mode == "cispo":
        terms = r.detach().clamp(1 - eps_low, 1 + eps_high) * A * logp
    elif mode == "ppo-clip":
        terms = torch.minimum(r * A, r.clamp(1 - eps_low, 1 + eps_high) * A)
    else:
        terms = A * logp
    loss = -terms.sum() / Z
    (dz,) = torch.autograd.grad(loss, z)
    return loss.detach(), dz, logp.detach(), r.detach()


class CispoLoss(unittest.TestCase):
    def check_mode(self, stream, mode, eps_low, eps_high, normalizer=None):
        _, gen = support.rngs(stream)
        logits, node, target, old, adv = problem(gen)
        J = node.numel()
        z = logits.clone().requires_grad_()
        loss, stats = cispo_loss(z, node, target, old, adv, mode=mode, eps_low=eps_low, eps_high=eps_high,
                                 normalizer=normalizer)
        loss.backward()
        low = math.inf if eps_low is None else eps_low
        high = 4.0 if eps_high is None else eps_high
        ref_loss, ref_dz, ref_logp, r = reference(logits, node, target, old, adv, mode, low, high, normalizer or J)
        what = f"{mode} (eps {eps_low}, {eps_high}, Z {normalizer})"
        self.assertEqual(loss.dtype, torch.float32)
        self.assertLessEqual(abs(loss.item() - float(ref_loss)), 1e-5 * max(abs(float(ref_loss)), 1e-3),
                             support.why(f"{what}: loss {loss.item()} vs {float(ref_loss)}"))
        self.assertLessEqual(abs(stats.loss - float(ref_loss)), 1e-6 * max(abs(float(ref_loss)), 1e-3))
        support.assert_close(self, z.grad, ref_dz, 1e-5, f"{what}: dlogits")
        untouched = torch.ones(N, dtype=torch.bool)
        untouched[node.long()] = False
        self.assertTrue(bool((z.grad[untouched] == 0).all()), support.why(f"{what}: rows without terms get 0"))
        support.assert_close(self, stats.logprobs, ref_logp, 1e-5, f"{what}: logprobs")

        # The stats, from the reference's ratios and softmax.
        self.assertEqual((stats.num_terms, stats.num_rows), (J, int(node.unique().numel())))
        self.assertAlmostEqual(stats.mean_ratio, float(r.mean()), delta=1e-5 * float(r.mean()))
        self.assertAlmostEqual(stats.mean_logprob, float(ref_logp.mean()), delta=1e-5)
        rows = node.long().unique()
        logp_rows = torch.log_softmax(logits.double()[rows], -1)
        entropy = float(-(logp_rows.exp() * logp_rows).sum(-1).mean())
        self.assertAlmostEqual(stats.mean_entropy, entropy, delta=1e-5 * entropy)
        clips = mode != "cross-entropy"
        high_hit, low_hit = (r > 1 + high), (r < 1 - low)
        pos, neg = adv > 0, adv < 0
        expect = {
            "clip_frac_high": float(high_hit.double().mean()) if clips else 0.0,
            "clip_frac_low": float(low_hit.double().mean()) if clips else 0.0,
            "clip_frac_pos_adv": float(high_hit[pos].double().mean()) if clips and bool(pos.any()) else 0.0,
            "clip_frac_neg_adv": float(low_hit[neg].double().mean()) if clips and bool(neg.any()) else 0.0,
        }
        for name, value in expect.items():
            self.assertAlmostEqual(getattr(stats, name), value, places=9, msg=support.why(f"{what}: {name}"))
        return stats

    def test_cispo_with_both_clip_bounds_hit(self):
        stats = self.check_mode(20, "cispo", 0.2, 0.28)
        self.assertGreater(stats.clip_frac_high, 0, support.why("some ratios above 1 + eps_high"))
        self.assertGreater(stats.clip_frac_low, 0, support.why("some ratios below 1 - eps_low"))

    def test_cispo_defaults_no_lower_bound(self):
        stats = self.check_mode(21, "cispo", None, None)
        self.assertEqual(stats.clip_frac_low, 0.0)

    def test_ppo_clip(self):
        self.check_mode(22, "ppo-clip", 0.2, 0.2)

    def test_cross_entropy_with_a_global_normalizer(self):
        self.check_mode(23, "cross-entropy", None, None, normalizer=517.0)

    def test_backward_scales_by_the_incoming_gradient_once(self):
        _, gen = support.rngs(24)
        logits, node, target, old, adv = problem(gen)
        z = logits.clone().requires_grad_()
        loss, _ = cispo_loss(z, node, target, old, adv)
        (3.0 * loss).backward(retain_graph=True)
        _, ref_dz, _, _ = reference(logits, node, target, old, adv, "cispo", math.inf, 4.0, node.numel())
        support.assert_close(self, z.grad, 3 * ref_dz, 1e-5, "d(3 loss)/dlogits")
        with self.assertRaisesRegex(RuntimeError, "backward ran twice"):
            loss.backward()
        # Without a gradient wanted, the loss still comes back (no dlogits kept).
        loss2, stats = cispo_loss(logits, node, target, old, adv)
        self.assertFalse(loss2.requires_grad)
        self.assertAlmostEqual(loss2.item(), loss.item(), places=6)


if __name__ == "__main__":
    unittest.main()
