// Builds the CPU-emulator flavour of the addon into build-simt/ (cuda/simt/): the CUDA kernels of
// cuda/ compiled to run on emulated GPU threads, so that `npm test` checks them on machines without a
// GPU. Runs before the tests (npm's pretest). It needs the CUDA toolkit's headers, not a GPU; without
// a toolkit it says so and the emulator's test project is left out. Incremental after the first build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function toolkitFound() {
  const nvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' });
  if (nvcc.status === 0) return true;
  const home = process.env.CUDA_PATH ?? process.env.CUDA_HOME ?? '/usr/local/cuda';
  return existsSync(join(home, 'include', 'cuda_runtime.h'));
}

if (process.env.FORGE_SIMT === 'off') {
  console.log('forge-rl: FORGE_SIMT=off: the CUDA emulator tests are left out');
} else if (!toolkitFound()) {
  console.log('forge-rl: no CUDA toolkit headers (nvcc): the CUDA emulator tests are left out');
} else {
  const cmakeJs = join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  const build = spawnSync(process.execPath, [cmakeJs, 'compile', '--out', 'build-simt', '--CDFORGE_SIMT=on'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (build.status !== 0) {
    process.stdout.write(build.stdout ?? '');
    console.error('forge-rl: building the CUDA emulator (build-simt/) failed');
    process.exit(build.status ?? 1);
  }
  console.log('forge-rl: CUDA emulator build ready (build-simt/)');
}
