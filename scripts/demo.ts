// `npm run demo`: the embedded RL loop end to end on loopback (lib/demo/run.ts). Options:
//   --seed N            reproducible run (default 1)
//   --minutes M         wall-clock budget (default 10)
//   --scaffolds a,b     react-calculator, kv-lookup, context-truncating, sdk-agent (default all)
//   --model SIZE        tiny | small | default (default tiny)
//   --mode MODE         windowed | fifo | greedy scheduler (default windowed)
//   --upstream-url URL  an external OpenAI-compatible server (vLLM, SGLang): no in-process training,
//                       batches exported to <out>/batches.jsonl; --upstream-model NAME its model
//   --out DIR           report folder (default demo-out)
//   --group-size G, --groups-per-step B, --eval-tasks E, --concurrency C, --rl-steps S
import { runDemo } from '../lib/demo/run.js';
import { selectBackend } from '../lib/device.js';
import type { DemoOptions } from '../lib/demo/options.js';
import type { ModelSize } from '../lib/demo/models.js';
import type { ScaffoldName } from '../lib/demo/scaffolds.js';
import type { SchedulerMode } from '../lib/scheduler/types.js';

const HELP = `usage: npm run demo -- [--seed N] [--minutes M] [--scaffolds a,b,...] [--model tiny|small|default]
                       [--mode windowed|fifo|greedy] [--upstream-url URL [--upstream-model NAME]] [--out DIR]
                       [--group-size G] [--groups-per-step B] [--eval-tasks E] [--concurrency C] [--rl-steps S]`;

function parse(argv: string[]): Partial<DemoOptions> {
  const o: Partial<DemoOptions> = {};
  const int = (flag: string, v: string | undefined) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n)) throw new Error(`${flag}: expected an integer, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i], value = argv[i + 1];
    const take = () => {
      if (value === undefined || value.startsWith('--')) throw new Error(`${flag}: expected a value`);
      i++;
      return value;
    };
    switch (flag) {
      case '--seed': o.seed = int(flag, take()); break;
      case '--minutes': {
        const m = Number(take());
        if (!(m > 0)) throw new Error(`--minutes: expected a number > 0, got ${JSON.stringify(value)}`);
        o.minutes = m;
        break;
      }
      case '--scaffolds': o.scaffolds = take().split(',').map((s) => s.trim()).filter(Boolean) as ScaffoldName[]; break;
      case '--model': o.model = take() as ModelSize; break;
      case '--mode': o.mode = take() as SchedulerMode; break;
      case '--upstream-url': o.upstreamUrl = take(); break;
      case '--upstream-model': o.upstreamModel = take(); break;
      case '--out': o.out = take(); break;
      case '--group-size': o.groupSize = int(flag, take()); break;
      case '--groups-per-step': o.groupsPerStep = int(flag, take()); break;
      case '--eval-tasks': o.evalTasks = int(flag, take()); break;
      case '--concurrency': o.concurrency = int(flag, take()); break;
      case '--rl-steps': o.rlSteps = int(flag, take()); break;
      case '--help': case '-h': console.log(HELP); process.exit(0); break;
      default: throw new Error(`unknown option ${JSON.stringify(flag)}\n${HELP}`);
    }
  }
  return o;
}

let options: Partial<DemoOptions>;
try {
  options = parse(process.argv.slice(2));
} catch (e) {
  console.error((e as Error).message);
  process.exit(2);
}
selectBackend();  // without a usable GPU, one line says why the kernels run on the CPU (issue 7)
try {
  await runDemo(options);
} catch (e) {
  // A bad option (the checks name it) needs no stack.
  const bad = (e instanceof TypeError || e instanceof RangeError) && 'code' in (e as object);
  console.error(bad ? `demo: ${(e as Error).message}` : `demo failed: ${(e as Error)?.stack ?? e}`);
  process.exit(bad ? 2 : 1);
}
