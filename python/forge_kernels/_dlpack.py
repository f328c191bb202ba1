"""Device pointers of any DLPack producer (torch, CuPy, JAX), for calling the forge_cuda_* functions of
_abi directly. The torch-facing functions of this package do not need it (they take torch tensors);
the GPU bench uses it to hand torch tensors to the raw ABI with DLPack's stream synchronisation.
"""
import ctypes
from ctypes import POINTER, c_char_p, c_int, c_int64, c_uint8, c_uint16, c_uint64, c_void_p


# dlpack.h (v0.x "dltensor" capsules): just the fields needed to read a pointer safely.
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("device", _DLDevice), ("ndim", c_int), ("dtype", _DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


KDL_CPU, KDL_CUDA = 1, 2
_DL_CODES = {0: "int", 1: "uint", 2: "float", 4: "bfloat"}
_capsule_get = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get.restype = c_void_p
_capsule_get.argtypes = [ctypes.py_object, c_char_p]


def dlpack_view(tensor, stream=None):
    """(device_type, dtype name such as 'bfloat16', data address, contiguous) of a DLPack producer.

    `stream` (an int, CUDA producers only) is the stream the consumer will use: the producer orders its
    pending work before it. The address stays valid while `tensor` is alive.
    """
    capsule = tensor.__dlpack__(stream=stream if stream not in (0, None) else None) if stream is not None \
        else tensor.__dlpack__()
    t = _DLManagedTensor.from_address(_capsule_get(capsule, b"dltensor")).dl_tensor
    kind = f"{_DL_CODES.get(t.dtype.code, t.dtype.code)}{t.dtype.bits}" + (f"x{t.dtype.lanes}" if t.dtype.lanes != 1 else "")
    contiguous, expected_stride = True, 1
    if t.strides:  # NULL strides mean compact row-major
        for dim in reversed(range(t.ndim)):
            if t.shape[dim] != 1 and t.strides[dim] != expected_stride:
                contiguous = False
            expected_stride *= t.shape[dim]
    return t.device.device_type, kind, (t.data or 0) + t.byte_offset, contiguous  # the capsule is freed by GC


def device_ptr(tensor, stream, expect):
    """Data pointer of a contiguous CUDA tensor of DLPack type `expect` ("bfloat16", "float32", "int32"),
    read from its DLPack capsule; ValueError otherwise. See dlpack_view for `stream`."""
    device_type, kind, address, contiguous = dlpack_view(tensor, stream)
    if device_type != KDL_CUDA:
        raise ValueError(f"expected a CUDA tensor, got DLPack device type {device_type}")
    if kind != expect:
        raise ValueError(f"expected {expect}, got {kind}")
    if not contiguous:
        raise ValueError("expected a contiguous row-major tensor")
    return address
