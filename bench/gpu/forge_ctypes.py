"""libforge_kernels through ctypes for the GPU bench: a thin layer over the forge_kernels package
(python/forge_kernels), whose _abi module is the one ctypes description of forge.h.

Device tensors cross as DLPack (`device_ptr`, forge_kernels._dlpack). Nothing here imports torch.
"""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from forge_kernels._abi import (DTYPE_BF16, DTYPE_F16, DTYPE_F32, OK as FORGE_OK, PG_CISPO,  # noqa: E402,F401
                                PG_CROSS_ENTROPY, PG_PPO_CLIP, AttentionShape, CispoOptions, CispoStats, ForgeError,
                                Library, SampleBatch, TreeArrays, TreeInfo)
from forge_kernels._dlpack import device_ptr  # noqa: E402,F401


def default_library_path():
    """The bench's own build (bench/gpu/run.sh builds it with CUDA on), or $FORGE_KERNELS_LIB."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("FORGE_KERNELS_LIB", os.path.join(here, "build", "forge", "libforge_kernels.so"))


class Forge(Library):
    """The library as the bench uses it: lib, check(status, what), device_count(), missing, build_tree."""

    def build_tree(self, np, samples, vocab_size):
        """Prefix tree of token samples (lists of int32 arrays): parent, subtree_end, position, node_of."""
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(s) for s in samples])
        tokens = np.ascontiguousarray(np.concatenate(samples).astype(np.int32))
        batch = SampleBatch(num_samples=len(samples), offsets=offsets.ctypes.data, tokens=tokens.ctypes.data,
                            vocab_size=vocab_size)
        handle = ctypes.c_void_p()
        self.call("forge_prefix_tree_build", ctypes.byref(batch), ctypes.byref(handle))
        try:
            info = TreeInfo()
            self.call("forge_prefix_tree_get_info", handle, ctypes.byref(info))
            out = {k: np.empty(info.num_nodes, dtype=np.int32) for k in ("parent", "subtree_end", "position")}
            out["node_of"] = np.empty(info.input_tokens, dtype=np.int32)
            self.call("forge_prefix_tree_export", handle, ctypes.byref(TreeArrays(**{k: v.ctypes.data for k, v in out.items()})))
        finally:
            self.lib.forge_prefix_tree_free(handle)
        out["input_tokens"] = int(info.input_tokens)
        return out
