"""Runs emulator_device_paths.py (the binding's device launches on the CUDA emulator build) in a child
process with FORGE_KERNELS_LIB set to build-simt/Release/libforge_kernels.so, which `npm test` builds
(pretest) where the CUDA toolkit's headers are found; skipped when that library is absent."""
import os
import subprocess
import sys
import unittest

import support

EMULATOR_LIB = os.path.join(support.REPO, "build-simt", "Release", "libforge_kernels.so")


@unittest.skipUnless(os.path.exists(EMULATOR_LIB), f"no CUDA emulator build at {EMULATOR_LIB} (npm test builds it)")
class CudaEmulator(unittest.TestCase):
    def test_device_launches_on_the_emulator(self):
        env = dict(os.environ, FORGE_KERNELS_LIB=EMULATOR_LIB, FORGE_TEST_SEED=str(support.SEED))
        run = subprocess.run([sys.executable, "-m", "unittest", "-v", "emulator_device_paths"], cwd=support.HERE,
                             env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, support.why(run.stderr[-4000:]))
        self.assertRegex(run.stderr, r"Ran 3 tests", run.stderr)
        self.assertNotIn("skipped", run.stderr, "the emulator library saw no device")


if __name__ == "__main__":
    unittest.main()
