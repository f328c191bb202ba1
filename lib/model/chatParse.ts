// Parsing a sampled assistant completion (the ids after S(assistant)) in the nano chat template's
// layout (lib/model/chatTemplate.ts): one state machine that serves both the streaming form (push an
// id, get the deltas) and parse() (push them all, then finish), so the two can never disagree.
//
// Malformed output is never dropped silently: every problem becomes a ParseError (the gateway counts
// them as a process-reward signal), and a tool call with an error is reported in `errors`, not in
// `toolCalls` (its raw name and argument text ride along in the error).
import { rangeError } from '../errors.js';
import type { AssistantMessage } from './chatTemplate.js';
import { BYTE_TOKENS, SpecialToken, specialText, StreamDecoder, vocabSize } from './tokenizer.js';

export type ParseErrorKind =
  /** S(tool_call) followed directly by "\n" (empty name). */
  | 'missing_name'
  /** S(/tool_call) before the "\n" that ends the name: no arguments at all. */
  | 'missing_arguments'
  /** The arguments are not valid JSON. */
  | 'bad_json'
  /** The arguments are valid JSON but not an object. */
  | 'arguments_not_object'
  /** A name the request did not offer (checked only when ParseOptions.tools is given). */
  | 'unknown_tool'
  /** The turn (or the completion) ended inside a tool call. */
  | 'unterminated_tool_call'
  /** The turn ended inside a reasoning block. */
  | 'unterminated_think'
  /** A special token where the layout has no place for it (ignored). */
  | 'unexpected_token'
  /** Tokens after the end of the turn (ignored; not counted in `length`). */
  | 'after_end';

export interface ParseError {
  kind: ParseErrorKind;
  message: string;
  /** Index in the completion of the token where the problem was found (its length: at the end). */
  at: number;
  /** For tool-call errors: the call's ordinal among all S(tool_call) blocks of the completion. */
  toolCall?: number;
  /** For tool-call errors: the raw name and argument text as far as they were written. */
  name?: string;
  argumentsText?: string;
}

export interface ParsedToolCall {
  name: string;
  /** JSON.parse(argumentsText), always a plain object. */
  arguments: Record<string, unknown>;
  /** The exact text the model wrote; hand this to the agent so that it renders back to the same ids. */
  argumentsText: string;
}

export interface ParsedCompletion {
  /** Text outside reasoning and tool-call blocks, concatenated ('' when there is none). */
  content: string;
  /** Text of the reasoning blocks, concatenated; undefined when there was no S(think). */
  reasoning?: string;
  /** The well-formed tool calls, in order. */
  toolCalls: ParsedToolCall[];
  /** True when the completion reached S(end) or S(eos). */
  finishedTurn: boolean;
  errors: ParseError[];
  /**
   * True when assistantIds(toAssistantMessage(this)) reproduces the completion (followed by S(end)
   * when the turn was not finished): the agent's next request will then render to ids that extend
   * this call's prompt and completion, so the gateway continues the branch instead of forking.
   */
  exact: boolean;
  /** Tokens consumed: up to and including the end token. */
  length: number;
}

/** Deltas of a streamed completion, in order; concatenated they give what parse() returns. */
export type ParseEvent =
  | { type: 'content'; text: string }
  | { type: 'reasoning'; text: string }
  /** A tool call's name is complete (the "\n" after it arrived). */
  | { type: 'tool_call_begin'; index: number; name: string }
  | { type: 'tool_call_arguments'; index: number; text: string }
  /** The call is over: `call` when well-formed, else `error`. */
  | { type: 'tool_call_end'; index: number; call?: ParsedToolCall; error?: ParseError }
  /** An error not tied to a tool call. */
  | { type: 'error'; error: ParseError }
  /** S(end) or S(eos) arrived. */
  | { type: 'end' };

type Section = 'content' | 'think' | 'name' | 'args' | 'done';

const NEWLINE = 0x0a;

/** An assistant message for a parsed completion; tool-call ids from `makeId` (default call_<k>). */
export function toAssistantMessage(
  parsed: ParsedCompletion,
  makeId: (index: number) => string = (k) => `call_${k}`,
): AssistantMessage {
  const message: AssistantMessage = { role: 'assistant', content: parsed.content };
  if (parsed.reasoning !== undefined) message.reasoning_content = parsed.reasoning;
  if (parsed.toolCalls.length > 0) {
    // OpenAI returns null content next to tool calls; the template renders null and '' alike.
    if (parsed.content === '') message.content = null;
    message.tool_calls = parsed.toolCalls.map((c, k) => ({
      id: makeId(k),
      type: 'function' as const,
      function: { name: c.name, arguments: c.argumentsText },
    }));
  }
  return message;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The parser behind parse() and createParser() (lib/model/chatTemplate.ts). */
export class CompletionParser {
  private section: Section = 'content';
  private readonly decoder = new StreamDecoder();
  private readonly ids: number[] = [];
  private content = '';
  private reasoning: string | undefined;
  private name = '';
  private args = '';
  private calls = 0;
  private callStart = 0;
  private readonly toolCalls: ParsedToolCall[] = [];
  private readonly errors: ParseError[] = [];
  private count = 0;
  private afterEnd = false;
  private closed = false;
  private result: ParsedCompletion | undefined;

  constructor(
    private readonly toolNames: ReadonlySet<string> | undefined,
    private readonly assistantIds: (m: AssistantMessage) => Int32Array,
  ) {}

  /** Feeds the next sampled id; returns the deltas it completes (often none). */
  push(id: number): ParseEvent[] {
    if (this.closed) throw new Error('CompletionParser: push after close');
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize)
      throw rangeError(`id: token id ${String(id)} out of range [0, ${vocabSize})`);
    const at = this.count++;
    const events: ParseEvent[] = [];
    if (this.section === 'done') {
      if (!this.afterEnd) {
        this.afterEnd = true;
        this.fail(events, 'after_end', at, `tokens after the end of the turn (from token ${at}) are ignored`);
      }
      return events;
    }
    this.ids.push(id);
    if (id < BYTE_TOKENS) {
      if (this.section === 'name' && id === NEWLINE) {
        this.name += this.decoder.end();
        this.section = 'args';
        events.push({ type: 'tool_call_begin', index: this.calls - 1, name: this.name });
      } else this.append(events, this.decoder.push(id));
      return events;
    }
    // A special token ends the character being decoded (U+FFFD if incomplete), as decode() does.
    this.append(events, this.decoder.end());
    const s = this.section;
    switch (id) {
      case SpecialToken.THINK:
        if (s !== 'content') return this.unexpected(events, id, at);
        this.section = 'think';
        this.reasoning ??= '';
        break;
      case SpecialToken.THINK_END:
        if (s !== 'think') return this.unexpected(events, id, at);
        this.section = 'content';
        break;
      case SpecialToken.TOOL_CALL:
        if (s !== 'content') return this.unexpected(events, id, at);
        this.section = 'name';
        this.name = this.args = '';
        this.callStart = at;
        this.calls++;
        break;
      case SpecialToken.TOOL_CALL_END:
        if (s !== 'name' && s !== 'args') return this.unexpected(events, id, at);
        this.closeCall(events, at, 'closed');
        this.section = 'content';
        break;
      case SpecialToken.END:
      case SpecialToken.EOS:
        if (s === 'think') this.fail(events, 'unterminated_think', at, `the turn ended inside the reasoning block`);
        if (s === 'name' || s === 'args') this.closeCall(events, at, 'turn');
        this.section = 'done';
        events.push({ type: 'end' });
        break;
      default:
        return this.unexpected(events, id, at);
    }
    return events;
  }

  /**
   * Ends the completion (no more push) and returns its last deltas: text held back by an incomplete
   * character (as U+FFFD), the end of a tool call cut off by the end of the completion.
   */
  close(): ParseEvent[] {
    const events: ParseEvent[] = [];
    if (this.closed) return events;
    this.closed = true;
    this.append(events, this.decoder.end());
    if (this.section === 'name' || this.section === 'args') this.closeCall(events, this.count, 'completion');
    return events;
  }

  /** What parse() returns for the ids pushed so far; closes the parser first if needed. */
  finish(): ParsedCompletion {
    if (this.result !== undefined) return this.result;
    this.close();
    const finishedTurn = this.section === 'done';
    const result: ParsedCompletion = {
      content: this.content,
      toolCalls: this.toolCalls,
      finishedTurn,
      errors: this.errors,
      exact: false,
      length: this.ids.length,
    };
    if (this.reasoning !== undefined) result.reasoning = this.reasoning;
    const expected = this.assistantIds(toAssistantMessage(result));
    const n = this.ids.length;
    result.exact =
      expected.length === n + (finishedTurn ? 0 : 1) &&
      this.ids.every((id, i) => expected[i] === id) &&
      (finishedTurn || expected[n] === SpecialToken.END);
    this.result = result;
    return result;
  }

  private append(events: ParseEvent[], text: string): void {
    if (text === '') return;
    switch (this.section) {
      case 'content':
        this.content += text;
        events.push({ type: 'content', text });
        break;
      case 'think':
        this.reasoning += text;
        events.push({ type: 'reasoning', text });
        break;
      case 'name':
        this.name += text; // reported whole by tool_call_begin once the "\n" arrives
        break;
      case 'args':
        this.args += text;
        events.push({ type: 'tool_call_arguments', index: this.calls - 1, text });
        break;
      default:
        break;
    }
  }

  private fail(events: ParseEvent[], kind: ParseErrorKind, at: number, message: string): void {
    const error: ParseError = { kind, message, at };
    this.errors.push(error);
    events.push({ type: 'error', error });
  }

  private unexpected(events: ParseEvent[], id: number, at: number): ParseEvent[] {
    const where = { content: 'in the content', think: 'inside the reasoning block', name: 'inside a tool call', args: 'inside a tool call', done: '' }[this.section];
    this.fail(events, 'unexpected_token', at, `unexpected ${specialText(id)} ${where} (ignored)`);
    return events;
  }

  /** Ends the current tool call: a ParsedToolCall, or the first problem found with it. */
  private closeCall(events: ParseEvent[], at: number, how: 'closed' | 'turn' | 'completion'): void {
    const index = this.calls - 1;
    const hasArgs = this.section === 'args';
    const label = `tool call ${index} (token ${this.callStart})`;
    let kind: ParseErrorKind | undefined;
    let message = '';
    let value: unknown;
    if (how !== 'closed') {
      kind = 'unterminated_tool_call';
      message = `${label}: the ${how} ended before <|/tool_call|>`;
    } else if (!hasArgs) {
      kind = 'missing_arguments';
      message = `${label}: no newline after the name, so no arguments`;
    } else if (this.name === '') {
      kind = 'missing_name';
      message = `${label}: empty tool name`;
    } else {
      try {
        value = JSON.parse(this.args);
        if (!isPlainObject(value)) {
          kind = 'arguments_not_object';
          message = `${label} to ${JSON.stringify(this.name)}: arguments are JSON but not an object`;
        }
      } catch (e) {
        kind = 'bad_json';
        message = `${label} to ${JSON.stringify(this.name)}: arguments are not valid JSON (${(e as Error).message})`;
      }
      if (kind === undefined && this.toolNames !== undefined && !this.toolNames.has(this.name)) {
        kind = 'unknown_tool';
        message = `${label}: unknown tool ${JSON.stringify(this.name)}`;
      }
    }
    if (kind !== undefined) {
      const error: ParseError = { kind, message, at, toolCall: index, name: this.name };
      if (hasArgs) error.argumentsText = this.args;
      this.errors.push(error);
      events.push({ type: 'tool_call_end', index, error });
      return;
    }
    const call: ParsedToolCall = { name: this.name, arguments: value as Record<string, unknown>, argumentsText: this.args };
    this.toolCalls.push(call);
    events.push({ type: 'tool_call_end', index, call });
  }
}
