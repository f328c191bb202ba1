"""Tree attention (DESIGN.md contract 2) as a torch.autograd.Function.

Query q attends to every key a that is an ancestor-or-self of q in the prefix tree, i.e.
a <= q < subtree_end[a]. CPU float32 tensors run forge_tree_attention_forward / _backward; CUDA
tensors (float32, float16 or bfloat16; head_dim 64 or 128) run the forge_cuda_* forms on torch's
current stream. Grouped-query attention when k and v have fewer heads than q.
"""
import ctypes
import math

import torch

from . import _abi, _tensors
from .prefix_tree import parent_from_subtree_end

INDEX = (torch.int32,)


# The launches take plain pointers (ints) so that they serve torch tensors and any device memory alike
# (the tests run them on the CUDA emulator build with memory from forge_cuda_malloc). stream None: the
# CPU kernels; an int (0 = the legacy default stream): the device kernels on that stream.
def launch_forward(lib, shape, dtype, q, k, v, parent, subtree_end, o, lse, stream=None):
    if stream is not None:
        lib.call("forge_cuda_tree_attention_forward", ctypes.byref(shape), dtype, q, k, v, subtree_end, o, lse, stream)
    else:
        lib.call("forge_tree_attention_forward", ctypes.byref(shape), q, k, v, parent, subtree_end, o, lse)


def launch_backward(lib, shape, dtype, q, k, v, parent, subtree_end, o, lse, d_o, dq, dk, dv, stream=None):
    if stream is not None:
        lib.call("forge_cuda_tree_attention_backward", ctypes.byref(shape), dtype, q, k, v, subtree_end, o, lse, d_o,
                 dq, dk, dv, stream)
    else:
        lib.call("forge_tree_attention_backward", ctypes.byref(shape), q, k, v, parent, subtree_end, o, lse, d_o, dq,
                 dk, dv)


def _run(launch, lib, shape, tensors):
    """Calls a launch with the tensors' pointers, on torch's current stream for CUDA tensors."""
    q = tensors[0]
    stream = _tensors.cuda_stream(lib, q, "q") if q.is_cuda else None
    launch(lib, shape, _tensors.DTYPE_CODES[q.dtype], *map(_tensors.ptr, tensors), stream=stream)


class _TreeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, subtree_end, parent, scale):
        N, Hq, D = q.shape
        shape = _abi.AttentionShape(N, Hq, k.shape[1], D, scale)
        o = torch.empty_like(q)
        lse = torch.empty((N, Hq), dtype=torch.float32, device=q.device)
        _run(launch_forward, _abi.load_library(), shape, (q, k, v, parent, subtree_end, o, lse))
        ctx.save_for_backward(q, k, v, subtree_end, parent, o, lse)
        ctx.scale = scale
        ctx.set_materialize_grads(False)  # unused outputs give None, so a used lse can be told apart
        return o, lse

    @staticmethod
    def backward(ctx, grad_o, grad_lse):
        if grad_lse is not None:
            raise NotImplementedError("tree_attention: no gradient flows through lse (the kernels take dO only); "
                                      "use lse.detach() where it only feeds a constant")
        q, k, v, subtree_end, parent, o, lse = ctx.saved_tensors
        if grad_o is None:
            return None, None, None, None, None, None
        d_o = grad_o.to(q.dtype).contiguous()
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        shape = _abi.AttentionShape(q.shape[0], q.shape[1], k.shape[1], q.shape[2], ctx.scale)
        _run(launch_backward, _abi.load_library(), shape, (q, k, v, parent, subtree_end, o, lse, d_o, dq, dk, dv))
        return dq, dk, dv, None, None, None


def tree_attention(q, k, v, subtree_end, scale=None, parent=None):
    """Attention of every node over its root path in a prefix tree: returns (o [N, Hq, D], lse [N, Hq]).

    q [N, Hq, D], k and v [N, Hkv, D] (Hq a multiple of Hkv), one dtype, contiguous; subtree_end int32
    [N] on the same device (PrefixTree.subtree_end). scale: the softmax scale (default 1/sqrt(D)).
    parent: int32 [N], only read on the CPU, where the kernel validates the tree with it; derived from
    subtree_end when not given (an O(N) Python loop: pass PrefixTree.parent to skip it).

    o is differentiable in q, k and v (backward: forge_tree_attention_backward). lse (natural log of
    the softmax denominators, float32) has no backward: the kernels take no dLSE, so backpropagating
    through a use of lse raises NotImplementedError rather than dropping that gradient silently.
    """
    _tensors.check("q", q, ndim=3, cuda_dtypes=_tensors.FLOATS)
    N, Hq, D = q.shape
    _tensors.check("k", k, shape=(N, None, D), cuda_dtypes=_tensors.FLOATS, like=("q", q))
    _tensors.same_dtype("k", k, "q", q)
    Hkv = k.shape[1]
    _tensors.check("v", v, shape=(N, Hkv, D), cuda_dtypes=_tensors.FLOATS, like=("q", q))
    _tensors.same_dtype("v", v, "q", q)
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"k: its {Hkv} heads must divide the {Hq} heads of q (grouped-query attention)")
    _tensors.check("subtree_end", subtree_end, shape=(N,), cpu_dtypes=INDEX, cuda_dtypes=INDEX, like=("q", q))
    if scale is None:
        scale = 0.0  # the kernels' "1 / sqrt(head_dim)"
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale: expected a finite number > 0, got {scale!r}")
    if q.is_cuda:
        parent = None  # the device kernels read subtree_end only
    elif parent is None:
        parent = parent_from_subtree_end(subtree_end)
    else:
        _tensors.check("parent", parent, shape=(N,), cpu_dtypes=INDEX, cuda_dtypes=INDEX, like=("q", q))
    return _TreeAttention.apply(q, k, v, subtree_end, parent, float(scale))
