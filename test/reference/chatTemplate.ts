// Reference rendering of the nano chat template, written from the layout documented at the top of
// lib/model/chatTemplate.ts: the conversation as a list of pieces (a special token by name, or text),
// then ids through the reference UTF-8 encoder. Only the happy path (valid input) is modelled.
import { utf8Encode } from './utf8.js';

export type Piece = { special: string } | { text: string };

/** Fixed ids of the specials, as documented in lib/model/tokenizer.ts. */
export const SPECIAL_IDS: Record<string, number> = {
  bos: 256, eos: 257, pad: 258, system: 259, user: 260, assistant: 261, tool: 262, end: 263,
  tool_call: 264, '/tool_call': 265, think: 266, '/think': 267,
};

/** JSON with every object's keys in sorted order and no whitespace. */
export function referenceCanonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    const items: string[] = [];
    for (const v of value) items.push(v === undefined ? 'null' : referenceCanonicalJson(v));
    return '[' + items.join(',') + ']';
  }
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).filter((k) => obj[k] !== undefined);
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + referenceCanonicalJson(obj[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

function text(content: unknown): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  return (content as Array<{ text: string }>).map((p) => p.text).join('\n');
}

type Any = any;

function toolLine(tool: Any): string {
  const fn = tool.function ?? tool;
  const out: Any = { name: fn.name };
  if (fn.description !== undefined) out.description = fn.description;
  const params = tool.function ? fn.parameters : fn.input_schema;
  if (params !== undefined) out.parameters = params;
  return referenceCanonicalJson(out);
}

export function assistantPieces(m: Any): Piece[] {
  const pieces: Piece[] = [];
  const reasoning = typeof m.reasoning_content === 'string' ? m.reasoning_content : m.reasoning;
  if (typeof reasoning === 'string') pieces.push({ special: 'think' }, { text: reasoning }, { special: '/think' });
  pieces.push({ text: text(m.content) });
  for (const call of m.tool_calls ?? []) {
    const args = typeof call.function.arguments === 'string' ? call.function.arguments : JSON.stringify(call.function.arguments);
    pieces.push({ special: 'tool_call' }, { text: call.function.name + '\n' + args }, { special: '/tool_call' });
  }
  pieces.push({ special: 'end' });
  return pieces;
}

export function referencePieces(messages: Any[], tools: Any[] = [], addGenerationPrompt = false): Piece[] {
  const pieces: Piece[] = [{ special: 'bos' }];
  const toolsText = tools.length > 0 ? '# Tools\n' + tools.map(toolLine).join('\n') : '';
  const isSystem = (m: Any) => m !== undefined && (m.role === 'system' || m.role === 'developer');
  if (toolsText !== '' && !isSystem(messages[0])) pieces.push({ special: 'system' }, { text: toolsText }, { special: 'end' });
  const names = new Map<string, string>();
  messages.forEach((m, i) => {
    if (isSystem(m)) {
      let body = text(m.content);
      if (i === 0 && toolsText !== '') body = body === '' ? toolsText : body + '\n\n' + toolsText;
      pieces.push({ special: 'system' }, { text: body }, { special: 'end' });
    } else if (m.role === 'user') {
      pieces.push({ special: 'user' }, { text: text(m.content) }, { special: 'end' });
    } else if (m.role === 'assistant') {
      pieces.push({ special: 'assistant' }, ...assistantPieces(m));
      for (const call of m.tool_calls ?? []) if (call.id !== undefined) names.set(call.id, call.function.name);
    } else if (m.role === 'tool') {
      pieces.push({ special: 'tool' }, { text: names.get(m.tool_call_id) + '\n' + text(m.content) }, { special: 'end' });
    }
  });
  if (addGenerationPrompt) pieces.push({ special: 'assistant' });
  return pieces;
}

export function piecesToIds(pieces: Piece[]): number[] {
  return pieces.flatMap((p) => ('special' in p ? [SPECIAL_IDS[p.special]] : utf8Encode(p.text)));
}

export function referenceRender(messages: Any[], tools: Any[] = [], addGenerationPrompt = false): number[] {
  return piecesToIds(referencePieces(messages, tools, addGenerationPrompt));
}
