"""PrefixTree (contract 1): the layout against a trie built here in plain Python, the loss terms, and
gather/scatter (an autograd pair) against float64 indexing references."""
import unittest

import torch

import support
from forge_kernels import PrefixTree, Sample, gather_to_samples, merge_to_tree, scatter_from_samples

VOCAB = 23  # small, so that samples share prefixes and fork often


def reference_trie(token_lists):
    """Contract 1 by hand: a trie in insertion order (children in order of first appearance), numbered
    in DFS pre-order. Returns token, parent, position and node_of (per sample)."""
    root = {}  # token -> [children dict, id placeholder]
    paths = []
    for tokens in token_lists:
        level, path = root, []
        for t in tokens:
            entry = level.setdefault(t, [{}, None])
            path.append(entry)
            level = entry[0]
        paths.append(path)
    token, parent, position = [], [], []

    def visit(level, up, depth):
        for t, entry in level.items():
            entry[1] = len(token)
            token.append(t), parent.append(up), position.append(depth)
            visit(entry[0], entry[1], depth + 1)

    visit(root, -1, 0)
    return token, parent, position, [[entry[1] for entry in path] for path in paths]


class PrefixTreeLayout(unittest.TestCase):
    def test_layout_matches_a_reference_trie(self):
        rnd, _ = support.rngs(1)
        samples = support.agent_samples(rnd, VOCAB, rollouts=4)
        samples.append(dict(tokens=[rnd.randrange(VOCAB) for _ in range(5)]))  # its own root, nothing trainable
        tree = PrefixTree.build(samples, vocab_size=VOCAB)
        token, parent, position, node_of = reference_trie([s["tokens"] for s in samples])
        N = len(token)
        self.assertEqual(tree.num_nodes, N, support.why("N = number of distinct prefixes"))
        self.assertEqual(tree.token.tolist(), token, support.why("token"))
        self.assertEqual(tree.parent.tolist(), parent, support.why("parent"))
        self.assertEqual(tree.position.tolist(), position, support.why("position"))
        self.assertEqual(tree.subtree_end.tolist(), support.subtree_end_of(parent), support.why("subtree_end"))
        self.assertEqual(tree.node_of.tolist(), [n for path in node_of for n in path], support.why("node_of"))
        for s in range(len(samples)):
            self.assertEqual(tree.node_of_sample(s).tolist(), node_of[s])
        T = sum(len(s["tokens"]) for s in samples)
        self.assertEqual(tree.stats, {"input_tokens": T, "tree_tokens": N, "ratio": T / N})
        self.assertEqual(tree.max_depth, max(position) + 1)
        self.assertEqual(tree.offsets.tolist()[-1], T)

        # Segments: a node continues its parent's chain iff it is that parent's only child.
        children = [0] * N
        for p in parent:
            if p >= 0:
                children[p] += 1
        starts = [i for i in range(N) if parent[i] < 0 or children[parent[i]] != 1]
        lengths = [b - a for a, b in zip(starts, starts[1:] + [N])]
        seg_of = [g for g, (a, n) in enumerate(zip(starts, lengths)) for _ in range(n)]
        self.assertEqual(tree.segments.start.tolist(), starts, support.why("segment starts"))
        self.assertEqual(tree.segments.length.tolist(), lengths, support.why("segment lengths"))
        self.assertEqual(tree.segments.parent.tolist(), [seg_of[parent[a]] if parent[a] >= 0 else -1 for a in starts])
        self.assertEqual(tree.segment_of.tolist(), seg_of)
        self.assertEqual(tree.num_segments, len(starts))

        # Terms: each trainable position t >= 1 of each sample, ordered by sample then position.
        expect = []
        for s, sample in enumerate(samples):
            adv = sample.get("advantage", 0.0)
            for t in range(1, len(sample["tokens"])):
                if sample.get("trainable", [0] * len(sample["tokens"]))[t]:
                    a = adv[t] if isinstance(adv, list) else adv
                    expect.append((node_of[s][t - 1], sample["tokens"][t], sample["old_logprobs"][t], a, s, t,
                                   sample.get("version", 0)))
        terms = tree.terms
        self.assertEqual(tree.num_terms, len(expect))
        got = list(zip(*(x.tolist() for x in terms)))
        for j, (g, e) in enumerate(zip(got, expect)):
            self.assertEqual(g[:2] + g[4:], e[:2] + e[4:], support.why(f"term {j}"))
            self.assertAlmostEqual(g[2], e[2], places=5)  # float32 copies of the inputs
            self.assertAlmostEqual(g[3], e[3], places=5)

    def test_sample_objects_tensors_and_defaults(self):
        tree = PrefixTree.build([Sample(tokens=torch.tensor([3, 1, 4, 1]), trainable=[False, True, True, False],
                                        advantage=torch.tensor([0.0, 1.0, 2.0, 3.0])),
                                 Sample(tokens=[3, 1, 5])])
        self.assertEqual(tree.token.tolist(), [3, 1, 4, 1, 5])
        self.assertEqual(tree.terms.advantage.tolist(), [1.0, 2.0])
        self.assertEqual(tree.terms.old_logprob.tolist(), [0.0, 0.0])
        self.assertEqual(tree.terms.version.tolist(), [0, 0])
        moved = tree.to("cpu")
        self.assertTrue(torch.equal(moved.subtree_end, tree.subtree_end))
        self.assertEqual(moved.stats, tree.stats)


class SampleLayout(unittest.TestCase):
    def setUp(self):
        rnd, self.gen = support.rngs(2)
        self.tree = PrefixTree.build(support.agent_samples(rnd, VOCAB), vocab_size=VOCAB)

    def test_gather_and_its_gradient(self):
        tree, gen = self.tree, self.gen
        node_of = tree.node_of.long()
        values = torch.randn(tree.num_nodes, 3, 5, generator=gen, requires_grad=True)
        out = tree.gather_to_samples(values)
        support.assert_close(self, out, values.detach().double()[node_of], 0, "gather")
        upstream = torch.randn(out.shape, generator=gen)
        (grad,) = torch.autograd.grad(out, values, upstream)
        ref = torch.zeros(values.shape, dtype=torch.float64).index_add_(0, node_of, upstream.double())
        support.assert_close(self, grad, ref, 1e-6, "gather backward = scatter")

    def test_scatter_and_its_gradient(self):
        tree, gen = self.tree, self.gen
        node_of = tree.node_of.long()
        values = torch.randn(tree.input_tokens, 4, generator=gen, requires_grad=True)
        out = scatter_from_samples(values, tree.node_of, tree.num_nodes)
        ref = torch.zeros(tree.num_nodes, 4, dtype=torch.float64).index_add_(0, node_of, values.detach().double())
        support.assert_close(self, out, ref, 1e-6, "scatter")
        upstream = torch.randn(out.shape, generator=gen)
        (grad,) = torch.autograd.grad(out, values, upstream)
        support.assert_close(self, grad, upstream.double()[node_of], 0, "scatter backward = gather")
        self.assertTrue(torch.equal(gather_to_samples(upstream, tree.node_of), upstream[node_of]))

    def test_merge_to_tree(self):
        tree, gen = self.tree, self.gen
        node_of, n = tree.node_of.tolist(), tree.num_nodes

        def first_rows(values, ids):  # plain reference: the first position of each node, zeros without one
            out = torch.zeros((n,) + tuple(values.shape[1:]), dtype=values.dtype)
            seen = set()
            for i, node in enumerate(ids):
                if node not in seen:
                    seen.add(node)
                    out[node] = values[i]
            return out

        # Per-sample values gathered from tree values (a packed K/V cache) merge back to them exactly.
        kv = torch.randn(n, 2, 8, generator=gen)
        self.assertTrue(torch.equal(merge_to_tree(tree.gather_to_samples(kv), tree.node_of, n), kv))
        # Copies that differ: each node takes its first position.
        values = torch.randn(tree.input_tokens, 3, generator=gen)
        self.assertTrue(torch.equal(merge_to_tree(values, tree.node_of, n), first_rows(values, node_of)))
        # Only the first positions: the nodes they do not reach read zeros.
        half = tree.input_tokens // 2
        self.assertTrue(torch.equal(merge_to_tree(values[:half], tree.node_of[:half], n),
                                    first_rows(values[:half], node_of[:half])))
        bad = tree.node_of.clone()
        bad[3] = n
        with self.assertRaisesRegex(ValueError, rf"^node_of\[3\]: {n} is out of range \[0, {n}\)"):
            merge_to_tree(values, bad, n)
        with self.assertRaisesRegex(ValueError, r"^values: merge_to_tree is not differentiable"):
            merge_to_tree(values.requires_grad_(), tree.node_of, n)
        with self.assertRaisesRegex(ValueError, r"^num_nodes: expected an int >= 1, got 0"):
            merge_to_tree(values.detach(), tree.node_of, 0)


if __name__ == "__main__":
    unittest.main()
