"""The device half of the binding — the forge_cuda_* signatures in _abi and the launch functions the
torch-facing code calls for CUDA tensors — run on the CPU emulator build of the CUDA kernels
(build-simt/, cuda/simt: the kernels of cuda/ executed on emulated GPU threads), with device memory from
forge_cuda_malloc, against float64 references. Torch has no CUDA tensors without a GPU, so this is the
check of argument order and types that a machine without one can make.

Run by test_cuda_emulator.py in a child process with FORGE_KERNELS_LIB pointing at the emulator library
(one copy of the kernels per process); skipped when the loaded library sees no device.
"""
import ctypes
import math
import unittest

import torch

import support
from forge_kernels import _abi, load_library
from forge_kernels.attention import launch_backward, launch_forward
from forge_kernels.cispo import launch as launch_cispo
from forge_kernels.merge import launch_merge, launch_merge_csr
from forge_kernels.sample_layout import launch_gather, launch_merge_to_tree, launch_scatter
from test_cispo import problem, reference as cispo_reference

CODES = {torch.float32: _abi.DTYPE_F32, torch.bfloat16: _abi.DTYPE_BF16}


class Device:
    """Device buffers of one test, freed at the end."""

    def __init__(self, lib):
        self.lib, self.buffers = lib, []

    def upload(self, t):
        t = t.contiguous()
        ptr = self.empty(t.numel() * t.element_size())
        self.lib.call("forge_cuda_memcpy_h2d", ptr, t.data_ptr(), t.numel() * t.element_size(), None)
        return ptr

    def empty(self, nbytes):
        ptr = ctypes.c_void_p()
        self.lib.call("forge_cuda_malloc", max(nbytes, 16), ctypes.byref(ptr))
        self.buffers.append(ptr.value)
        return ptr.value

    def download(self, ptr, shape, dtype):
        out = torch.empty(shape, dtype=dtype)
        self.lib.call("forge_cuda_synchronize", None)
        self.lib.call("forge_cuda_memcpy_d2h", out.data_ptr(), ptr, out.numel() * out.element_size(), None)
        return out

    def free(self):
        for ptr in self.buffers:
            self.lib.call("forge_cuda_free", ptr)


class EmulatedDevicePaths(unittest.TestCase):
    def setUp(self):
        self.lib = load_library()
        if self.lib.device_count()[0] == 0:
            self.skipTest(f"{self.lib.path} sees no device")
        self.dev = Device(self.lib)

    def tearDown(self):
        if hasattr(self, "dev"):
            self.dev.free()

    def test_tree_attention_forward_and_backward(self):
        rnd, gen = support.rngs(70)
        dev, N, Hq, Hkv, D = self.dev, 70, 4, 2, 64
        _, ends = support.random_tree(rnd, N, branch=0.2)
        for dtype, rel in ((torch.float32, 1e-4), (torch.bfloat16, 3e-2)):  # bf16: outputs rounded to 8 bits
            q, k, v = (torch.randn(N, h, D, generator=gen).to(dtype) for h in (Hq, Hkv, Hkv))
            d_o = torch.randn(N, Hq, D, generator=gen).to(dtype)
            qd, kd, vd = (t.double().requires_grad_() for t in (q, k, v))
            o_ref, lse_ref = support.reference_attention(qd, kd, vd, ends)
            refs = torch.autograd.grad(o_ref, (qd, kd, vd), d_o.double())
            shape = _abi.AttentionShape(N, Hq, Hkv, D, 0.0)
            ptrs = [dev.upload(t) for t in (q, k, v)]
            se = dev.upload(ends)
            o, lse = dev.empty(N * Hq * D * q.element_size()), dev.empty(N * Hq * 4)
            launch_forward(self.lib, shape, CODES[dtype], *ptrs, None, se, o, lse, stream=0)
            got_o = dev.download(o, (N, Hq, D), dtype)
            support.assert_close(self, got_o, o_ref, rel, f"{dtype} o")
            support.assert_close(self, dev.download(lse, (N, Hq), torch.float32), lse_ref, rel / 10, f"{dtype} lse")
            grads = [dev.empty(t.numel() * t.element_size()) for t in (q, k, v)]
            launch_backward(self.lib, shape, CODES[dtype], *ptrs, None, se, o, lse, dev.upload(d_o), *grads, stream=0)
            for what, ptr, t, ref in zip("qkv", grads, (q, k, v), refs):
                support.assert_close(self, dev.download(ptr, t.shape, dtype), ref, 3 * rel, f"{dtype} d{what}")

    def test_cispo_loss(self):
        _, gen = support.rngs(71)
        logits, node, target, old, adv = problem(gen)
        N, V = logits.shape
        J = node.numel()
        for dtype, rel in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
            z = logits.to(dtype)
            ref_loss, ref_dz, ref_logp, _ = cispo_reference(z.float(), node, target, old, adv, "cispo", 0.2, 0.28, J)
            dev = self.dev
            dz, logp = dev.empty(N * V * z.element_size()), dev.empty(J * 4)
            stats = _abi.CispoStats()
            launch_cispo(self.lib, CODES[dtype], N, V, dev.upload(z), J, dev.upload(node), dev.upload(target),
                         dev.upload(old), dev.upload(adv), _abi.CispoOptions(_abi.PG_CISPO, 0.2, 0.28, 0.0), dz, logp,
                         stats, stream=0)
            self.assertLessEqual(abs(stats.loss - float(ref_loss)), 1e-5 * abs(float(ref_loss)), f"{dtype} loss")
            self.assertEqual(stats.num_terms, J)
            support.assert_close(self, dev.download(dz, (N, V), dtype), ref_dz, rel, f"{dtype} dlogits")
            support.assert_close(self, dev.download(logp, (J,), torch.float32), ref_logp, 1e-5, f"{dtype} logp")

    def test_gather_scatter_and_merges(self):
        _, gen = support.rngs(72)
        dev, N, T, C = self.dev, 30, 50, 6
        node_of = torch.randint(0, N, (T,), generator=gen, dtype=torch.int32)
        values = torch.randn(N, C, generator=gen)
        out = dev.empty(T * C * 4)
        launch_gather(self.lib, _abi.DTYPE_F32, dev.upload(values), N, C, dev.upload(node_of), T, out, stream=0)
        support.assert_close(self, dev.download(out, (T, C), torch.float32), values.double()[node_of.long()], 0, "gather")
        per_sample = torch.randn(T, C, generator=gen)
        out = dev.empty(N * C * 4)
        launch_scatter(self.lib, dev.upload(per_sample), T, C, dev.upload(node_of), N, out, stream=0)
        ref = torch.zeros(N, C, dtype=torch.float64).index_add_(0, node_of.long(), per_sample.double())
        support.assert_close(self, dev.download(out, (N, C), torch.float32), ref, 1e-6, "scatter")
        # merge: each node the row of its first position (copies differ here), zeros for nodes without one.
        first = {}
        for i, node in enumerate(node_of.tolist()):
            first.setdefault(node, i)
        for dtype, code in ((torch.float32, _abi.DTYPE_F32), (torch.bfloat16, _abi.DTYPE_BF16),
                            (torch.float16, _abi.DTYPE_F16)):
            x = per_sample.to(dtype)
            ref = torch.zeros(N, C, dtype=dtype)
            for node, i in first.items():
                ref[node] = x[i]
            out = dev.empty(N * C * x.element_size())
            launch_merge_to_tree(self.lib, code, dev.upload(x), T, C, dev.upload(node_of), N, out, stream=0)
            self.assertTrue(torch.equal(dev.download(out, (N, C), dtype), ref), support.why(f"merge_to_tree {dtype}"))

        R, H, D = 9, 2, 8
        oa, ob = torch.randn(R, H, D, generator=gen), torch.randn(R, H, D, generator=gen)
        la, lb = torch.randn(R, H, generator=gen), torch.randn(R, H, generator=gen)
        o, lse = dev.empty(R * H * D * 4), dev.empty(R * H * 4)
        launch_merge(self.lib, R, H, D, dev.upload(oa), dev.upload(la), dev.upload(ob), dev.upload(lb), o, lse, stream=0)
        lse_ref = torch.logaddexp(la.double(), lb.double())
        o_ref = (torch.exp(la.double() - lse_ref)[..., None] * oa.double() +
                 torch.exp(lb.double() - lse_ref)[..., None] * ob.double())
        support.assert_close(self, dev.download(o, (R, H, D), torch.float32), o_ref, 1e-5, "merge o")
        support.assert_close(self, dev.download(lse, (R, H), torch.float32), lse_ref, 1e-6, "merge lse")
        offsets = torch.tensor([0, 2, 2, 5, R], dtype=torch.int64)
        o_in, l_in = oa, la
        o, lse = dev.empty(4 * H * D * 4), dev.empty(4 * H * 4)
        launch_merge_csr(self.lib, 4, H, D, dev.upload(offsets), R, dev.upload(o_in), dev.upload(l_in), o, lse, stream=0)
        got_o, got_lse = dev.download(o, (4, H, D), torch.float32), dev.download(lse, (4, H), torch.float32)
        for r in range(4):
            a, b = int(offsets[r]), int(offsets[r + 1])
            if a == b:
                self.assertTrue(all(math.isinf(x) and x < 0 for x in got_lse[r].tolist()), "empty range")
            else:
                lse_r = torch.logsumexp(l_in[a:b].double(), 0)
                o_r = (torch.exp(l_in[a:b].double() - lse_r)[..., None] * o_in[a:b].double()).sum(0)
                support.assert_close(self, got_lse[r], lse_r, 1e-6, f"csr row {r}: lse")
                support.assert_close(self, got_o[r], o_r, 1e-5, f"csr row {r}: o")


if __name__ == "__main__":
    unittest.main()
