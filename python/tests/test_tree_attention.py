"""tree_attention (contract 2) against a dense masked softmax in float64 (mask a <= q < subtree_end[a]),
its backward against torch.autograd of that reference, and a finite-difference check of the binding's
own gradient."""
import unittest

import torch

import support
from forge_kernels import parent_from_subtree_end, tree_attention

D = 64
# name, tree(rnd) -> (parent, subtree_end), Hq, Hkv, scale
CASES = [
    ("a bushy tree of 150, GQA 4", lambda rnd: support.random_tree(rnd, 150, branch=0.2), 4, 1, None),
    ("a forest of 90, MHA", lambda rnd: support.random_tree(rnd, 90, forest=True), 2, 2, None),
    ("a chain of 70 (causal), GQA 2, scale 0.3", lambda rnd: support.chain(70), 4, 2, 0.3),
    ("a star of 40, GQA 2", lambda rnd: (torch.tensor([-1] + [0] * 39, dtype=torch.int32),
                                         torch.tensor([40] + list(range(2, 41)), dtype=torch.int32)), 2, 1, None),
]


def inputs(gen, n, hq, hkv):
    q = torch.randn(n, hq, D, generator=gen)
    k = torch.randn(n, hkv, D, generator=gen)
    v = torch.randn(n, hkv, D, generator=gen)
    return q, k, v


class TreeAttention(unittest.TestCase):
    def test_forward_and_backward_match_the_float64_reference(self):
        rnd, gen = support.rngs(10)
        for name, make, hq, hkv, scale in CASES:
            with self.subTest(name):
                parent, ends = make(rnd)
                q, k, v = (t.requires_grad_() for t in inputs(gen, len(parent), hq, hkv))
                o, lse = tree_attention(q, k, v, ends, scale=scale, parent=parent)
                qd, kd, vd = (t.detach().double().requires_grad_() for t in (q, k, v))
                o_ref, lse_ref = support.reference_attention(qd, kd, vd, ends, scale)
                # float32 dot products of length 64 and softmax sums: a few ulps of the largest output
                support.assert_close(self, o, o_ref, 2e-5, f"{name}: o")
                support.assert_close(self, lse, lse_ref, 2e-6, f"{name}: lse")
                d_o = torch.randn(o.shape, generator=gen)
                grads = torch.autograd.grad(o, (q, k, v), d_o)
                refs = torch.autograd.grad(o_ref, (qd, kd, vd), d_o.double())
                for what, g, r in zip("qkv", grads, refs):
                    support.assert_close(self, g, r, 1e-4, f"{name}: d{what}")

    def test_parent_is_derived_from_subtree_end_when_not_given(self):
        rnd, gen = support.rngs(11)
        parent, ends = support.random_tree(rnd, 60, forest=True)
        self.assertEqual(parent_from_subtree_end(ends).tolist(), parent.tolist(), support.why("derived parent"))
        q, k, v = inputs(gen, 60, 2, 1)
        o1, lse1 = tree_attention(q, k, v, ends)
        o2, lse2 = tree_attention(q, k, v, ends, parent=parent)
        self.assertTrue(torch.equal(o1, o2) and torch.equal(lse1, lse2))

    def test_gradient_matches_central_differences(self):
        # The binding's own gradient (forge's backward) against float32 central differences of its own
        # forward: f(x) = <R, o(x)> for a random projection R; along random directions u over (q, k, v),
        # f'(x)u = <grad f, u>. Along a random u a directional derivative is typically
        # |grad f| |u| / sqrt(n) (~100 here). Step h = 5e-3 on O(1) inputs: the truncation error
        # (h^2 / 6 times the third derivative) and the float32 rounding of f (~1e-7 of sum |R o| ~ 1e3,
        # over 2h) each stay near 1e-2, i.e. ~1e-4 of that typical size (the worst of 40 seeds: 7.8e-5).
        # The tolerance, 5e-4 of it, fails a gradient that is wrong by 1% of |grad f| in any direction
        # with probability ~0.96 per u (the error projects onto u at the same 1/sqrt(n) rate): three u.
        rnd, gen = support.rngs(12)
        parent, ends = support.random_tree(rnd, 48, branch=0.3)
        q, k, v = (t.requires_grad_() for t in inputs(gen, 48, 4, 2))
        R = torch.randn(48, 4, D, generator=gen)
        o, _ = tree_attention(q, k, v, ends, parent=parent)
        grads = torch.autograd.grad((o * R).sum(), (q, k, v))
        g2 = sum(float((g.double() ** 2).sum()) for g in grads)

        def f(u, step):
            with torch.no_grad():
                shifted = [t + step * x for t, x in zip((q, k, v), u)]
                o, _ = tree_attention(*shifted, ends, parent=parent)
                return float((o.double() * R.double()).sum())

        h = 5e-3
        for direction in range(3):
            u = [torch.randn(t.shape, generator=gen) for t in (q, k, v)]
            analytic = sum(float((g.double() * x.double()).sum()) for g, x in zip(grads, u))
            typical = (g2 * sum(float((x.double() ** 2).sum()) for x in u) / sum(x.numel() for x in u)) ** 0.5
            numeric = (f(u, h) - f(u, -h)) / (2 * h)
            self.assertLessEqual(abs(numeric - analytic), 5e-4 * typical,
                                 support.why(f"direction {direction}: directional derivative {analytic} vs central "
                                             f"differences {numeric} (typical size {typical:.3g})"))

    def test_backpropagating_through_lse_is_refused(self):
        _, gen = support.rngs(13)
        parent, ends = support.chain(8)
        q, k, v = (t.requires_grad_() for t in inputs(gen, 8, 2, 2))
        o, lse = tree_attention(q, k, v, ends, parent=parent)
        with self.assertRaisesRegex(NotImplementedError, "lse"):
            (o.sum() + lse.sum()).backward()
        o, lse = tree_attention(q, k, v, ends, parent=parent)
        (o.sum() + lse.detach().sum()).backward()  # a detached lse is fine
        self.assertIsNotNone(q.grad)


if __name__ == "__main__":
    unittest.main()
