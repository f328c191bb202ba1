"""Values between the tree layout [N, ...] and the per-sample layout [T, ...] (contract 1), as an autograd pair.

gather_to_samples: out[i] = values[node_of[i]]; its gradient sums the positions sharing a node, which
is scatter_from_samples; and the other way round. CPU tensors go through forge_gather_to_samples /
forge_scatter_from_samples (float32), CUDA tensors through the forge_cuda_* forms on torch's current
stream (gather: float32, float16 or bfloat16; scatter: float32, deterministic, no atomics).

merge_to_tree is the samples -> tree copy for values (not gradients): each node takes the row of its
first position, e.g. a packed per-sample K/V cache becoming the tree's K/V (any float dtype on CUDA).
"""
import math

import torch

from . import _abi, _tensors


def _channels(values):
    return math.prod(values.shape[1:])


# Launches with plain pointers (ints): stream None runs the CPU kernel, an int stream the device one.
def launch_gather(lib, dtype, values, num_nodes, channels, node_of, num_positions, out, stream=None):
    if stream is not None:
        lib.call("forge_cuda_gather_to_samples", dtype, values, num_nodes, channels, node_of, num_positions, out, stream)
    else:
        lib.call("forge_gather_to_samples", values, num_nodes, channels, node_of, num_positions, out)


def launch_scatter(lib, values, num_positions, channels, node_of, num_nodes, out, stream=None):
    if stream is not None:
        lib.call("forge_cuda_scatter_from_samples", values, num_positions, channels, node_of, num_nodes, out, stream)
    else:
        lib.call("forge_scatter_from_samples", values, num_positions, channels, node_of, num_nodes, out)


def launch_merge_to_tree(lib, dtype, values, num_positions, channels, node_of, num_nodes, out, stream=None):
    if stream is not None:
        lib.call("forge_cuda_merge_to_tree", dtype, values, num_positions, channels, node_of, num_nodes, out, stream)
    else:
        lib.call("forge_merge_to_tree", values, num_positions, channels, node_of, num_nodes, out)


def _stream(lib, values):
    return _tensors.cuda_stream(lib, values, "values") if values.is_cuda else None


def _gather(values, node_of):
    out = torch.empty((node_of.numel(),) + tuple(values.shape[1:]), dtype=values.dtype, device=values.device)
    if out.numel() == 0:
        return out
    lib, p = _abi.load_library(), _tensors.ptr
    launch_gather(lib, _tensors.DTYPE_CODES[values.dtype], p(values), values.shape[0], _channels(values), p(node_of),
                  node_of.numel(), p(out), stream=_stream(lib, values))
    return out


def _scatter(values, node_of, num_nodes):
    out = torch.empty((num_nodes,) + tuple(values.shape[1:]), dtype=torch.float32, device=values.device)
    if out.numel() == 0 or values.numel() == 0:
        return out.zero_()
    lib, p = _abi.load_library(), _tensors.ptr
    launch_scatter(lib, p(values), node_of.numel(), _channels(values), p(node_of), num_nodes, p(out),
                   stream=_stream(lib, values))
    return out


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, node_of):
        ctx.save_for_backward(node_of)
        ctx.num_nodes, ctx.dtype = values.shape[0], values.dtype
        return _gather(values, node_of)

    @staticmethod
    def backward(ctx, grad):
        (node_of,) = ctx.saved_tensors
        # Half-precision gradients are summed in float32, then rounded once.
        return _Scatter.apply(grad.contiguous().float(), node_of, ctx.num_nodes).to(ctx.dtype), None


class _Scatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, node_of, num_nodes):
        ctx.save_for_backward(node_of)
        return _scatter(values, node_of, num_nodes)

    @staticmethod
    def backward(ctx, grad):
        (node_of,) = ctx.saved_tensors
        return _Gather.apply(grad.contiguous(), node_of), None, None


def _check_node_of(node_of, values, count):
    _tensors.check("node_of", node_of, shape=(count,) if count is not None else None, ndim=1,
                   cpu_dtypes=(torch.int32,), cuda_dtypes=(torch.int32,), like=("values", values))


def gather_to_samples(values, node_of, _checked=False):
    """Per-node values [N, ...] -> per-position [T, ...]: out[i] = values[node_of[i]] (differentiable).

    node_of: int32 [T] on values' device (PrefixTree.node_of). Entries outside [0, N) raise ValueError
    (checked here on CUDA, where the device kernel trusts them; this synchronises).
    """
    _tensors.check("values", values, cpu_dtypes=_tensors.F32, cuda_dtypes=_tensors.FLOATS)
    if values.dim() < 1:
        raise ValueError("values: expected shape [N, ...], got a 0-d tensor")
    _check_node_of(node_of, values, None)
    if values.is_cuda and not _checked:
        _tensors.check_int_range("node_of", node_of, 0, values.shape[0])
    return _Gather.apply(values, node_of)


def scatter_from_samples(values, node_of, num_nodes, _checked=False):
    """Per-position values [T, ...] -> per-node [N, ...] (N = num_nodes), summed over the positions sharing
    a node (differentiable; float32). node_of: int32 [T] on values' device, entries in [0, num_nodes)."""
    _tensors.check("values", values, cpu_dtypes=_tensors.F32, cuda_dtypes=_tensors.F32)
    if values.dim() < 1:
        raise ValueError("values: expected shape [T, ...], got a 0-d tensor")
    if not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes: expected an int >= 0, got {num_nodes!r}")
    _check_node_of(node_of, values, values.shape[0])
    if values.is_cuda and not _checked:
        _tensors.check_int_range("node_of", node_of, 0, num_nodes)
    return _Scatter.apply(values, node_of, num_nodes)


def merge_to_tree(values, node_of, num_nodes):
    """Per-position values [T, ...] -> per-node [N, ...] (N = num_nodes): node n takes the row of its FIRST
    position (lowest i with node_of[i] == n), a node without positions zeros. For values equal at every
    position of a node (a packed K/V cache) this undoes gather_to_samples; the copies are not compared.

    float32 on the CPU; float32, float16 or bfloat16 on CUDA (same dtype out). node_of: int32 [T] on
    values' device, entries in [0, num_nodes) (ValueError otherwise; on CUDA checked here, which
    synchronises). Not differentiable: for gradients, which sum over positions, use scatter_from_samples.
    """
    _tensors.check("values", values, cpu_dtypes=_tensors.F32, cuda_dtypes=_tensors.FLOATS)
    if values.dim() < 1:
        raise ValueError("values: expected shape [T, ...], got a 0-d tensor")
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 1:
        raise ValueError(f"num_nodes: expected an int >= 1, got {num_nodes!r}")
    if values.requires_grad and torch.is_grad_enabled():
        raise ValueError("values: merge_to_tree is not differentiable (use scatter_from_samples for gradients, "
                         "or pass values.detach())")
    _check_node_of(node_of, values, values.shape[0])
    _tensors.check_int_range("node_of", node_of, 0, num_nodes)
    out = torch.empty((num_nodes,) + tuple(values.shape[1:]), dtype=values.dtype, device=values.device)
    if out.numel() == 0 or values.numel() == 0:
        return out.zero_()
    lib, p = _abi.load_library(), _tensors.ptr
    launch_merge_to_tree(lib, _tensors.DTYPE_CODES[values.dtype], p(values), values.shape[0], _channels(values),
                         p(node_of), num_nodes, p(out), stream=_stream(lib, values))
    return out
