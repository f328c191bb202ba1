"""libforge_kernels through ctypes: the C ABI of native/include/forge/forge.h, as a PyTorch user binds it.

Device tensors cross as DLPack: `device_ptr(t, stream)` takes the tensor's DLPack capsule
(`__dlpack__`, synchronised with the stream the kernels run on), checks that it is a contiguous CUDA
tensor of the expected dtype, and returns its data pointer. Nothing here imports torch at module load.
"""
import ctypes
import os
from ctypes import POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_uint8, c_uint16
from ctypes import c_uint64, c_void_p

FORGE_OK = 0
DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
PG_CISPO, PG_PPO_CLIP, PG_CROSS_ENTROPY = 0, 1, 2


class AttentionShape(ctypes.Structure):
    _fields_ = [("num_nodes", c_int64), ("num_heads", c_int32), ("num_kv_heads", c_int32),
                ("head_dim", c_int32), ("scale", c_float)]


class CispoOptions(ctypes.Structure):
    _fields_ = [("mode", c_int), ("eps_low", c_float), ("eps_high", c_float), ("normalizer", c_double)]


class CispoStats(ctypes.Structure):
    _fields_ = [(name, c_double) for name in ("loss", "mean_ratio", "clip_frac_high", "clip_frac_low",
                                              "clip_frac_pos_adv", "clip_frac_neg_adv", "mean_entropy",
                                              "mean_logprob")] + [("num_terms", c_int64), ("num_rows", c_int64)]


class SampleBatch(ctypes.Structure):
    _fields_ = [("num_samples", c_int32), ("offsets", c_void_p), ("tokens", c_void_p), ("trainable", c_void_p),
                ("old_logprobs", c_void_p), ("advantages", c_void_p), ("sample_advantages", c_void_p),
                ("versions", c_void_p), ("vocab_size", c_int32)]


class TreeInfo(ctypes.Structure):
    _fields_ = [("num_nodes", c_int64), ("num_segments", c_int64), ("num_terms", c_int64),
                ("input_tokens", c_int64), ("num_samples", c_int32), ("max_depth", c_int32)]


class TreeArrays(ctypes.Structure):
    _fields_ = [(name, c_void_p) for name in (
        "token", "parent", "position", "subtree_end", "segment_of", "seg_start", "seg_len", "seg_parent",
        "term_node", "term_target", "term_old_logprob", "term_advantage", "term_sample", "term_position",
        "term_version", "node_of")]


# DLPack (dlpack.h, v0.x "dltensor" capsules): just the fields needed to read a pointer safely.
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", c_int), ("device_id", c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("device", _DLDevice), ("ndim", c_int), ("dtype", _DLDataType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


_KDL_CUDA = 2
_DL_CODES = {0: "int", 1: "uint", 2: "float", 4: "bfloat"}
_capsule_get = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get.restype = c_void_p
_capsule_get.argtypes = [ctypes.py_object, c_char_p]


def device_ptr(tensor, stream, expect):
    """Data pointer of a contiguous CUDA tensor, read from its DLPack capsule.

    `expect` is the DLPack type the kernel wants, e.g. "bfloat16", "float32", "int32". `stream` is the
    integer CUDA stream the kernels will run on (0 = legacy default); the producer orders its pending
    work before it. The caller keeps `tensor` alive while the pointer is used.
    """
    capsule = tensor.__dlpack__(stream=stream if stream not in (0, None) else None)
    managed = _DLManagedTensor.from_address(_capsule_get(capsule, b"dltensor"))
    t = managed.dl_tensor
    if t.device.device_type != _KDL_CUDA:
        raise ValueError(f"expected a CUDA tensor, got DLPack device type {t.device.device_type}")
    kind = f"{_DL_CODES.get(t.dtype.code, t.dtype.code)}{t.dtype.bits}"
    if kind != expect or t.dtype.lanes != 1:
        raise ValueError(f"expected {expect}, got {kind}x{t.dtype.lanes}")
    if t.strides:  # NULL strides mean compact row-major
        expected_stride = 1
        for dim in reversed(range(t.ndim)):
            if t.shape[dim] != 1 and t.strides[dim] != expected_stride:
                raise ValueError("expected a contiguous row-major tensor")
            expected_stride *= t.shape[dim]
    return (t.data or 0) + t.byte_offset  # the capsule's deleter runs when it is collected


class ForgeError(RuntimeError):
    pass


def default_library_path():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("FORGE_KERNELS_LIB", os.path.join(here, "build", "forge", "libforge_kernels.so"))


class Forge:
    """The functions of libforge_kernels this bench calls, with their C signatures."""

    def __init__(self, path):
        self.lib = lib = ctypes.CDLL(path)
        sig = {
            "forge_status_name": (c_char_p, [c_int]),
            "forge_last_error": (c_char_p, []),
            "forge_abi_version": (c_int, []),
            "forge_cuda_compiled": (c_int, []),
            "forge_cuda_device_count": (c_int, [POINTER(c_char_p)]),
            "forge_prefix_tree_build": (c_int, [POINTER(SampleBatch), POINTER(c_void_p)]),
            "forge_prefix_tree_free": (None, [c_void_p]),
            "forge_prefix_tree_get_info": (c_int, [c_void_p, POINTER(TreeInfo)]),
            "forge_prefix_tree_export": (c_int, [c_void_p, POINTER(TreeArrays)]),
            "forge_cuda_tree_attention_forward": (c_int, [POINTER(AttentionShape), c_int, c_void_p, c_void_p,
                                                          c_void_p, c_void_p, c_void_p, c_void_p, c_void_p]),
            "forge_cuda_tree_attention_backward": (c_int, [POINTER(AttentionShape), c_int] + [c_void_p] * 11),
            "forge_cuda_cispo_loss": (c_int, [c_int, c_int64, c_int64, c_void_p, c_int64, c_void_p, c_void_p,
                                              c_void_p, c_void_p, POINTER(CispoOptions), c_void_p, c_void_p,
                                              POINTER(CispoStats), c_void_p]),
            "forge_cuda_synchronize": (c_int, [c_void_p]),
        }
        self.missing = []  # a library older than this bench lacks some: say which, when called
        for name, (restype, argtypes) in sig.items():
            try:
                fn = getattr(lib, name)
            except AttributeError:
                self.missing.append(name)
                continue
            fn.restype, fn.argtypes = restype, argtypes

    def check(self, status, what):
        if status != FORGE_OK:
            name = self.lib.forge_status_name(status).decode()
            raise ForgeError(f"{what}: {name}: {self.lib.forge_last_error().decode()}")

    def device_count(self):
        reason = c_char_p()
        n = self.lib.forge_cuda_device_count(ctypes.byref(reason))
        return n, (reason.value or b"").decode()

    def build_tree(self, np, samples, vocab_size):
        """Prefix tree of token samples (lists of int32 arrays): parent, subtree_end, position, node_of."""
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in samples])
        tokens = np.ascontiguousarray(np.concatenate(samples).astype(np.int32))
        batch = SampleBatch(num_samples=len(samples), offsets=offsets.ctypes.data, tokens=tokens.ctypes.data,
                            vocab_size=vocab_size)
        handle = c_void_p()
        self.check(self.lib.forge_prefix_tree_build(ctypes.byref(batch), ctypes.byref(handle)),
                   "forge_prefix_tree_build")
        try:
            info = TreeInfo()
            self.check(self.lib.forge_prefix_tree_get_info(handle, ctypes.byref(info)), "forge_prefix_tree_get_info")
            out = {k: np.empty(info.num_nodes, dtype=np.int32) for k in ("parent", "subtree_end", "position")}
            out["node_of"] = np.empty(info.input_tokens, dtype=np.int32)
            arrays = TreeArrays(**{k: v.ctypes.data for k, v in out.items()})
            self.check(self.lib.forge_prefix_tree_export(handle, ctypes.byref(arrays)), "forge_prefix_tree_export")
        finally:
            self.lib.forge_prefix_tree_free(handle)
        out["input_tokens"] = int(info.input_tokens)
        return out
