"""The C ABI of libforge_kernels (native/include/forge/forge.h) described for ctypes, and its loading.

This is the one ctypes description of forge.h in the repository: the torch-facing modules of this
package and the GPU bench (bench/gpu/forge_ctypes.py) both use it. It imports neither torch nor numpy.
Every data pointer is declared `c_void_p`, so callers pass plain integers (`tensor.data_ptr()`).
"""
import ctypes
import os
import threading
from ctypes import POINTER, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_void_p

ABI_VERSION = 1  # FORGE_ABI_VERSION this description was written against

# forge_status
OK = 0
STATUS_NAMES = ("FORGE_OK", "FORGE_ERR_INVALID_ARGUMENT", "FORGE_ERR_OUT_OF_RANGE", "FORGE_ERR_NON_FINITE",
                "FORGE_ERR_OUT_OF_MEMORY", "FORGE_ERR_UNSUPPORTED", "FORGE_ERR_DEVICE", "FORGE_ERR_INTERNAL")
ERR_INVALID_ARGUMENT, ERR_OUT_OF_RANGE, ERR_NON_FINITE, ERR_OUT_OF_MEMORY = 1, 2, 3, 4
ERR_UNSUPPORTED, ERR_DEVICE, ERR_INTERNAL = 5, 6, 7
# forge_dtype
DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
# forge_pg_mode
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


TREE_ARRAY_FIELDS = ("token", "parent", "position", "subtree_end", "segment_of", "seg_start", "seg_len",
                     "seg_parent", "term_node", "term_target", "term_old_logprob", "term_advantage", "term_sample",
                     "term_position", "term_version", "node_of")


class TreeArrays(ctypes.Structure):
    _fields_ = [(name, c_void_p) for name in TREE_ARRAY_FIELDS]


class CudaDeviceProps(ctypes.Structure):
    _fields_ = [("name", c_char * 256), ("major", c_int32), ("minor", c_int32), ("multiprocessors", c_int32),
                ("total_memory", c_int64), ("free_memory", c_int64)]


_P = c_void_p  # any data pointer or opaque handle
_S = c_int     # forge_status (and the C enums passed by value)

# name: (restype, argtypes), in forge.h's order.
SIGNATURES = {
    "forge_status_name": (c_char_p, [_S]),
    "forge_last_error": (c_char_p, []),
    "forge_abi_version": (c_int, []),
    "forge_set_num_threads": (_S, [c_int]),
    "forge_get_num_threads": (c_int, []),
    "forge_cuda_device_count": (c_int, [POINTER(c_char_p)]),
    "forge_cuda_compiled": (c_int, []),
    # contract 1
    "forge_prefix_tree_build": (_S, [POINTER(SampleBatch), POINTER(c_void_p)]),
    "forge_prefix_tree_free": (None, [_P]),
    "forge_prefix_tree_get_info": (_S, [_P, POINTER(TreeInfo)]),
    "forge_prefix_tree_export": (_S, [_P, POINTER(TreeArrays)]),
    "forge_gather_to_samples": (_S, [_P, c_int64, c_int64, _P, c_int64, _P]),
    "forge_scatter_from_samples": (_S, [_P, c_int64, c_int64, _P, c_int64, _P]),
    "forge_merge_to_tree": (_S, [_P, c_int64, c_int64, _P, c_int64, _P]),
    "forge_tree_validate": (_S, [_P, _P, c_int64]),
    # contract 2
    "forge_tree_attention_forward": (_S, [POINTER(AttentionShape), _P, _P, _P, _P, _P, _P, _P]),
    "forge_tree_attention_backward": (_S, [POINTER(AttentionShape)] + [_P] * 11),
    "forge_merge_states": (_S, [c_int64, c_int32, c_int32, _P, _P, _P, _P, _P, _P]),
    "forge_merge_states_csr": (_S, [c_int64, c_int32, c_int32, _P, c_int64, _P, _P, _P, _P]),
    # contract 3
    "forge_cispo_loss": (_S, [c_int64, c_int64, _P, c_int64, _P, _P, _P, _P, POINTER(CispoOptions), _P, _P,
                              POINTER(CispoStats)]),
    # CUDA backend
    "forge_dtype_size": (c_size_t, [_S]),
    "forge_cuda_get_device_props": (_S, [c_int32, POINTER(CudaDeviceProps)]),
    "forge_cuda_set_device": (_S, [c_int32]),
    "forge_cuda_malloc": (_S, [c_size_t, POINTER(c_void_p)]),
    "forge_cuda_free": (_S, [_P]),
    "forge_cuda_memcpy_h2d": (_S, [_P, _P, c_size_t, _P]),
    "forge_cuda_memcpy_d2h": (_S, [_P, _P, c_size_t, _P]),
    "forge_cuda_memcpy_d2d": (_S, [_P, _P, c_size_t, _P]),
    "forge_cuda_memset": (_S, [_P, c_int, c_size_t, _P]),
    "forge_cuda_synchronize": (_S, [_P]),
    "forge_cuda_convert": (_S, [c_int64, _S, _P, _S, _P, _P]),
    "forge_cuda_gather_to_samples": (_S, [_S, _P, c_int64, c_int64, _P, c_int64, _P, _P]),
    "forge_cuda_scatter_from_samples": (_S, [_P, c_int64, c_int64, _P, c_int64, _P, _P]),
    "forge_cuda_merge_to_tree": (_S, [_S, _P, c_int64, c_int64, _P, c_int64, _P, _P]),
    "forge_cuda_tree_attention_forward": (_S, [POINTER(AttentionShape), _S, _P, _P, _P, _P, _P, _P, _P]),
    "forge_cuda_tree_attention_backward": (_S, [POINTER(AttentionShape), _S] + [_P] * 11),
    "forge_cuda_merge_states": (_S, [c_int64, c_int32, c_int32, _P, _P, _P, _P, _P, _P, _P]),
    "forge_cuda_merge_states_csr": (_S, [c_int64, c_int32, c_int32, _P, c_int64, _P, _P, _P, _P, _P]),
    "forge_cuda_cispo_loss": (_S, [_S, c_int64, c_int64, _P, c_int64, _P, _P, _P, _P, POINTER(CispoOptions), _P,
                                   _P, POINTER(CispoStats), _P]),
}


class ForgeError(RuntimeError):
    """A libforge_kernels call returned an error status.

    `status` is the forge_status value, `code` its name ("FORGE_ERR_OUT_OF_RANGE", the same codes the
    Node API's errors carry), `function` the C function, and the message is forge_last_error()'s text.
    """

    def __init__(self, function, status, code, detail):
        super().__init__(f"{function}: {code}: {detail}" if detail else f"{function}: {code}")
        self.function, self.status, self.code, self.detail = function, status, code, detail


class LibraryNotFound(OSError):
    """libforge_kernels.so could not be found or loaded (message says where it looked and how to build it)."""


def default_library_path():
    """$FORGE_KERNELS_LIB, else build/Release/libforge_kernels.so of the package this folder ships in."""
    env = os.environ.get("FORGE_KERNELS_LIB")
    if env:
        return env
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # python/forge_kernels/..
    return os.path.join(root, "build", "Release", "libforge_kernels.so")


class Library:
    """libforge_kernels loaded with the signatures of SIGNATURES set.

    `lib` is the ctypes.CDLL (its calls release the GIL). Symbols a library older than this description
    lacks are listed in `missing`; calling one raises ForgeError(FORGE_ERR_UNSUPPORTED) through `call`.
    """

    def __init__(self, path=None):
        self.path = path or default_library_path()
        if not os.path.exists(self.path):
            raise LibraryNotFound(f"libforge_kernels: {self.path} does not exist (build it with `npm install` "
                                  f"in the forge-rl package, or point FORGE_KERNELS_LIB at it)")
        try:
            self.lib = ctypes.CDLL(self.path)
        except OSError as e:
            raise LibraryNotFound(f"libforge_kernels: cannot load {self.path}: {e}") from e
        self.missing = []
        for name, (restype, argtypes) in SIGNATURES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                self.missing.append(name)
                continue
            fn.restype, fn.argtypes = restype, argtypes
        if "forge_abi_version" not in self.missing and self.lib.forge_abi_version() != ABI_VERSION:
            raise LibraryNotFound(f"libforge_kernels: {self.path} has ABI version {self.lib.forge_abi_version()}, "
                                  f"this binding was written for {ABI_VERSION}")

    def status_name(self, status):
        return self.lib.forge_status_name(status).decode()

    def last_error(self):
        return (self.lib.forge_last_error() or b"").decode(errors="replace")

    def check(self, status, what):
        """Raises ForgeError for a status other than FORGE_OK (call on the thread that made the call)."""
        if status != OK:
            raise ForgeError(what, status, self.status_name(status), self.last_error())

    def call(self, name, *args):
        """Calls forge function `name` and raises ForgeError unless it returns FORGE_OK."""
        if name in self.missing:
            raise ForgeError(name, ERR_UNSUPPORTED, STATUS_NAMES[ERR_UNSUPPORTED],
                             f"{self.path} does not export {name} (an older build: rebuild it)")
        self.check(getattr(self.lib, name)(*args), name)

    def device_count(self):
        """(number of usable GPUs, reason when 0) as forge_cuda_device_count reports them."""
        reason = c_char_p()
        n = self.lib.forge_cuda_device_count(ctypes.byref(reason))
        return n, (reason.value or b"").decode()


_loaded = None
_loaded_lock = threading.Lock()


def load_library(path=None):
    """The process's Library: loaded once from `path` (default: default_library_path()) on first use.

    A later call with a different path raises ValueError (two copies of the kernels in one process
    would keep two thread pools and two sets of CUDA state).
    """
    global _loaded
    with _loaded_lock:
        if _loaded is None:
            _loaded = Library(path)
        elif path is not None and os.path.realpath(path) != os.path.realpath(_loaded.path):
            raise ValueError(f"path: libforge_kernels is already loaded from {_loaded.path}, not {path}")
        return _loaded
