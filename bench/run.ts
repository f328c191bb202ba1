// `npm run bench` runs every CPU benchmark and prints its tables; `-- --record` also adds them, with
// the date, machine and commit, to the top of bench/RESULTS.md; `-- --quick` uses small sizes;
// `-- --only <name>` runs the benchmarks whose file name contains <name>.
import { execSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Bench, BenchSection } from './harness.js';
import { nativeInfo } from '../lib/native.js';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const record = args.includes('--record');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;

const benches: Record<string, () => Promise<{ bench: Bench }>> = {
  'prefix-tree': () => import('./prefix-tree.bench.js'),
  'tree-attention': () => import('./tree-attention.bench.js'),
  cispo: () => import('./cispo.bench.js'),
  optimizer: () => import('./optimizer.bench.js'),
  model: () => import('./model.bench.js'),
  engine: () => import('./engine.bench.js'),
  scheduler: () => import('./scheduler.bench.js'),
  pool: () => import('./pool.bench.js'),
  batch: () => import('./batch.bench.js'),
  gateway: () => import('./gateway.bench.js'),
};

function table(section: BenchSection): string {
  const lines = [`### ${section.title}`, '', section.description, ''];
  lines.push(`| ${section.columns.join(' | ')} |`, `|${section.columns.map(() => '---').join('|')}|`);
  for (const row of section.rows) lines.push(`| ${row.join(' | ')} |`);
  if (section.notes?.length) lines.push('', ...section.notes);
  return lines.join('\n');
}

function machine(): string {
  const info = nativeInfo();
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: here }).toString().trim();
  } catch {}
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${new Date().toISOString().slice(0, 10)} · ${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB · Node ${process.version} · kernel threads ${info.numThreads} · commit ${commit}`;
}

const out: string[] = [];
for (const [name, load] of Object.entries(benches)) {
  if (only && !name.includes(only)) continue;
  console.log(`\n== ${name}`);
  const { bench } = await load();
  const sections = await bench({ quick, log: (line) => console.log(`  ${line}`) });
  for (const s of sections) {
    const text = table(s);
    console.log(`\n${text}\n`);
    out.push(text);
  }
}

if (record) {
  const path = join(here, 'RESULTS.md');
  const previous = readFileSync(path, 'utf8');
  const marker = '<!-- results -->';
  const entry = `## ${machine()}${quick ? ' · quick sizes' : ''}\n\n${out.join('\n\n')}\n`;
  const at = previous.indexOf(marker);
  const next = at < 0 ? `${previous}\n${marker}\n\n${entry}` : `${previous.slice(0, at + marker.length)}\n\n${entry}${previous.slice(at + marker.length)}`;
  writeFileSync(path, next);
  console.log(`recorded in ${path}`);
}
