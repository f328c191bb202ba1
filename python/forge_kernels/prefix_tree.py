"""Prefix-tree batches (DESIGN.md contract 1) as torch tensors.

PrefixTree.build merges samples that share token prefixes into one trie (forge_prefix_tree_build), so
shared tokens are computed once, and exposes its layout — token, parent, position, subtree_end, the
segments, the loss terms and node_of — as torch tensors a model and cispo_loss consume directly.
"""
import ctypes
import math
import operator
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence, Union

import torch

from . import _abi, _tensors
from .sample_layout import gather_to_samples, scatter_from_samples

INT32_MAX = 2**31 - 1


@dataclass
class Sample:
    """One sample: the tokens of one call (prompt and completion) and what its loss terms need.

    tokens [L], L >= 1. trainable [L] 0/1 (1 where the policy produced the token; 0 at position 0),
    default all 0. old_logprobs [L]: the sampling log-probabilities, finite where trainable, default 0.
    advantage: one number, or one per token [L] (the term predicting position t uses entry t).
    version: the policy version that produced it (int32).
    """
    tokens: Sequence[int]
    trainable: Optional[Sequence[int]] = None
    old_logprobs: Optional[Sequence[float]] = None
    advantage: Union[float, Sequence[float]] = 0.0
    version: int = 0


class Terms(NamedTuple):
    """Loss terms [J], ordered by sample then position: term j predicts target[j] from the logits at node[j]."""
    node: torch.Tensor          # int32: the node of position - 1
    target: torch.Tensor        # int32: the token at position
    old_logprob: torch.Tensor   # float32
    advantage: torch.Tensor     # float32
    sample: torch.Tensor        # int32
    position: torch.Tensor      # int32, >= 1
    version: torch.Tensor       # int32


class Segments(NamedTuple):
    """Maximal chains without branching [G]: nodes start[g] .. start[g] + length[g] - 1."""
    start: torch.Tensor   # int32
    length: torch.Tensor  # int32
    parent: torch.Tensor  # int32: segment of start[g]'s parent, -1 at a root


def _integers(name, value, length=None):
    """A 1-D int64 CPU tensor from a sequence or tensor of integers (TypeError for floats)."""
    t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    if t.dtype == torch.bool or (t.numel() == 0 and not isinstance(value, torch.Tensor)):  # [] is float32
        t = t.to(torch.int64)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name}: expected integers, got dtype {str(t.dtype).replace('torch.', '')}")
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {list(t.shape)}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name}: expected {length} entries (one per token), got {t.numel()}")
    return t.to("cpu", torch.int64)


def _floats(name, value, length):
    t = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
    if not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"{name}: expected numbers, got dtype {str(t.dtype).replace('torch.', '')}")
    if t.dim() != 1 or t.numel() != length:
        raise ValueError(f"{name}: expected {length} entries (one per token), got shape {list(t.shape)}")
    return t.to("cpu", torch.float32)


def _first(mask):
    return int(mask.nonzero()[0, 0])


def _pack(samples, vocab_size):
    """Checks the samples (errors name samples[s].field[t]) and packs them back to back."""
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
        raise TypeError(f"samples: expected a sequence of Sample (or dicts), got {type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("samples: expected at least one sample, got 0")
    tokens, trainable, old, adv, versions = [], [], [], [], []
    for s, sample in enumerate(samples):
        if isinstance(sample, dict):
            unknown = set(sample) - set(Sample.__dataclass_fields__)
            if unknown:
                raise TypeError(f"samples[{s}]: unknown field {sorted(unknown)[0]!r}")
            sample = Sample(**sample)
        elif not isinstance(sample, Sample):
            raise TypeError(f"samples[{s}]: expected a Sample or a dict, got {type(sample).__name__}")
        tok = _integers(f"samples[{s}].tokens", sample.tokens)
        L = tok.numel()
        if L == 0:
            raise ValueError(f"samples[{s}].tokens: expected at least 1 token, got 0")
        high = vocab_size if vocab_size else INT32_MAX
        if bool(((tok < 0) | (tok >= high)).any()):
            t = _first((tok < 0) | (tok >= high))
            raise ValueError(f"samples[{s}].tokens[{t}]: token id {int(tok[t])} out of range [0, {high})")
        mask = torch.zeros(L, dtype=torch.int64) if sample.trainable is None else \
            _integers(f"samples[{s}].trainable", sample.trainable, L)
        if bool(((mask != 0) & (mask != 1)).any()):
            t = _first((mask != 0) & (mask != 1))
            raise ValueError(f"samples[{s}].trainable[{t}]: expected 0 or 1, got {int(mask[t])}")
        if int(mask[0]) != 0:
            raise ValueError(f"samples[{s}].trainable[0]: must be 0 (no term predicts a sample's first token)")
        lp = torch.zeros(L) if sample.old_logprobs is None else _floats(f"samples[{s}].old_logprobs",
                                                                       sample.old_logprobs, L)
        bad = (mask == 1) & ~torch.isfinite(lp)
        if bool(bad.any()):
            t = _first(bad)
            raise ValueError(f"samples[{s}].old_logprobs[{t}]: expected a finite number where trainable, got {float(lp[t])}")
        if isinstance(sample.advantage, bool):
            raise TypeError(f"samples[{s}].advantage: expected a number or one per token, got a bool")
        given = sample.advantage.detach() if isinstance(sample.advantage, torch.Tensor) else \
            torch.as_tensor(sample.advantage, dtype=torch.float64)
        if given.dim() == 0:  # one advantage for the whole sample (a Python or NumPy scalar, a 0-d tensor)
            if not math.isfinite(float(given)):
                raise ValueError(f"samples[{s}].advantage: expected a finite number, got {float(given)}")
            a = torch.full((L,), float(given))
        else:
            a = _floats(f"samples[{s}].advantage", given, L)
            bad = (mask == 1) & ~torch.isfinite(a)
            if bool(bad.any()):
                t = _first(bad)
                raise ValueError(f"samples[{s}].advantage[{t}]: expected a finite number, got {float(a[t])}")
        try:
            version = operator.index(sample.version)  # an int, NumPy integer or 0-d integer tensor
        except TypeError:
            raise TypeError(f"samples[{s}].version: expected an int, got {type(sample.version).__name__}") from None
        if not -2**31 <= version <= INT32_MAX:
            raise ValueError(f"samples[{s}].version: {version} is outside int32")
        tokens.append(tok), trainable.append(mask), old.append(lp), adv.append(a), versions.append(version)
    lengths = torch.tensor([t.numel() for t in tokens], dtype=torch.int64)
    if int(lengths.sum()) > INT32_MAX:
        raise ValueError(f"samples: {int(lengths.sum())} tokens in all exceed the int32 limit")
    offsets = torch.zeros(len(tokens) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    return dict(offsets=offsets, tokens=torch.cat(tokens).to(torch.int32), trainable=torch.cat(trainable).to(torch.uint8),
                old_logprobs=torch.cat(old), advantages=torch.cat(adv),
                versions=torch.tensor(versions, dtype=torch.int32))


class PrefixTree:
    """A prefix-tree batch: N nodes in DFS pre-order (children in order of first appearance), G segments,
    J loss terms, T input positions (S samples packed back to back, sample s owning positions
    [offsets[s], offsets[s+1])). All index tensors are int32, except offsets (int64).

    Node a is an ancestor-or-self of q iff a <= q < subtree_end[a]; position is the depth (the position
    id for RoPE); node_of [T] maps each packed input position to its node.
    """

    def __init__(self, fields, info, bounds):
        self.__dict__.update(fields)
        self.num_nodes, self.num_segments = int(info.num_nodes), int(info.num_segments)
        self.num_terms, self.num_samples = int(info.num_terms), int(info.num_samples)
        self.max_depth, self.input_tokens = int(info.max_depth), int(info.input_tokens)
        self._info, self._bounds = info, bounds  # the offsets as a list, for node_of_sample without a device sync

    @classmethod
    def build(cls, samples, vocab_size=None, device=None):
        """Builds the tree of `samples` (Sample objects or dicts with the same fields) on the CPU kernels.

        vocab_size: when given, token ids are checked against it. device: where the tree's tensors go
        (default CPU); a CUDA device that cannot be served raises ForgeError.
        """
        if vocab_size is not None and (not isinstance(vocab_size, int) or not 0 < vocab_size <= INT32_MAX):
            raise ValueError(f"vocab_size: expected an int in [1, 2^31 - 1], got {vocab_size!r}")
        lib = _abi.load_library()
        if device is not None and torch.device(device).type == "cuda":
            _tensors.require_cuda(lib, torch.device(device), "device")
        packed = _pack(samples, vocab_size)
        p = _tensors.ptr
        batch = _abi.SampleBatch(num_samples=len(samples), offsets=p(packed["offsets"]), tokens=p(packed["tokens"]),
                                 trainable=p(packed["trainable"]), old_logprobs=p(packed["old_logprobs"]),
                                 advantages=p(packed["advantages"]), versions=p(packed["versions"]),
                                 vocab_size=vocab_size or 0)
        handle = ctypes.c_void_p()
        lib.call("forge_prefix_tree_build", ctypes.byref(batch), ctypes.byref(handle))
        try:
            info = _abi.TreeInfo()
            lib.call("forge_prefix_tree_get_info", handle, ctypes.byref(info))
            N, G, J, T = info.num_nodes, info.num_segments, info.num_terms, info.input_tokens
            sizes = dict(token=N, parent=N, position=N, subtree_end=N, segment_of=N, seg_start=G, seg_len=G,
                         seg_parent=G, term_node=J, term_target=J, term_old_logprob=J, term_advantage=J,
                         term_sample=J, term_position=J, term_version=J, node_of=T)
            out = {k: torch.empty(n, dtype=torch.float32 if k in ("term_old_logprob", "term_advantage") else torch.int32)
                   for k, n in sizes.items()}
            lib.call("forge_prefix_tree_export", handle, ctypes.byref(_abi.TreeArrays(**{k: p(v) for k, v in out.items()})))
        finally:
            lib.lib.forge_prefix_tree_free(handle)
        fields = {k: out[k] for k in ("token", "parent", "position", "subtree_end", "segment_of", "node_of")}
        fields["segments"] = Segments(out["seg_start"], out["seg_len"], out["seg_parent"])
        fields["terms"] = Terms(*(out["term_" + k] for k in ("node", "target", "old_logprob", "advantage", "sample",
                                                              "position", "version")))
        fields["offsets"] = packed["offsets"]
        tree = cls(fields, info, packed["offsets"].tolist())
        return tree if device is None else tree.to(device)

    @property
    def stats(self):
        """input_tokens (T), tree_tokens (N) and ratio T / N: how many times fewer tokens the tree computes."""
        return {"input_tokens": self.input_tokens, "tree_tokens": self.num_nodes,
                "ratio": self.input_tokens / self.num_nodes}

    @property
    def device(self):
        return self.subtree_end.device

    def to(self, device):
        """A copy of the tree with every tensor on `device` (checked to be usable for a CUDA device)."""
        device = torch.device(device)
        if device.type == "cuda":
            _tensors.require_cuda(_abi.load_library(), device, "device")
        fields = {k: getattr(self, k).to(device) for k in ("token", "parent", "position", "subtree_end",
                                                           "segment_of", "node_of", "offsets")}
        fields["segments"] = Segments(*(t.to(device) for t in self.segments))
        fields["terms"] = Terms(*(t.to(device) for t in self.terms))
        return PrefixTree(fields, self._info, self._bounds)

    def node_of_sample(self, s):
        """Nodes of sample s's positions [L_s] (a view of node_of)."""
        if not isinstance(s, int) or not 0 <= s < self.num_samples:
            raise IndexError(f"s: expected a sample index in [0, {self.num_samples}), got {s!r}")
        return self.node_of[self._bounds[s]:self._bounds[s + 1]]

    def gather_to_samples(self, values):
        """Per-node values [N, ...] -> per-position values [T, ...] (differentiable)."""
        return gather_to_samples(values, self.node_of, _checked=True)

    def scatter_from_samples(self, values):
        """Per-position values [T, ...] -> per-node [N, ...], summed over positions sharing a node (differentiable)."""
        return scatter_from_samples(values, self.node_of, self.num_nodes, _checked=True)

    def __repr__(self):
        return (f"PrefixTree(samples={self.num_samples}, input_tokens={self.input_tokens}, nodes={self.num_nodes}, "
                f"segments={self.num_segments}, terms={self.num_terms}, device={self.device})")


def parent_from_subtree_end(subtree_end):
    """parent [N] (int32, -1 at a root) of a pre-order forest given by subtree_end [N] (a CPU int32 tensor).

    The parent of node i is the nearest a < i whose subtree still contains i (subtree_end[a] > i).
    """
    ends = subtree_end.tolist()
    parent, path = [0] * len(ends), []
    for i, end in enumerate(ends):
        while path and ends[path[-1]] <= i:
            path.pop()
        parent[i] = path[-1] if path else -1
        path.append(i)
    return torch.tensor(parent, dtype=torch.int32)
