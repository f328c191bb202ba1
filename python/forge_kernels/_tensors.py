"""Checks of torch tensor arguments and the device set-up before a kernel call.

Every public function of the package checks its tensors here first, so a mistake is reported as a
TypeError (wrong Python type or dtype) or ValueError (device, shape, layout) that names the argument,
before any pointer reaches the library. Tensors are never copied or made contiguous silently: a
non-contiguous input is an error, because the kernels read raw row-major memory.
"""
import torch

from . import _abi

DTYPE_CODES = {torch.float32: _abi.DTYPE_F32, torch.float16: _abi.DTYPE_F16, torch.bfloat16: _abi.DTYPE_BF16}
F32 = (torch.float32,)
FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _names(dtypes):
    return " or ".join(str(d).replace("torch.", "") for d in dtypes)


def _shape(shape):
    return "[" + ", ".join("?" if s is None else str(s) for s in shape) + "]"


def check(name, t, *, shape=None, ndim=None, cpu_dtypes=F32, cuda_dtypes=F32, like=None):
    """Checks tensor argument `name` and returns it.

    shape: a tuple whose None entries match any size; ndim: the number of dimensions when shape is not
    given. cpu_dtypes / cuda_dtypes: the dtypes accepted on each device kind. like: (name, tensor) of an
    argument already checked, whose device this one must share.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: expected a CPU or CUDA tensor, got one on {t.device}")
    if like is not None and t.device != like[1].device:
        raise ValueError(f"{name}: expected a tensor on {like[1].device} (where {like[0]} is), got {t.device}")
    dtypes = cuda_dtypes if t.device.type == "cuda" else cpu_dtypes
    if t.dtype not in dtypes:
        where = "CUDA" if t.device.type == "cuda" else "CPU"
        raise TypeError(f"{name}: expected dtype {_names(dtypes)} on the {where}, got {str(t.dtype).replace('torch.', '')}")
    if shape is not None:
        if t.dim() != len(shape) or any(s is not None and s != got for s, got in zip(shape, t.shape)):
            raise ValueError(f"{name}: expected shape {_shape(shape)}, got {_shape(tuple(t.shape))}")
    elif ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension{'s' if ndim != 1 else ''}, got shape {_shape(tuple(t.shape))}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous row-major tensor (call .contiguous()), got strides {t.stride()}")
    return t


def same_dtype(name, t, like_name, like):
    if t.dtype != like.dtype:
        raise TypeError(f"{name}: expected the dtype of {like_name} ({str(like.dtype).replace('torch.', '')}), "
                        f"got {str(t.dtype).replace('torch.', '')}")


def check_int_range(name, t, low, high):
    """Raises ValueError naming the first entry of integer tensor t outside [low, high). On a CUDA tensor
    this synchronises (the device kernels trust their index arrays, so they are checked here)."""
    if t.numel() == 0:
        return
    bad = (t < low) | (t >= high)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name}[{i}]: {int(t[i])} is out of range [{low}, {high})")


def ptr(t):
    """Data pointer of a tensor for a c_void_p argument (None for an empty tensor)."""
    return t.data_ptr() if t is not None and t.numel() > 0 else None


_cuda_ready = set()  # libraries already found able to run device kernels (the query is not free)


def _no_cuda(lib):
    """(status, reason) when the library cannot run device kernels here, else None."""
    if lib.path in _cuda_ready:
        return None
    if not lib.lib.forge_cuda_compiled():
        return _abi.ERR_UNSUPPORTED, f"{lib.path} was built without CUDA (rebuild with the toolkit: FORGE_CUDA=on)"
    count, reason = lib.device_count()
    if count == 0:
        return _abi.ERR_DEVICE, f"libforge_kernels sees no usable GPU ({reason})"
    if not torch.cuda.is_available():
        return _abi.ERR_DEVICE, f"torch {torch.__version__} has no usable CUDA"
    _cuda_ready.add(lib.path)
    return None


def require_cuda(lib, device, name):
    """Raises ForgeError (FORGE_ERR_UNSUPPORTED or FORGE_ERR_DEVICE) when `device`, a CUDA device that
    argument `name` asks for, cannot be served here."""
    why = _no_cuda(lib)
    if why is not None:
        raise _abi.ForgeError("forge_cuda_device_count", why[0], _abi.STATUS_NAMES[why[0]],
                              f"{name}: {device} requested, but {why[1]}")


def cuda_stream(lib, t, name):
    """Prepares a call on t's CUDA device: checks that the library can serve it, makes t's device the
    current one of the library's CUDA runtime (linked statically, so it keeps its own notion), and
    returns torch's current stream there (an int), so forge's kernels are ordered with torch's work."""
    require_cuda(lib, t.device, name)
    index = t.device.index if t.device.index is not None else torch.cuda.current_device()
    lib.call("forge_cuda_set_device", index)
    return torch.cuda.current_stream(t.device).cuda_stream
