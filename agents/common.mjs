// Plumbing shared by the demo's agent programs (react-calculator, kv-lookup, context-truncating,
// sdk-agent): their local tools, the tool loop of the black-box ones, and how a program is run. Each
// program is a black box to forge-rl: it only knows an OpenAI-compatible base URL and an API key.
//
// Two ways to run a program:
//   one task:  OPENAI_BASE_URL=... OPENAI_API_KEY=... node agents/<name>.mjs --task '<task json>'
//              prints one JSON line {answer, toolCalls, turns} and exits (0, or 1 on an error).
//   serve:     node agents/<name>.mjs --serve
//              reads one job per stdin line {id, baseURL, apiKey, task} and writes one line per
//              finished job {id, answer, toolCalls, turns, error?}, jobs running concurrently, so
//              a task runner pays the program's start-up once instead of once per task; a line
//              {id, ping: true} is answered at once with {id, pong: true} (the runner's start-up check).
import { createInterface } from 'node:readline';

import OpenAI from 'openai';

/** The calculator: "a+b" / "a-b" on integers; anything else is "error". */
export function calcTool(expression) {
  if (typeof expression !== 'string') return 'error';
  const m = /^\s*(-?\d{1,6})\s*([+-])\s*(-?\d{1,6})\s*$/.exec(expression);
  if (!m) return 'error';
  const a = Number(m[1]), b = Number(m[3]);
  return String(m[2] === '+' ? a + b : a - b);
}

/** The key-value tool over the task's store: the value, or "none". */
export function kvTool(store, key) {
  if (typeof key !== 'string' || store === null || typeof store !== 'object') return 'error';
  return Object.prototype.hasOwnProperty.call(store, key) ? String(store[key]) : 'none';
}

/** A tool call's arguments as an object ({} when they are not a JSON object). */
export function toolArguments(call) {
  try {
    const value = JSON.parse(call.function.arguments);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}

/** The assistant message to send back: the reply as the API gave it (content, tool calls). */
export function assistantMessage(message) {
  const out = { role: 'assistant', content: message.content ?? null };
  if (message.tool_calls?.length) out.tool_calls = message.tool_calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments } }));
  return out;
}

/** The model name the agents ask for (any name reaches the demo's engine). */
export const MODEL = process.env.OPENAI_MODEL || 'forge-nano';

const MAX_TOKENS = 32;

/**
 * The tool loop of the black-box agents: the official `openai` client, one tool `name` taking one
 * string argument `argument`, run by `run(task, value)`. A reply with tool calls gets the results
 * sent back; one with text is the final answer; one with neither (e.g. only a malformed tool call) is
 * asked again, up to `maxTurns` calls. `history`: 'all' sends the whole history on every call (each
 * call continues the previous one); 'latest' keeps only the task and the last exchange (later calls
 * fork). Returns the `solve` that runProgram takes.
 */
export function toolLoop({ name, argument, run, maxTurns, history = 'all' }) {
  const tools = [{ type: 'function', function: { name, parameters: { type: 'object', properties: { [argument]: { type: 'string' } } } } }];
  return async function solve({ baseURL, apiKey }, task) {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
    const question = { role: 'user', content: task.prompt };
    let kept = []; // what follows the question: every exchange, or the latest
    let toolCalls = 0, turns = 0;
    while (turns < maxTurns) {
      const messages = [question, ...kept];
      const reply = await client.chat.completions.create({ model: MODEL, messages, tools, max_tokens: MAX_TOKENS });
      turns++;
      const message = reply.choices[0].message;
      if (message.tool_calls?.length) {
        const exchange = [assistantMessage(message)];
        for (const call of message.tool_calls) {
          const result = call.function.name === name ? run(task, toolArguments(call)[argument]) : 'error';
          exchange.push({ role: 'tool', tool_call_id: call.id, content: result });
          toolCalls++;
        }
        kept = history === 'latest' ? exchange : [...kept, ...exchange];
        continue;
      }
      const text = (message.content ?? '').trim();
      if (text !== '') return { answer: text, toolCalls, turns };
    }
    return { answer: null, toolCalls, turns };
  };
}

function argValue(flag) {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * Runs `solve({ baseURL, apiKey }, task)` the way the command line asks (see the top of this file).
 * `solve` resolves with { answer, toolCalls, turns }.
 */
export async function runProgram(solve) {
  if (process.argv.includes('--serve')) return serve(solve);
  const raw = argValue('--task') ?? process.env.FORGE_TASK;
  const baseURL = process.env.OPENAI_BASE_URL, apiKey = process.env.OPENAI_API_KEY;
  if (!raw || !baseURL || !apiKey) {
    process.stderr.write('usage: OPENAI_BASE_URL=<url> OPENAI_API_KEY=<key> node <agent> --task <json>   |   node <agent> --serve\n');
    process.exitCode = 2;
    return;
  }
  try {
    const result = await solve({ baseURL, apiKey }, JSON.parse(raw));
    process.stdout.write(JSON.stringify(result) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ answer: null, toolCalls: 0, turns: 0, error: String(e?.message ?? e) }) + '\n');
    process.exitCode = 1;
  }
}

function serve(solve) {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  let running = 0, ended = false;
  const done = () => ended && running === 0 && process.stdout.write('', () => process.exit(0));
  lines.on('line', (line) => {
    if (line.trim() === '') return;
    let job;
    try {
      job = JSON.parse(line);
    } catch {
      process.stdout.write(JSON.stringify({ id: null, answer: null, toolCalls: 0, turns: 0, error: 'the job line is not JSON' }) + '\n');
      return;
    }
    if (job.ping) {
      // The runner's start-up check: the program is up and reading.
      process.stdout.write(JSON.stringify({ id: job.id, pong: true }) + '\n');
      return;
    }
    running++;
    solve({ baseURL: job.baseURL, apiKey: job.apiKey }, job.task)
      .then((r) => ({ id: job.id, ...r }), (e) => ({ id: job.id, answer: null, toolCalls: 0, turns: 0, error: String(e?.message ?? e) }))
      .then((out) => {
        process.stdout.write(JSON.stringify(out) + '\n');
        running--;
        done();
      });
  });
  lines.on('close', () => {
    ended = true;
    done();
  });
}
