"""Contract 1's promise through the binding: a small PyTorch model (embedding -> one tree_attention layer
-> linear head -> cispo_loss) gives the same loss and parameter gradients on the merged prefix tree as
on the samples one by one (1e-5 relative)."""
import unittest

import torch

import support
from forge_kernels import PrefixTree, cispo_loss, tree_attention

VOCAB, DIM, HQ, HKV, HEAD = 29, 48, 4, 2, 16


class ToyModel(torch.nn.Module):
    """Logits of a node depend only on its root path: token + position embeddings, attention, a head."""

    def __init__(self, gen):
        super().__init__()
        self.tok = torch.nn.Parameter(torch.randn(VOCAB, DIM, generator=gen) * 0.5)
        self.pos = torch.nn.Parameter(torch.randn(128, DIM, generator=gen) * 0.5)
        self.wq = torch.nn.Parameter(torch.randn(DIM, HQ * HEAD, generator=gen) / DIM**0.5)
        self.wk = torch.nn.Parameter(torch.randn(DIM, HKV * HEAD, generator=gen) / DIM**0.5)
        self.wv = torch.nn.Parameter(torch.randn(DIM, HKV * HEAD, generator=gen) / DIM**0.5)
        self.head = torch.nn.Parameter(torch.randn(HQ * HEAD, VOCAB, generator=gen) / (HQ * HEAD)**0.5)

    def forward(self, tokens, positions, subtree_end, parent):
        x = self.tok[tokens.long()] + self.pos[positions.long()]
        n = x.shape[0]
        q = (x @ self.wq).view(n, HQ, HEAD)
        k = (x @ self.wk).view(n, HKV, HEAD)
        v = (x @ self.wv).view(n, HKV, HEAD)
        o, _ = tree_attention(q, k, v, subtree_end, parent=parent)
        return o.reshape(n, HQ * HEAD) @ self.head


class Exactness(unittest.TestCase):
    def test_tree_equals_samples_one_by_one(self):
        rnd, gen = support.rngs(30)
        samples = support.agent_samples(rnd, VOCAB, rollouts=3, turns=3)
        model = ToyModel(gen)
        params = dict(model.named_parameters())
        tree = PrefixTree.build(samples, vocab_size=VOCAB)
        self.assertGreater(tree.stats["ratio"], 1.5, "the samples share prefixes")
        J = tree.num_terms
        opts = dict(eps_low=0.2, eps_high=0.28, normalizer=float(J))  # some weights clipped

        logits = model(tree.token, tree.position, tree.subtree_end, tree.parent)
        loss_tree, _ = cispo_loss(logits, *tree.terms[:4], **opts)
        grads_tree = torch.autograd.grad(loss_tree, list(params.values()))

        # Each sample alone, as a chain, its terms written out here from contract 1 (not from the tree).
        loss_sum, loss_scale = 0.0, 0.0
        for s in samples:
            L, tokens = len(s["tokens"]), torch.tensor(s["tokens"], dtype=torch.int32)
            parent, ends = support.chain(L)
            logits_s = model(tokens, torch.arange(L, dtype=torch.int32), ends, parent)
            ts = [t for t in range(1, L) if s["trainable"][t]]
            adv = s["advantage"]
            loss_s, _ = cispo_loss(logits_s, torch.tensor([t - 1 for t in ts], dtype=torch.int32), tokens[ts].contiguous(),
                                   torch.tensor([s["old_logprobs"][t] for t in ts]),
                                   torch.tensor([adv[t] if isinstance(adv, list) else adv for t in ts]), **opts)
            loss_sum = loss_sum + loss_s
            loss_scale += abs(loss_s.item())
        grads_ref = torch.autograd.grad(loss_sum, list(params.values()))

        # Advantages of both signs can make the sum nearly cancel, so the bound is relative to the sum of
        # the per-sample magnitudes: float32 rounding of the terms, not of their (possibly tiny) total.
        self.assertLessEqual(abs(loss_tree.item() - loss_sum.item()), 1e-5 * loss_scale,
                             support.why(f"loss {loss_tree.item()} vs {loss_sum.item()} (sum of |loss_s| {loss_scale})"))
        for name, g, r in zip(params, grads_tree, grads_ref):
            support.assert_close(self, g, r, 1e-5, f"d loss / d {name}")


if __name__ == "__main__":
    unittest.main()
