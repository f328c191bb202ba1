"""The ctypes description of forge.h (forge_kernels._abi) against the header and the built library:
every function exists with forge.h's argument count, every struct has the C layout (offsets and sizes
printed by a C program compiled against forge.h), enum values and status names agree. Also: the
package imports without torch, DLPack pointers, and the GPU bench's shim over this module."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

import support
from forge_kernels import PrefixTree, _abi, _dlpack, load_library

HEADER = os.path.join(support.REPO, "native", "include", "forge", "forge.h")
STRUCTS = {"AttentionShape": "forge_attention_shape", "CispoOptions": "forge_cispo_options",
           "CispoStats": "forge_cispo_stats", "SampleBatch": "forge_sample_batch", "TreeInfo": "forge_prefix_tree_info",
           "TreeArrays": "forge_prefix_tree_arrays", "CudaDeviceProps": "forge_cuda_device_props"}
ENUMS = {"FORGE_OK": _abi.OK, "FORGE_ERR_OUT_OF_RANGE": _abi.ERR_OUT_OF_RANGE, "FORGE_ERR_DEVICE": _abi.ERR_DEVICE,
         "FORGE_ERR_INTERNAL": _abi.ERR_INTERNAL, "FORGE_DTYPE_F32": _abi.DTYPE_F32, "FORGE_DTYPE_F16": _abi.DTYPE_F16,
         "FORGE_DTYPE_BF16": _abi.DTYPE_BF16, "FORGE_PG_CISPO": _abi.PG_CISPO, "FORGE_PG_PPO_CLIP": _abi.PG_PPO_CLIP,
         "FORGE_PG_CROSS_ENTROPY": _abi.PG_CROSS_ENTROPY, "FORGE_ABI_VERSION": _abi.ABI_VERSION}


class AbiDescription(unittest.TestCase):
    def test_every_function_exists_with_the_header_argument_count(self):
        lib = load_library()
        self.assertEqual(lib.missing, [], "functions described but not exported by the library")
        with open(HEADER) as f:
            text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
        declared = {m.group(1): m.group(2) for m in re.finditer(r"FORGE_API\s+[\w\s\*]+?\b(forge_\w+)\s*\(([^)]*)\)", text)}
        for name, (_, argtypes) in _abi.SIGNATURES.items():
            with self.subTest(name):
                self.assertIn(name, declared)
                args = declared[name].strip()
                count = 0 if args in ("", "void") else args.count(",") + 1
                self.assertEqual(len(argtypes), count, f"{name}: {len(argtypes)} argtypes, forge.h has {count} arguments")

    def test_status_names(self):
        lib = load_library()
        for status, name in enumerate(_abi.STATUS_NAMES):
            self.assertEqual(lib.status_name(status), name)

    @unittest.skipUnless(shutil.which("cc"), "no C compiler to print forge.h's layouts")
    def test_struct_layouts_and_enums_match_the_c_header(self):
        lines = ["#include <forge/forge.h>", "#include <stddef.h>", "#include <stdio.h>", "int main(void) {"]
        expect = []
        for py, c in STRUCTS.items():
            struct = getattr(_abi, py)
            lines.append(f'printf("%zu\\n", sizeof({c}));')
            expect.append((f"sizeof({c})", ctypes.sizeof(struct)))
            for field, _ in struct._fields_:
                lines.append(f'printf("%zu\\n", offsetof({c}, {field}));')
                expect.append((f"offsetof({c}, {field})", getattr(struct, field).offset))
        for name, value in ENUMS.items():
            lines.append(f'printf("%d\\n", (int){name});')
            expect.append((name, value))
        lines.append("return 0; }")
        with tempfile.TemporaryDirectory() as tmp:
            src, exe = os.path.join(tmp, "layout.c"), os.path.join(tmp, "layout")
            with open(src, "w") as f:
                f.write("\n".join(lines))
            subprocess.run(["cc", "-std=c99", "-I", os.path.dirname(os.path.dirname(HEADER)), src, "-o", exe], check=True)
            got = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split()
        for (what, value), printed in zip(expect, got):
            self.assertEqual(int(printed), value, what)
        self.assertEqual(len(got), len(expect))


class Packaging(unittest.TestCase):
    def test_import_does_not_load_torch(self):
        code = "import sys, forge_kernels; assert 'torch' not in sys.modules; print(forge_kernels.default_library_path())"
        env = dict(os.environ, PYTHONPATH=os.path.join(support.REPO, "python"))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)

    def test_dlpack_view_of_cpu_tensors(self):
        t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        device_type, kind, address, contiguous = _dlpack.dlpack_view(t)
        self.assertEqual((device_type, kind, address, contiguous), (_dlpack.KDL_CPU, "float32", t.data_ptr(), True))
        view = t[1:].t()
        self.assertEqual(_dlpack.dlpack_view(view)[2:], (view.data_ptr(), False))
        self.assertEqual(_dlpack.dlpack_view(t.bfloat16())[1], "bfloat16")
        with self.assertRaisesRegex(ValueError, "expected a CUDA tensor"):
            _dlpack.device_ptr(t, None, "float32")

    def test_the_gpu_bench_shim_builds_the_same_tree(self):
        try:
            import numpy as np
        except ImportError:
            self.skipTest("numpy is not installed")
        sys.path.insert(0, os.path.join(support.REPO, "bench", "gpu"))
        try:
            import forge_ctypes
        finally:
            sys.path.pop(0)
        for name in ("DTYPE_BF16", "PG_CISPO", "AttentionShape", "CispoOptions", "CispoStats", "device_ptr", "Forge",
                     "default_library_path", "ForgeError"):
            self.assertTrue(hasattr(forge_ctypes, name), name)
        rnd, _ = support.rngs(60)
        samples = [[rnd.randrange(5) for _ in range(rnd.randrange(1, 9))] for _ in range(6)]
        got = forge_ctypes.Forge(load_library().path).build_tree(np, [np.array(s) for s in samples], 5)
        tree = PrefixTree.build([dict(tokens=s) for s in samples])
        for key in ("parent", "subtree_end", "position", "node_of"):
            self.assertEqual(got[key].tolist(), getattr(tree, key).tolist(), key)


if __name__ == "__main__":
    unittest.main()
