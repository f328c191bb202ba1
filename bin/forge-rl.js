#!/usr/bin/env node
// The forge-rl command. Runs the compiled CLI (dist/cli/main.js, built by `npm run build:ts` / prepare);
// in a source checkout without it, or with FORGE_CLI_SOURCE=1, runs lib/cli/main.ts through tsx.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const compiled = `${root}dist/cli/main.js`;
const source = `${root}lib/cli/main.ts`;

let entry;
if (process.env.FORGE_CLI_SOURCE !== '1' && existsSync(compiled)) entry = compiled;
else if (existsSync(source)) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
  } catch {
    process.stderr.write('forge-rl: dist/ is not built and tsx is not installed: run `npm run build:ts`\n');
    process.exit(1);
  }
  entry = source;
} else {
  process.stderr.write('forge-rl: dist/cli/main.js is missing: the package was not built (`npm run build:ts`)\n');
  process.exit(1);
}

const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
