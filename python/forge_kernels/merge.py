"""Merging partial attention states over disjoint key sets (DESIGN.md contract 2, mergeStates).

lse = log(e^la + e^lb), o = (e^la oa + e^lb ob) / (e^la + e^lb); an empty state (lse = -inf) adds
nothing. Pairwise (forge_merge_states) and N-way over CSR row ranges (forge_merge_states_csr); CPU or
CUDA float32 tensors. Forward only: the library has no backward for merges, so inputs that require a
gradient are refused instead of being detached silently.
"""
import torch

from . import _abi, _tensors

F32 = dict(cpu_dtypes=_tensors.F32, cuda_dtypes=_tensors.F32)


# Launches with plain pointers (ints): stream None runs the CPU kernel, an int stream the device one.
def launch_merge(lib, rows, heads, dim, o_a, lse_a, o_b, lse_b, o, lse, stream=None):
    if stream is not None:
        lib.call("forge_cuda_merge_states", rows, heads, dim, o_a, lse_a, o_b, lse_b, o, lse, stream)
    else:
        lib.call("forge_merge_states", rows, heads, dim, o_a, lse_a, o_b, lse_b, o, lse)


def launch_merge_csr(lib, rows, heads, dim, offsets, num_states, o, lse, o_out, lse_out, stream=None):
    if stream is not None:
        lib.call("forge_cuda_merge_states_csr", rows, heads, dim, offsets, num_states, o, lse, o_out, lse_out, stream)
    else:
        lib.call("forge_merge_states_csr", rows, heads, dim, offsets, num_states, o, lse, o_out, lse_out)


def _no_grad_inputs(**tensors):
    if torch.is_grad_enabled():
        for name, t in tensors.items():
            if t.requires_grad:
                raise ValueError(f"{name}: requires grad, but merge_states has no backward (pass {name}.detach(), "
                                 f"or run under torch.no_grad())")


def merge_states(o_a, lse_a, o_b, lse_b):
    """Merges states a and b: o [rows, H, D] and lse [rows, H] (natural log) each; returns (o, lse)."""
    _tensors.check("o_a", o_a, ndim=3, **F32)
    rows, H, D = o_a.shape
    like = ("o_a", o_a)
    _tensors.check("lse_a", lse_a, shape=(rows, H), like=like, **F32)
    _tensors.check("o_b", o_b, shape=(rows, H, D), like=like, **F32)
    _tensors.check("lse_b", lse_b, shape=(rows, H), like=like, **F32)
    _no_grad_inputs(o_a=o_a, lse_a=lse_a, o_b=o_b, lse_b=lse_b)
    o, lse = torch.empty_like(o_a), torch.empty_like(lse_a)
    if rows == 0:
        return o, lse
    lib, p = _abi.load_library(), _tensors.ptr
    stream = _tensors.cuda_stream(lib, o_a, "o_a") if o_a.is_cuda else None
    launch_merge(lib, rows, H, D, p(o_a), p(lse_a), p(o_b), p(lse_b), p(o), p(lse), stream=stream)
    return o, lse


def merge_states_csr(o, lse, offsets):
    """N-way merge: states o [M, H, D], lse [M, H]; output row r merges rows [offsets[r], offsets[r+1]).

    offsets: int64 [rows + 1] on the states' device, offsets[0] = 0, non-decreasing, offsets[-1] = M
    (checked by the library). An empty range gives the empty state (o = 0, lse = -inf).
    """
    _tensors.check("o", o, ndim=3, **F32)
    M, H, D = o.shape
    _tensors.check("lse", lse, shape=(M, H), like=("o", o), **F32)
    _tensors.check("offsets", offsets, ndim=1, cpu_dtypes=(torch.int64,), cuda_dtypes=(torch.int64,), like=("o", o))
    if offsets.numel() < 1:
        raise ValueError("offsets: expected rows + 1 >= 1 entries, got 0")
    _no_grad_inputs(o=o, lse=lse)
    rows = offsets.numel() - 1
    o_out = torch.empty((rows, H, D), dtype=torch.float32, device=o.device)
    lse_out = torch.empty((rows, H), dtype=torch.float32, device=o.device)
    lib, p = _abi.load_library(), _tensors.ptr
    stream = _tensors.cuda_stream(lib, o, "o") if o.is_cuda else None
    launch_merge_csr(lib, rows, H, D, p(offsets), M, p(o), p(lse), p(o_out), p(lse_out), stream=stream)
    return o_out, lse_out
