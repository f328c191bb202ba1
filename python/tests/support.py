"""Shared helpers of the forge_kernels tests: the run's seed, random trees and samples, comparisons.

Every run draws fresh inputs from a seed printed on failure; FORGE_TEST_SEED=<seed> replays it (the same
convention as the Node tests' test/helpers/random.ts). The references here use plain torch ops in
float64 and never call the library.
"""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))

import torch  # noqa: E402

SEED = int(os.environ["FORGE_TEST_SEED"]) % 2**32 if os.environ.get("FORGE_TEST_SEED") else \
    random.SystemRandom().randrange(2**32)


def why(what):
    return f"{what} (seed {SEED}: rerun with FORGE_TEST_SEED={SEED})"


def rngs(stream):
    """(random.Random, torch.Generator) for one test: independent of the other tests' draws."""
    seed = (SEED + 0x9E3779B9 * stream) % 2**63
    gen = torch.Generator()
    gen.manual_seed(seed)
    return random.Random(seed), gen


def assert_close(test, got, ref, rel, what):
    """max |got - ref| <= rel * max |ref| (the scale of the reference), compared in float64."""
    got, ref = got.detach().double().cpu(), ref.detach().double().cpu()
    test.assertEqual(tuple(got.shape), tuple(ref.shape), why(f"{what}: shape"))
    scale = max(float(ref.abs().max()) if ref.numel() else 0.0, 1e-6)
    err = float((got - ref).abs().max()) if ref.numel() else 0.0
    test.assertLessEqual(err, rel * scale, why(f"{what}: max error {err:.3g} vs scale {scale:.3g} (rel {rel})"))


# ---- trees (pre-order forests), built without the library ---------------------------------------------

def subtree_end_of(parent):
    n = len(parent)
    end = list(range(1, n + 1))
    for i in range(n - 1, -1, -1):
        if parent[i] >= 0:
            end[parent[i]] = max(end[parent[i]], end[i])
    return end


def random_tree(rnd, n, branch=0.15, forest=False):
    """A pre-order forest of n nodes: mostly extends the current chain, sometimes branches off at a random
    depth of the current root path (or starts a new root, with `forest`). Returns int32 (parent, subtree_end)."""
    parent, path = [], []
    for i in range(n):
        depth = len(path)
        if i == 0:
            depth = 0
        elif rnd.random() < branch:
            lowest = 0 if forest else 1
            depth = lowest + rnd.randrange(len(path) + 1 - lowest)
        del path[depth:]
        parent.append(path[-1] if path else -1)
        path.append(i)
    return torch.tensor(parent, dtype=torch.int32), torch.tensor(subtree_end_of(parent), dtype=torch.int32)


def chain(n):
    return torch.arange(-1, n - 1, dtype=torch.int32), torch.full((n,), n, dtype=torch.int32)


# ---- references ---------------------------------------------------------------------------------------

def reference_attention(q, k, v, subtree_end, scale=None):
    """Dense masked softmax in float64: query q sees key a iff a <= q < subtree_end[a]. Returns (o, lse)."""
    N, Hq, D = q.shape
    group = Hq // k.shape[1]
    scale = 1.0 / D**0.5 if scale is None else scale
    kk = k.double().repeat_interleave(group, dim=1)  # query head h reads kv head h // group
    vv = v.double().repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,ahd->hqa", q.double(), kk) * scale
    a = torch.arange(N)
    ends = subtree_end.long().cpu()
    mask = (a[None, :] <= a[:, None]) & (a[:, None] < ends[None, :])  # [query, key]
    scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [H, N]
    o = torch.einsum("hqa,ahd->qhd", torch.softmax(scores, dim=-1), vv)
    return o, lse.t()


def agent_samples(rnd, vocab, rollouts=3, turns=3):
    """Agent-like samples: a shared system prompt, rollouts whose calls extend each other (prompt tokens
    untrainable, completions trainable), per-token or scalar advantages, and an exact duplicate."""
    system = [rnd.randrange(vocab) for _ in range(8 + rnd.randrange(8))]
    samples = []
    for r in range(rollouts):
        history, mask = list(system), [0] * len(system)
        for turn in range(turns):
            user = [rnd.randrange(vocab) for _ in range(1 + rnd.randrange(4))]
            completion = [rnd.randrange(vocab) for _ in range(1 + rnd.randrange(5))]
            history = history + user + completion
            mask = [0] * (len(history) - len(completion)) + [1] * len(completion)
            per_token = rnd.random() < 0.4
            samples.append(dict(
                tokens=list(history), trainable=list(mask),
                old_logprobs=[-0.2 - 3 * rnd.random() for _ in history],
                advantage=[rnd.gauss(0, 1) for _ in history] if per_token else rnd.gauss(0, 1),
                version=r * turns + turn))
    dup = dict(samples[1])
    dup["advantage"] = rnd.gauss(0, 1)
    samples.append(dup)
    return samples
