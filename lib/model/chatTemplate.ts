// The nano policy's chat template: OpenAI-style messages (and tool definitions) to token ids, and a
// sampled completion back to an assistant message with tool calls. The gateway records every call as
// a token-exact training sample, so the template keeps two promises (tested on random conversations):
//
//   render(h ++ [m]) == render(h, { addGenerationPrompt: true }) ++ assistantIds(m), and
//   parse(assistantIds(m)) gives back m's content, reasoning and tool calls;
//   render(h1) is a prefix of render(h1 ++ more) (h1 non-empty or no tools; earlier turns unchanged).
//
// Layout (S(x) is special token x, text is UTF-8 bytes; nothing else is inserted):
//   S(bos)
//   S(system) content ["\n\n" if content] "# Tools\n" tool JSON lines S(end)   first system turn; one
//                                                   holding only the tools is made up when tools are
//                                                   given and messages[0] is not a system message
//   S(user) content S(end)                          S(system) content S(end) for later system turns
//   S(assistant) [S(think) reasoning S(/think)] content (S(tool_call) name "\n" arguments S(/tool_call))* S(end)
//   S(tool) name "\n" content S(end)                name: of the call that tool_call_id answers
//   [S(assistant)]                                  addGenerationPrompt
//
// Reasoning is rendered in every assistant turn that has it, earlier turns included: dropping it
// would change the ids of turns already sent, break the prefix property and make every call a fork.
// Tool-call arguments are rendered as the exact text the model produced (never re-serialised), tool
// definitions as canonical JSON (keys sorted), so that different client JSON libraries render alike.
// Tool-call ids are not rendered (the gateway assigns them), so an agent renaming them does not fork.
import { typeError } from '../errors.js';
import { CompletionParser, type ParseEvent, type ParsedCompletion } from './chatParse.js';
import { encode, expectTokenIds, SpecialToken, vocabSize } from './tokenizer.js';

export type TextPart = { type: 'text'; text: string };
/** Message content: a string, text parts (joined with "\n"), or nothing (null, undefined, "" alike). */
export type MessageContent = string | readonly TextPart[] | null | undefined;

export interface ToolCall {
  /** Assigned by the gateway; not rendered. */
  id?: string;
  type?: 'function';
  function: {
    /** Non-empty, no newline. */
    name: string;
    /** The JSON text the model wrote, rendered verbatim. An object is accepted and JSON.stringify'd. */
    arguments: string | Record<string, unknown>;
  };
}

export interface SystemMessage {
  role: 'system' | 'developer';
  content: MessageContent;
}
export interface UserMessage {
  role: 'user';
  content: MessageContent;
}
export interface AssistantMessage {
  role: 'assistant';
  content?: MessageContent;
  /** Reasoning (vLLM / DeepSeek name); `reasoning` (OpenRouter name) is read when this is absent. */
  reasoning_content?: string | null;
  reasoning?: string | null;
  tool_calls?: readonly ToolCall[] | null;
}
export interface ToolMessage {
  role: 'tool';
  tool_call_id: string;
  content: MessageContent;
}
export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;

/** A function tool: OpenAI's shape, or Anthropic's ({ name, description, input_schema }). */
export type ToolDefinition =
  | { type?: 'function'; function: { name: string; description?: string; parameters?: unknown } }
  | { name: string; description?: string; input_schema?: unknown };

export interface RenderOptions {
  /** Append S(assistant), the header the model continues from. Default false. */
  addGenerationPrompt?: boolean;
  /**
   * Assistant turns (by index in `messages`) written from these ids (the body after S(assistant), end
   * token included) instead of their text: the exact ids sampled for a message the gateway returned,
   * which its text may not re-encode to. The message is still checked, its tool calls still named.
   */
  assistantTurns?: ReadonlyMap<number, Int32Array>;
}

/** One rendered turn: ids [start, end); its body (after the role token) starts at bodyStart. */
export interface TurnSpan {
  /** Index in `messages`; -1 for the system turn made up to hold the tools. */
  message: number;
  role: 'system' | 'user' | 'assistant' | 'tool';
  start: number;
  /** For an assistant turn, [bodyStart, end) is assistantIds(message): the tokens a policy generates. */
  bodyStart: number;
  end: number;
}

export interface RenderedChat {
  ids: Int32Array;
  turns: TurnSpan[];
}

export interface ParseOptions {
  /** The tools the request offered: a call to any other name is an 'unknown_tool' error. Omitted: names are not checked. */
  tools?: readonly ToolDefinition[];
}

/** Streaming form of parse: push sampled ids as they come, finish() when the call is done. */
export interface CompletionStream {
  /** Feeds the next sampled id; returns the deltas it completes (often none). */
  push(id: number): ParseEvent[];
  /** No more ids: returns the last deltas (a held-back incomplete character, a cut-off tool call). */
  close(): ParseEvent[];
  /** The ParsedCompletion (what parse() returns for the same ids); closes first if needed. */
  finish(): ParsedCompletion;
}

/** A chat format: what the gateway needs from a model's template. Other templates plug in here. */
export interface ChatTemplate {
  readonly name: string;
  /** The vocabulary the ids live in. */
  readonly vocabSize: number;
  /** Ids that end an assistant turn; the engine stops sampling after one. */
  readonly stopTokens: readonly number[];
  render(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[], options?: RenderOptions): Int32Array;
  renderWithSpans(messages: readonly ChatMessage[], tools?: readonly ToolDefinition[], options?: RenderOptions): RenderedChat;
  /** The ids a policy must generate for `message` after the generation prompt, its end token included. */
  assistantIds(message: AssistantMessage): Int32Array;
  parse(completionIds: ArrayLike<number>, options?: ParseOptions): ParsedCompletion;
  createParser(options?: ParseOptions): CompletionStream;
}

export type { ParseError, ParseErrorKind, ParseEvent, ParsedCompletion, ParsedToolCall } from './chatParse.js';
export { toAssistantMessage } from './chatParse.js';

/** Grows an Int32Array of ids. */
class IdWriter {
  private buf = new Int32Array(1024);
  length = 0;

  special(id: number): void {
    this.reserve(1);
    this.buf[this.length++] = id;
  }

  ids(ids: Int32Array): void {
    this.reserve(ids.length);
    this.buf.set(ids, this.length);
    this.length += ids.length;
  }

  text(s: string): void {
    if (s.length > 0) this.ids(encode(s));
  }

  finish(): Int32Array {
    return this.buf.slice(0, this.length);
  }

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Int32Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/** The text of a message's content; only text parts are supported. */
function contentText(path: string, content: unknown): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw typeError(`${path}: expected a string, an array of text parts or null, got ${describe(content)}`);
  return content
    .map((part, k) => {
      if (!isObject(part) || part.type !== 'text')
        throw typeError(`${path}[${k}]: expected a text part { type: 'text', text }, got ${isObject(part) ? `type ${JSON.stringify(part.type)}` : describe(part)}`);
      if (typeof part.text !== 'string') throw typeError(`${path}[${k}].text: expected a string, got ${describe(part.text)}`);
      return part.text;
    })
    .join('\n');
}

/** Tool and function names are written before a newline, so they may not hold one. */
function expectName(path: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.includes('\n'))
    throw typeError(`${path}: expected a non-empty string without newlines, got ${typeof name === 'string' ? JSON.stringify(name) : describe(name)}`);
  return name;
}

/**
 * JSON with object keys sorted (by UTF-16 code units) at every level and no whitespace; undefined
 * members are skipped and non-finite numbers written as null, as JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (isObject(value) && typeof value.toJSON === 'function') value = (value.toJSON as () => unknown)();
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'object':
      if (Array.isArray(value))
        return `[${value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : canonicalJson(v))).join(',')}]`;
      return `{${Object.keys(value as object)
        .sort()
        .filter((k) => {
          const v = (value as Record<string, unknown>)[k];
          return v !== undefined && typeof v !== 'function' && typeof v !== 'symbol';
        })
        .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
        .join(',')}}`;
    default:
      throw typeError(`canonicalJson: cannot write a ${typeof value}`);
  }
}

interface NormalTool {
  name: string;
  description?: string;
  parameters?: unknown;
}

/** Both tool shapes to { name, description, parameters }; names non-empty, newline-free, unique. */
export function normalizeTools(tools: readonly ToolDefinition[] | undefined): NormalTool[] {
  if (tools === undefined || tools === null) return [];
  if (!Array.isArray(tools)) throw typeError(`tools: expected an array, got ${describe(tools)}`);
  const seen = new Set<string>();
  return tools.map((tool: unknown, i) => {
    if (!isObject(tool)) throw typeError(`tools[${i}]: expected an object, got ${describe(tool)}`);
    const openai = 'function' in tool;
    const path = openai ? `tools[${i}].function` : `tools[${i}]`;
    const fn = openai ? tool.function : tool;
    if (!isObject(fn)) throw typeError(`${path}: expected an object, got ${describe(fn)}`);
    if (openai && tool.type !== undefined && tool.type !== 'function')
      throw typeError(`tools[${i}].type: expected "function", got ${JSON.stringify(tool.type)}`);
    const name = expectName(`${path}.name`, fn.name);
    if (seen.has(name)) throw typeError(`${path}.name: duplicate tool name ${JSON.stringify(name)}`);
    seen.add(name);
    if (fn.description !== undefined && typeof fn.description !== 'string')
      throw typeError(`${path}.description: expected a string, got ${describe(fn.description)}`);
    const parameters = openai ? fn.parameters : fn.input_schema;
    const out: NormalTool = { name };
    if (fn.description !== undefined) out.description = fn.description as string;
    if (parameters !== undefined) out.parameters = parameters;
    return out;
  });
}

function toolsText(tools: NormalTool[]): string {
  return `# Tools\n${tools.map((t) => canonicalJson(t)).join('\n')}`;
}

/** Writes an assistant turn's body; returns its tool calls as (id, name) pairs. */
function writeAssistant(w: IdWriter, path: string, m: Record<string, unknown>): Array<[unknown, string]> {
  const reasoning = m.reasoning_content ?? m.reasoning;
  if (reasoning !== undefined && reasoning !== null) {
    if (typeof reasoning !== 'string')
      throw typeError(`${path}.${m.reasoning_content != null ? 'reasoning_content' : 'reasoning'}: expected a string or null, got ${describe(reasoning)}`);
    w.special(SpecialToken.THINK);
    w.text(reasoning);
    w.special(SpecialToken.THINK_END);
  }
  w.text(contentText(`${path}.content`, m.content));
  const calls: Array<[unknown, string]> = [];
  if (m.tool_calls !== undefined && m.tool_calls !== null) {
    if (!Array.isArray(m.tool_calls)) throw typeError(`${path}.tool_calls: expected an array or null, got ${describe(m.tool_calls)}`);
    m.tool_calls.forEach((call: unknown, k) => {
      const cpath = `${path}.tool_calls[${k}]`;
      if (!isObject(call) || !isObject(call.function))
        throw typeError(`${cpath}: expected { type: 'function', function: { name, arguments } }`);
      if (call.type !== undefined && call.type !== 'function')
        throw typeError(`${cpath}.type: expected "function", got ${JSON.stringify(call.type)}`);
      const name = expectName(`${cpath}.function.name`, call.function.name);
      const args = call.function.arguments;
      if (typeof args !== 'string' && !isObject(args))
        throw typeError(`${cpath}.function.arguments: expected a JSON string or an object, got ${describe(args)}`);
      w.special(SpecialToken.TOOL_CALL);
      w.text(`${name}\n${typeof args === 'string' ? args : JSON.stringify(args)}`);
      w.special(SpecialToken.TOOL_CALL_END);
      calls.push([call.id, name]);
    });
  }
  w.special(SpecialToken.END);
  return calls;
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

function renderInto(
  messages: readonly ChatMessage[],
  tools: readonly ToolDefinition[] | undefined,
  options: RenderOptions | undefined,
): RenderedChat {
  if (!Array.isArray(messages)) throw typeError(`messages: expected an array, got ${describe(messages)}`);
  const toolList = normalizeTools(tools);
  const w = new IdWriter();
  const turns: TurnSpan[] = [];
  const turn = (message: number, role: TurnSpan['role'], token: number, body: () => void) => {
    const start = w.length;
    w.special(token);
    const bodyStart = w.length;
    body();
    turns.push({ message, role, start, bodyStart, end: w.length });
  };
  w.special(SpecialToken.BOS);
  const firstIsSystem = isObject(messages[0]) && (messages[0].role === 'system' || messages[0].role === 'developer');
  if (toolList.length > 0 && !firstIsSystem)
    turn(-1, 'system', SpecialToken.SYSTEM, () => {
      w.text(toolsText(toolList));
      w.special(SpecialToken.END);
    });
  // Tool-call id -> function name, latest call winning (agents reuse ids such as "call_0" per turn).
  const callNames = new Map<unknown, string>();
  messages.forEach((msg: unknown, i) => {
    const path = `messages[${i}]`;
    if (!isObject(msg)) throw typeError(`${path}: expected a message object, got ${describe(msg)}`);
    const role = msg.role;
    if (typeof role !== 'string' || !ROLES.has(role))
      throw typeError(`${path}.role: expected "system", "developer", "user", "assistant" or "tool", got ${JSON.stringify(role)}`);
    if (role === 'assistant') {
      const verbatim = options?.assistantTurns?.get(i);
      if (verbatim !== undefined && !(verbatim instanceof Int32Array))
        throw typeError(`options.assistantTurns: expected Int32Array ids for message ${i}`);
      turn(i, 'assistant', SpecialToken.ASSISTANT, () => {
        // With verbatim ids the text is still checked and its tool calls named, but not written.
        const calls = writeAssistant(verbatim === undefined ? w : new IdWriter(), path, msg);
        if (verbatim !== undefined) w.ids(verbatim);
        for (const [id, name] of calls) if (id !== undefined) callNames.set(id, name);
      });
    } else if (role === 'tool') {
      if (typeof msg.tool_call_id !== 'string') throw typeError(`${path}.tool_call_id: expected a string, got ${describe(msg.tool_call_id)}`);
      const name = callNames.get(msg.tool_call_id);
      if (name === undefined)
        throw typeError(`${path}.tool_call_id: no earlier assistant tool call has id ${JSON.stringify(msg.tool_call_id)}`);
      const text = contentText(`${path}.content`, msg.content);
      turn(i, 'tool', SpecialToken.TOOL, () => {
        w.text(`${name}\n${text}`);
        w.special(SpecialToken.END);
      });
    } else {
      const system = role !== 'user';
      let text = contentText(`${path}.content`, msg.content);
      if (i === 0 && system && toolList.length > 0) text = `${text}${text ? '\n\n' : ''}${toolsText(toolList)}`;
      turn(i, system ? 'system' : 'user', system ? SpecialToken.SYSTEM : SpecialToken.USER, () => {
        w.text(text);
        w.special(SpecialToken.END);
      });
    }
  });
  if (options?.addGenerationPrompt) w.special(SpecialToken.ASSISTANT);
  return { ids: w.finish(), turns };
}

/** The ids of a conversation (see the layout at the top of this file). */
export function render(
  messages: readonly ChatMessage[],
  tools?: readonly ToolDefinition[],
  options?: RenderOptions,
): Int32Array {
  return renderInto(messages, tools, options).ids;
}

/** render, plus where each turn lies in the ids (e.g. the assistant bodies, for an SFT loss mask). */
export function renderWithSpans(
  messages: readonly ChatMessage[],
  tools?: readonly ToolDefinition[],
  options?: RenderOptions,
): RenderedChat {
  return renderInto(messages, tools, options);
}

/** What the policy generates for `message` after S(assistant): its body, ending with S(end). */
export function assistantIds(message: AssistantMessage): Int32Array {
  if (!isObject(message) || message.role !== 'assistant')
    throw typeError(`message: expected an assistant message, got ${isObject(message) ? `role ${JSON.stringify(message.role)}` : describe(message)}`);
  const w = new IdWriter();
  writeAssistant(w, 'message', message as unknown as Record<string, unknown>);
  return w.finish();
}

/** Ids that end an assistant turn. */
export const stopTokens: readonly number[] = Object.freeze([SpecialToken.END, SpecialToken.EOS]);

function toolNames(options: ParseOptions | undefined): Set<string> | undefined {
  if (options?.tools === undefined) return undefined;
  return new Set(normalizeTools(options.tools).map((t) => t.name));
}

/** A parser for a streamed completion: push(id) returns the deltas, finish() what parse would return. */
export function createParser(options?: ParseOptions): CompletionStream {
  return new CompletionParser(toolNames(options), assistantIds);
}

/** Parses a completion (the ids sampled after the generation prompt). See ParsedCompletion. */
export function parse(completionIds: ArrayLike<number>, options?: ParseOptions): ParsedCompletion {
  const ids = expectTokenIds('completionIds', completionIds);
  const parser = new CompletionParser(toolNames(options), assistantIds);
  for (let i = 0; i < ids.length; i++) parser.push(ids[i]);
  return parser.finish();
}

/** The nano policy's template. */
export const nanoChatTemplate: ChatTemplate = Object.freeze({
  name: 'forge-nano',
  vocabSize,
  stopTokens,
  render,
  renderWithSpans,
  assistantIds,
  parse,
  createParser,
});
