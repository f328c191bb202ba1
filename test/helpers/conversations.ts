// Seeded random inputs for the tokenizer and chat-template tests: Unicode text with the awkward cases
// (astral characters, combining marks, NUL, BOM, special-token text typed as text, JSON-hostile
// characters), nested JSON values, tool schemas, and multi-turn tool-calling conversations.
import type { AssistantMessage, ChatMessage, ToolDefinition } from '../../lib/model/chatTemplate.js';

import type { Rng } from './random.js';

export { makeRng, runSeed, type Rng } from './random.js';

export const int = (rand: Rng, lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
export const pick = <T>(rand: Rng, items: readonly T[]): T => items[Math.floor(rand() * items.length)];
export const chance = (rand: Rng, p: number): boolean => rand() < p;

const SPECIAL_TEXTS = ['<|end|>', '<|user|>', '<|assistant|>', '<|tool_call|>', '<|/tool_call|>', '<|think|>', '<|bos|>', '<|'];

/** One random "character" (a string of one or a few code units) of a given flavour. */
function piece(rand: Rng, loneSurrogates: boolean): string {
  const r = rand();
  if (r < 0.3) return String.fromCharCode(int(rand, 0x20, 0x7e)); // printable ASCII
  if (r < 0.36) return pick(rand, ['"', '\\', '{', '}', '[', ']', ':', ',', '\n', '\t', '\r', '/']);
  if (r < 0.39) return '\u0000';
  if (r < 0.41) return String.fromCharCode(int(rand, 1, 0x1f)); // control characters
  if (r < 0.47) return String.fromCharCode(int(rand, 0x80, 0x7ff)); // two-byte
  if (r < 0.55) return String.fromCharCode(int(rand, 0x4e00, 0x9fff)); // CJK, three bytes
  if (r < 0.6) return 'e' + String.fromCharCode(int(rand, 0x300, 0x36f)); // combining mark
  if (r < 0.66) return String.fromCodePoint(int(rand, 0x1f300, 0x1faff)); // emoji, four bytes
  if (r < 0.69) return String.fromCodePoint(pick(rand, [0x10000, 0x10ffff, 0xffff, 0xfffd, 0xfeff, 0xe000, 0xd7ff]));
  if (r < 0.71) return '\u{1F469}\u200D\u{1F4BB}'; // ZWJ sequence
  if (r < 0.76) return pick(rand, SPECIAL_TEXTS);
  if (loneSurrogates && r < 0.8) return String.fromCharCode(int(rand, 0xd800, 0xdfff));
  return String.fromCharCode(int(rand, 0x61, 0x7a));
}

/** A random string of up to `maxPieces` pieces; lone surrogates only when asked. */
export function randomText(rand: Rng, maxPieces: number, loneSurrogates = false): string {
  const n = int(rand, 0, maxPieces);
  let s = '';
  for (let i = 0; i < n; i++) s += piece(rand, loneSurrogates);
  if (loneSurrogates && chance(rand, 0.2)) s += String.fromCharCode(int(rand, 0xd800, 0xdbff)); // a dangling high half
  return s;
}

export function randomIdent(rand: Rng): string {
  const head = 'abcdefghijklmnopqrstuvwxyz_';
  const tail = head + 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-';
  let s = pick(rand, [...head]);
  for (let i = int(rand, 0, 14); i > 0; i--) s += pick(rand, [...tail]);
  return s;
}

/** A random JSON value: nested arrays and objects, numbers of every shape, Unicode strings and keys. */
export function randomJson(rand: Rng, depth = 3): unknown {
  const r = rand();
  if (depth <= 0 || r < 0.35) {
    return pick(rand, [
      () => null,
      () => chance(rand, 0.5),
      () => int(rand, -1e6, 1e6),
      () => (rand() - 0.5) * 10 ** int(rand, -8, 12),
      () => randomText(rand, 12),
      () => pick(rand, [0, -1, 1e21, 1.5e-7, 2 ** 53]),
    ])();
  }
  if (r < 0.6) return Array.from({ length: int(rand, 0, 4) }, () => randomJson(rand, depth - 1));
  return randomObject(rand, depth - 1);
}

export function randomObject(rand: Rng, depth = 2): Record<string, unknown> {
  const obj: Record<string, unknown> = {};
  for (let i = int(rand, 0, 5); i > 0; i--) {
    const key = pick(rand, [() => randomIdent(rand), () => randomText(rand, 5), () => String(int(rand, 0, 20))])();
    obj[key] = randomJson(rand, depth);
  }
  return obj;
}

/** The JSON text of an arguments object, written the ways models and clients write it. */
export function argumentsText(rand: Rng, args: Record<string, unknown>): string {
  const r = rand();
  if (r < 0.5) return JSON.stringify(args);
  if (r < 0.75) return JSON.stringify(args, null, 2);
  return ' ' + JSON.stringify(args, null, '\t') + '\n';
}

function randomSchema(rand: Rng, depth: number): Record<string, unknown> {
  const type = depth <= 0 ? pick(rand, ['string', 'number', 'boolean']) : pick(rand, ['string', 'number', 'boolean', 'array', 'object']);
  const schema: Record<string, unknown> = { type };
  if (chance(rand, 0.5)) schema.description = randomText(rand, 10);
  if (type === 'string' && chance(rand, 0.3)) schema.enum = [randomText(rand, 4), randomText(rand, 4)];
  if (type === 'array') schema.items = randomSchema(rand, depth - 1);
  if (type === 'object') {
    const props: Record<string, unknown> = {};
    for (let i = int(rand, 0, 3); i > 0; i--) props[randomIdent(rand)] = randomSchema(rand, depth - 1);
    schema.properties = props;
  }
  return schema;
}

/** Random function tools, both OpenAI's and Anthropic's shapes, unique names. */
export function randomTools(rand: Rng, max = 4): ToolDefinition[] {
  const names = new Set<string>();
  for (let i = int(rand, 0, max); i > 0; i--) names.add(randomIdent(rand));
  return [...names].map((name) => {
    const parameters = { ...randomSchema(rand, 2), type: 'object', required: [] as string[] };
    const description = chance(rand, 0.8) ? randomText(rand, 20) : undefined;
    if (chance(rand, 0.25)) return { name, description, input_schema: parameters };
    return { type: 'function' as const, function: { name, description, parameters, ...(chance(rand, 0.3) ? { strict: true } : {}) } };
  });
}

export function toolName(tool: ToolDefinition): string {
  return 'function' in tool ? tool.function.name : tool.name;
}

/** Content in any accepted form: a string, text parts, null or absent. */
function randomContent(rand: Rng, maxPieces: number): string | { type: 'text'; text: string }[] | null | undefined {
  const r = rand();
  if (r < 0.1) return null;
  if (r < 0.2) return Array.from({ length: int(rand, 1, 3) }, () => ({ type: 'text' as const, text: randomText(rand, maxPieces) }));
  return randomText(rand, maxPieces);
}

/** A random assistant message: optional reasoning (either field name), content, calls to `tools`. */
export function randomAssistant(rand: Rng, tools: ToolDefinition[], callId: () => string): AssistantMessage {
  const m: AssistantMessage = { role: 'assistant' };
  const r = rand();
  if (r < 0.4) m.reasoning_content = randomText(rand, 30);
  else if (r < 0.5) m.reasoning = randomText(rand, 10);
  else if (r < 0.55) m.reasoning_content = '';
  const content = randomContent(rand, 30);
  if (content !== undefined) m.content = content;
  if (tools.length > 0 && chance(rand, 0.6)) {
    m.tool_calls = Array.from({ length: int(rand, 1, 3) }, () => ({
      id: callId(),
      type: 'function' as const,
      function: { name: toolName(pick(rand, tools)), arguments: argumentsText(rand, randomObject(rand, 3)) },
    }));
  }
  return m;
}

/** A random multi-turn conversation with tool calls and their results. */
export function randomConversation(rand: Rng, tools: ToolDefinition[], maxTurns = 6): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (chance(rand, 0.7)) messages.push({ role: chance(rand, 0.8) ? 'system' : 'developer', content: randomContent(rand, 20) });
  let calls = 0;
  // Half the conversations reuse ids per turn (call_0, call_1, ... as some servers do).
  const perTurnIds = chance(rand, 0.5);
  for (let turn = int(rand, 1, maxTurns); turn > 0; turn--) {
    if (chance(rand, 0.1)) messages.push({ role: 'system', content: randomText(rand, 10) });
    messages.push({ role: 'user', content: randomContent(rand, 30) });
    for (let step = 0; step < 3; step++) {
      let k = 0;
      const m = randomAssistant(rand, tools, () => (perTurnIds ? `call_${k++}` : `call_${calls++}_${randomIdent(rand)}`));
      messages.push(m);
      if (!m.tool_calls) break;
      for (const call of m.tool_calls) messages.push({ role: 'tool', tool_call_id: call.id as string, content: randomContent(rand, 20) });
    }
  }
  return messages;
}

/** The text of a message's content, as the template documents it (text parts joined with "\n"). */
export function contentOf(content: unknown): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return (content as { text: string }[]).map((p) => p.text).join('\n');
}
