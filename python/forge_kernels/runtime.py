"""Library-wide settings and facts: the kernel thread pool and the CUDA backend (no torch needed)."""
from . import _abi


def set_num_threads(n):
    """Threads of the CPU kernels' pool; n <= 0 restores the default ($FORGE_NUM_THREADS, else all cores)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    _abi.load_library().call("forge_set_num_threads", n)


def get_num_threads():
    return _abi.load_library().lib.forge_get_num_threads()


def cuda_info():
    """{'compiled': bool, 'devices': int, 'reason': str}: whether the library has CUDA kernels, how many
    GPUs it can use, and why none when 0."""
    lib = _abi.load_library()
    count, reason = lib.device_count()
    return {"compiled": bool(lib.lib.forge_cuda_compiled()), "devices": count, "reason": reason}
