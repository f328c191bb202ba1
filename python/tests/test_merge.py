"""merge_states and merge_states_csr against the float64 formulas of contract 2, on states computed by a
dense reference over random disjoint key sets (so that merging must give attention over their union)."""
import unittest

import torch

import support
from forge_kernels import merge_states, merge_states_csr


def partial_state(q, keys, values):
    """Attention state (o, lse) of queries q [R, H, D] over their own key/value sets [R, K, H, D] in float64."""
    scores = torch.einsum("rhd,rkhd->rhk", q, keys)
    lse = torch.logsumexp(scores, -1)
    o = torch.einsum("rhk,rkhd->rhd", torch.softmax(scores, -1), values)
    return o, lse


class MergeStates(unittest.TestCase):
    def test_pairwise_merge_equals_attention_over_the_union(self):
        _, gen = support.rngs(40)
        R, H, D, Ka, Kb = 33, 3, 16, 5, 9
        q = torch.randn(R, H, D, generator=gen, dtype=torch.float64)
        ka, va = torch.randn(R, Ka, H, D, generator=gen, dtype=torch.float64), torch.randn(R, Ka, H, D, generator=gen, dtype=torch.float64)
        kb, vb = torch.randn(R, Kb, H, D, generator=gen, dtype=torch.float64), torch.randn(R, Kb, H, D, generator=gen, dtype=torch.float64)
        oa, la = partial_state(q, ka, va)
        ob, lb = partial_state(q, kb, vb)
        o_ref, lse_ref = partial_state(q, torch.cat([ka, kb], 1), torch.cat([va, vb], 1))
        la[0, 0] = float("-inf")  # an empty state on one side: the other comes back unchanged
        o, lse = merge_states(oa.float(), la.float(), ob.float(), lb.float())
        o_ref[0, 0], lse_ref[0, 0] = ob[0, 0], lb[0, 0]
        support.assert_close(self, o, o_ref, 1e-5, "merged o")
        support.assert_close(self, lse, lse_ref, 1e-6, "merged lse")

    def test_csr_merge_of_ranges_including_an_empty_one(self):
        rnd, gen = support.rngs(41)
        H, D = 2, 8
        sizes = [rnd.randrange(1, 5) for _ in range(7)]
        sizes[3] = 0
        M = sum(sizes)
        o_in = torch.randn(M, H, D, generator=gen)
        lse_in = torch.randn(M, H, generator=gen) * 3
        offsets = torch.tensor([0] + [sum(sizes[:i + 1]) for i in range(len(sizes))], dtype=torch.int64)
        o, lse = merge_states_csr(o_in, lse_in, offsets)
        for r in range(len(sizes)):
            a, b = int(offsets[r]), int(offsets[r + 1])
            if a == b:
                self.assertTrue(bool((lse[r] == float("-inf")).all()) and bool((o[r] == 0).all()), "empty range")
                continue
            l64 = lse_in[a:b].double()
            lse_ref = torch.logsumexp(l64, 0)
            w = torch.exp(l64 - lse_ref)  # [k, H]
            o_ref = (w[..., None] * o_in[a:b].double()).sum(0)
            support.assert_close(self, o[r], o_ref, 1e-5, f"row {r}: o")
            support.assert_close(self, lse[r], lse_ref, 1e-6, f"row {r}: lse")

    def test_inputs_that_require_grad_are_refused(self):
        o = torch.zeros(2, 1, 4, requires_grad=True)
        lse = torch.zeros(2, 1)
        with self.assertRaisesRegex(ValueError, "^o_a: requires grad"):
            merge_states(o, lse, o.detach(), lse)
        with torch.no_grad():
            merge_states(o, lse, o, lse)


if __name__ == "__main__":
    unittest.main()
