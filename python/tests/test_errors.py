"""Bad input is reported before any pointer reaches the library, as TypeError (type, dtype) or ValueError
(device, shape, layout, value) naming the argument; the library's own errors come back as ForgeError
with forge_last_error()'s message and the status name; CUDA asked for without a usable GPU says why."""
import unittest

import torch

import support
import forge_kernels
from forge_kernels import (ForgeError, PrefixTree, cispo_loss, gather_to_samples, merge_states, merge_states_csr,
                           scatter_from_samples, tree_attention)
from forge_kernels._abi import Library, LibraryNotFound

I32 = torch.int32


def chain_inputs(n=6, hq=2, hkv=1, d=8):
    _, gen = support.rngs(50)
    parent, ends = support.chain(n)
    return (torch.randn(n, hq, d, generator=gen), torch.randn(n, hkv, d, generator=gen),
            torch.randn(n, hkv, d, generator=gen), ends, parent)


@unittest.skipIf(torch.cuda.is_available(), "this machine has a GPU: CUDA requests succeed here")
class CudaWithoutGpu(unittest.TestCase):
    def assert_no_cuda(self, fn):
        with self.assertRaises(ForgeError) as caught:
            fn()
        e = caught.exception
        # No GPU: FORGE_ERR_DEVICE with the reason (a build with CUDA on a machine without a driver or
        # device), or FORGE_ERR_UNSUPPORTED (a build without the toolkit).
        self.assertIn(e.code, ("FORGE_ERR_DEVICE", "FORGE_ERR_UNSUPPORTED"))
        self.assertRegex(str(e), r"device: cuda(:0)? requested, but ")
        self.assertEqual(forge_kernels.cuda_info()["devices"] == 0, True)

    def test_building_a_tree_on_cuda(self):
        self.assert_no_cuda(lambda: PrefixTree.build([dict(tokens=[1, 2, 3])], device="cuda"))

    def test_moving_a_tree_to_cuda(self):
        tree = PrefixTree.build([dict(tokens=[1, 2, 3])])
        self.assert_no_cuda(lambda: tree.to("cuda:0"))


class ArgumentErrors(unittest.TestCase):
    def test_attention_dtypes_shapes_devices_layouts(self):
        q, k, v, ends, parent = chain_inputs()
        cases = [
            (TypeError, r"^q: expected a torch.Tensor, got list", lambda: tree_attention([1.0], k, v, ends)),
            (TypeError, r"^q: expected dtype float32 on the CPU, got float64", lambda: tree_attention(q.double(), k, v, ends)),
            (TypeError, r"^v: expected dtype float32 on the CPU, got float16", lambda: tree_attention(q, k, v.half(), ends)),
            (TypeError, r"^subtree_end: expected dtype int32 on the CPU, got int64",
             lambda: tree_attention(q, k, v, ends.long())),
            (ValueError, r"^k: expected shape \[6, \?, 8\], got \[5, 1, 8\]", lambda: tree_attention(q, k[:5], v, ends)),
            (ValueError, r"^v: expected shape \[6, 1, 8\], got \[6, 2, 8\]",
             lambda: tree_attention(q, k, torch.zeros(6, 2, 8), ends)),
            (ValueError, r"^k: its 3 heads must divide the 2 heads of q",
             lambda: tree_attention(q, torch.zeros(6, 3, 8), torch.zeros(6, 3, 8), ends)),
            (ValueError, r"^subtree_end: expected shape \[6\], got \[7\]",
             lambda: tree_attention(q, k, v, torch.full((7,), 7, dtype=I32))),
            (ValueError, r"^parent: expected shape \[6\], got \[5\]", lambda: tree_attention(q, k, v, ends, parent=parent[:5])),
            (ValueError, r"^q: expected a contiguous row-major tensor \(call .contiguous\(\)\)",
             lambda: tree_attention(q.transpose(0, 1).contiguous().transpose(0, 1), k, v, ends)),
            (ValueError, r"^q: expected a CPU or CUDA tensor, got one on meta",
             lambda: tree_attention(torch.empty(6, 2, 8, device="meta"), k, v, ends)),
            (ValueError, r"^scale: expected a finite number > 0, got -1", lambda: tree_attention(q, k, v, ends, scale=-1)),
        ]
        for error, pattern, call in cases:
            with self.subTest(pattern):
                with self.assertRaisesRegex(error, pattern):
                    call()

    def test_cispo_arguments(self):
        z = torch.randn(4, 9)
        node, target = torch.tensor([0, 3], dtype=I32), torch.tensor([8, 1], dtype=I32)
        old, adv = torch.zeros(2), torch.ones(2)
        cases = [
            (TypeError, r"^logits: expected dtype float32 on the CPU, got bfloat16",
             lambda: cispo_loss(z.bfloat16(), node, target, old, adv)),
            (TypeError, r"^node: expected dtype int32 on the CPU, got int64", lambda: cispo_loss(z, node.long(), target, old, adv)),
            (ValueError, r"^target: expected shape \[2\], got \[3\]",
             lambda: cispo_loss(z, node, torch.zeros(3, dtype=I32), old, adv)),
            (ValueError, r"^advantage: expected shape \[2\], got \[2, 1\]", lambda: cispo_loss(z, node, target, old, adv[:, None])),
            (ValueError, r"^node\[1\]: 4 is out of range \[0, 4\)",
             lambda: cispo_loss(z, torch.tensor([0, 4], dtype=I32), target, old, adv)),
            (ValueError, r"^target\[0\]: 9 is out of range \[0, 9\)",
             lambda: cispo_loss(z, node, torch.tensor([9, 1], dtype=I32), old, adv)),
            (ValueError, r"^mode: expected 'cispo', 'ppo-clip' or 'cross-entropy', got 'grpo'",
             lambda: cispo_loss(z, node, target, old, adv, mode="grpo")),
            (ValueError, r"^eps_high: expected a number >= 0", lambda: cispo_loss(z, node, target, old, adv, eps_high=-0.1)),
            (ValueError, r"^normalizer: expected a finite number > 0, got 0", lambda: cispo_loss(z, node, target, old, adv, normalizer=0)),
        ]
        for error, pattern, call in cases:
            with self.subTest(pattern):
                with self.assertRaisesRegex(error, pattern):
                    call()

    def test_layout_and_merge_arguments(self):
        node_of = torch.tensor([0, 1, 1], dtype=I32)
        with self.assertRaisesRegex(TypeError, r"^node_of: expected dtype int32 on the CPU, got int64"):
            gather_to_samples(torch.zeros(2, 3), node_of.long())
        with self.assertRaisesRegex(ValueError, r"^node_of: expected shape \[4\], got \[3\]"):
            scatter_from_samples(torch.zeros(4, 3), node_of, 2)
        with self.assertRaisesRegex(ValueError, r"^lse_b: expected shape \[3, 2\], got \[3, 1\]"):
            merge_states(torch.zeros(3, 2, 4), torch.zeros(3, 2), torch.zeros(3, 2, 4), torch.zeros(3, 1))
        with self.assertRaisesRegex(TypeError, r"^offsets: expected dtype int64 on the CPU, got int32"):
            merge_states_csr(torch.zeros(3, 2, 4), torch.zeros(3, 2), torch.tensor([0, 3], dtype=I32))

    def test_sample_errors_name_the_sample_and_position(self):
        cases = [
            (ValueError, r"^samples: expected at least one sample", []),
            (ValueError, r"^samples\[1\]\.tokens\[2\]: token id 30 out of range \[0, 30\)",
             [dict(tokens=[1]), dict(tokens=[1, 2, 30])]),
            (TypeError, r"^samples\[0\]\.tokens: expected integers, got dtype float", [dict(tokens=[1.5, 2.0])]),
            (ValueError, r"^samples\[0\]\.trainable: expected 3 entries \(one per token\), got 2",
             [dict(tokens=[1, 2, 3], trainable=[0, 1])]),
            (ValueError, r"^samples\[0\]\.trainable\[0\]: must be 0", [dict(tokens=[1, 2], trainable=[1, 1])]),
            (ValueError, r"^samples\[0\]\.trainable\[1\]: expected 0 or 1, got 2", [dict(tokens=[1, 2], trainable=[0, 2])]),
            (ValueError, r"^samples\[0\]\.old_logprobs\[1\]: expected a finite number where trainable, got nan",
             [dict(tokens=[1, 2], trainable=[0, 1], old_logprobs=[0.0, float("nan")])]),
            (TypeError, r"^samples\[0\]: unknown field 'logprobs'", [dict(tokens=[1, 2], logprobs=[0, 0])]),
        ]
        for error, pattern, samples in cases:
            with self.subTest(pattern):
                with self.assertRaisesRegex(error, pattern):
                    PrefixTree.build(samples, vocab_size=30)


class LibraryErrors(unittest.TestCase):
    def test_a_forge_error_carries_the_status_and_last_error(self):
        q, k, v, _, _ = chain_inputs(n=5)
        bad_ends = torch.tensor([5, 5, 9, 5, 5], dtype=I32)  # node 2's subtree cannot end past N
        with self.assertRaises(ForgeError) as caught:
            tree_attention(q, k, v, bad_ends, parent=torch.tensor([-1, 0, 1, 2, 3], dtype=I32))
        e = caught.exception
        self.assertEqual((e.code, e.status, e.function), ("FORGE_ERR_INVALID_ARGUMENT", 1, "forge_tree_attention_forward"))
        self.assertRegex(str(e), r"^forge_tree_attention_forward: FORGE_ERR_INVALID_ARGUMENT: subtree_end\[2\]")
        z = torch.randn(3, 7)
        z[1, 4] = float("nan")
        with self.assertRaisesRegex(ForgeError, r"FORGE_ERR_NON_FINITE: logits\[row 1, column 4\]") as caught:
            cispo_loss(z, torch.tensor([0, 1], dtype=I32), torch.tensor([0, 1], dtype=I32), torch.zeros(2), torch.ones(2))
        self.assertEqual(caught.exception.code, "FORGE_ERR_NON_FINITE")

    def test_a_missing_library_says_where_it_looked(self):
        with self.assertRaisesRegex(LibraryNotFound, r"/nonexistent/libforge_kernels.so does not exist .*FORGE_KERNELS_LIB"):
            Library("/nonexistent/libforge_kernels.so")
        forge_kernels.load_library()
        with self.assertRaisesRegex(ValueError, r"^path: libforge_kernels is already loaded from "):
            forge_kernels.load_library("/elsewhere/libforge_kernels.so")


if __name__ == "__main__":
    unittest.main()
