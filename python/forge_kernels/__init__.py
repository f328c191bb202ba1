"""forge_kernels: forge-rl's kernels for PyTorch trainers, through libforge_kernels' C ABI (ctypes).

    from forge_kernels import PrefixTree, tree_attention, cispo_loss
    tree = PrefixTree.build(samples)                       # contract 1: shared prefixes merged
    o, lse = tree_attention(q, k, v, tree.subtree_end, parent=tree.parent)   # contract 2
    loss, stats = cispo_loss(logits, *tree.terms[:4])      # contract 3
    loss.backward()

CPU float32 tensors run the CPU kernels; CUDA tensors run the forge_cuda_* kernels on torch's current
stream. The library is build/Release/libforge_kernels.so of the forge-rl package (built by `npm
install`), or $FORGE_KERNELS_LIB. Importing this package imports neither torch nor the library: the
torch-facing names load on first use.
"""
from ._abi import ForgeError, Library, LibraryNotFound, default_library_path, load_library

__all__ = ["ForgeError", "Library", "LibraryNotFound", "default_library_path", "load_library", "PrefixTree",
           "Sample", "Terms", "Segments", "parent_from_subtree_end", "gather_to_samples", "scatter_from_samples",
           "merge_to_tree", "tree_attention", "cispo_loss", "CispoStats", "merge_states", "merge_states_csr",
           "set_num_threads", "get_num_threads", "cuda_info"]

_LAZY = {
    "PrefixTree": "prefix_tree", "Sample": "prefix_tree", "Terms": "prefix_tree", "Segments": "prefix_tree",
    "parent_from_subtree_end": "prefix_tree", "gather_to_samples": "sample_layout",
    "scatter_from_samples": "sample_layout", "merge_to_tree": "sample_layout", "tree_attention": "attention",
    "cispo_loss": "cispo", "CispoStats": "cispo", "merge_states": "merge", "merge_states_csr": "merge",
    "set_num_threads": "runtime", "get_num_threads": "runtime", "cuda_info": "runtime",
}


def __getattr__(name):  # PEP 562: torch is imported when a torch-facing name is first used
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
