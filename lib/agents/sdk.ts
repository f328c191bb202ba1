// forge-rl's agent SDK: a small white-box way to write an agent against the gateway. An agent
// (ForgeAgent) holds its tools — a definition and a local handler each — and its sampling settings; a
// session (AgentSession) is one run against one gateway session: it keeps the context, calls the
// model through the OpenAI Chat Completions protocol, runs the tool calls it gets back, and — what a
// black-box agent cannot do — announces its context-management steps. contextStep() rewrites the
// context (truncate or summarize) AND registers the step with the gateway before the next call, so
// the fork that call makes is recorded as intended (lib/gateway/contextSteps.ts), not as an anomaly.
//
// It speaks plain HTTP (fetch), so it needs nothing beyond Node: no OpenAI client dependency.
import type { AssistantMessage, ChatMessage, ToolCall, ToolDefinition } from '../model/chatTemplate.js';

/** Codes of the SDK's errors (AgentSdkError.code). */
export const AgentErrorCode = {
  /** A bad argument to the SDK itself. */
  INVALID_ARGUMENT: 'FORGE_AGENT_INVALID_ARGUMENT',
  /** The gateway answered with an error (its code and message are kept). */
  GATEWAY: 'FORGE_AGENT_GATEWAY',
  /** The gateway's answer is not what the protocol promises. */
  BAD_RESPONSE: 'FORGE_AGENT_BAD_RESPONSE',
  /** The model called a tool the agent does not have. */
  UNKNOWN_TOOL: 'FORGE_AGENT_UNKNOWN_TOOL',
  /** A context step would leave a context that cannot be sent (e.g. a tool result without its call). */
  BAD_CONTEXT: 'FORGE_AGENT_BAD_CONTEXT',
} as const;
export type AgentErrorCode = (typeof AgentErrorCode)[keyof typeof AgentErrorCode];

export class AgentSdkError extends Error {
  constructor(
    readonly code: AgentErrorCode,
    message: string,
    /** HTTP status and the gateway's own error code, for GATEWAY errors. */
    readonly status?: number,
    readonly gatewayCode?: string,
  ) {
    super(message);
    this.name = 'AgentSdkError';
  }
}

const fail = (code: AgentErrorCode, message: string): never => {
  throw new AgentSdkError(code, message);
};

/** Runs one tool call: its parsed arguments in, the result text out. */
export type ToolHandler = (args: Record<string, unknown>) => string | Promise<string>;

export interface ForgeAgentOptions {
  /** The model name sent (any name reaches an embedded engine). Default 'forge-nano'. */
  model?: string;
  /** max_tokens of every call. Default 64. */
  maxTokens?: number;
  /** Sampling temperature; default: the gateway's (1). */
  temperature?: number;
}

/** A gateway session to run against: its base URL (…/sessions/<id>/v1 or …/v1) and key. */
export interface SessionConnection {
  baseURL: string;
  apiKey: string;
}

export class ForgeAgent {
  readonly model: string;
  readonly maxTokens: number;
  readonly temperature: number | undefined;
  private readonly handlers = new Map<string, ToolHandler>();
  private readonly definitions: ToolDefinition[] = [];

  constructor(options: ForgeAgentOptions = {}) {
    if (typeof options !== 'object' || options === null) fail(AgentErrorCode.INVALID_ARGUMENT, 'options: expected an object');
    this.model = options.model ?? 'forge-nano';
    this.maxTokens = options.maxTokens ?? 64;
    if (!Number.isInteger(this.maxTokens) || this.maxTokens < 1)
      fail(AgentErrorCode.INVALID_ARGUMENT, `options.maxTokens: expected an integer >= 1, got ${options.maxTokens}`);
    this.temperature = options.temperature;
  }

  /** Registers a tool: its OpenAI definition ({ type: 'function', function: { name, parameters } }) and handler. */
  tool(definition: { type?: 'function'; function: { name: string; description?: string; parameters?: unknown } }, handler: ToolHandler): this {
    const name = definition?.function?.name;
    if (typeof name !== 'string' || name === '') fail(AgentErrorCode.INVALID_ARGUMENT, 'definition.function.name: expected a non-empty string');
    if (this.handlers.has(name)) fail(AgentErrorCode.INVALID_ARGUMENT, `definition.function.name: a tool ${JSON.stringify(name)} is already registered`);
    if (typeof handler !== 'function') fail(AgentErrorCode.INVALID_ARGUMENT, `handler: expected a function for tool ${JSON.stringify(name)}`);
    this.handlers.set(name, handler);
    this.definitions.push({ type: 'function', function: { ...definition.function } });
    return this;
  }

  get tools(): readonly ToolDefinition[] {
    return this.definitions;
  }

  handler(name: string): ToolHandler | undefined {
    return this.handlers.get(name);
  }

  /** A run against one gateway session, starting from `messages`. */
  session(connection: SessionConnection, messages: ChatMessage[] = []): AgentSession {
    return new AgentSession(this, connection, messages);
  }
}

/** What one model call gave back. */
export interface AgentReply {
  message: AssistantMessage;
  /** The reply's text ('' when none). */
  content: string;
  toolCalls: ToolCall[];
  finishReason: string;
}

/** A context-management step: keep some messages, or replace the context with a summary. */
export type ContextStepRequest =
  /** Keep the first `keepFirst` messages (default 1: the task) and the last `keepLast`. */
  | { kind: 'truncate'; keepFirst?: number; keepLast: number; detail?: string }
  /** Replace the context with `messages` (the summary the agent wrote). */
  | { kind: 'summarize'; messages: ChatMessage[]; detail?: string };

export class AgentSession {
  /** The context the next call sends. */
  messages: ChatMessage[];
  /** Model calls made and tool calls run. */
  turns = 0;
  toolCalls = 0;
  /** Context steps taken (and announced). */
  readonly steps: { kind: 'truncate' | 'summarize'; detail: string }[] = [];
  private readonly baseURL: string;

  constructor(readonly agent: ForgeAgent, private readonly connection: SessionConnection, messages: ChatMessage[] = []) {
    if (typeof connection?.baseURL !== 'string' || !/^https?:\/\//.test(connection.baseURL))
      fail(AgentErrorCode.INVALID_ARGUMENT, `connection.baseURL: expected an http(s) URL, got ${JSON.stringify(connection?.baseURL)}`);
    if (typeof connection.apiKey !== 'string' || connection.apiKey === '')
      fail(AgentErrorCode.INVALID_ARGUMENT, 'connection.apiKey: expected the session key');
    this.baseURL = connection.baseURL.replace(/\/+$/, '');
    this.messages = [...messages];
  }

  /**
   * One model call with `messages` (default: the session's context) and `tools` (default: the
   * agent's). The reply is appended to the context when the context was used and the reply is not
   * empty.
   */
  async chat(messages: ChatMessage[] = this.messages, tools: readonly ToolDefinition[] = this.agent.tools): Promise<AgentReply> {
    const body: Record<string, unknown> = { model: this.agent.model, messages, max_tokens: this.agent.maxTokens };
    if (tools.length > 0) body.tools = tools;
    if (this.agent.temperature !== undefined) body.temperature = this.agent.temperature;
    const json = (await this.post('/chat/completions', body)) as { choices?: { message?: AssistantMessage; finish_reason?: string }[] };
    const choice = json.choices?.[0];
    if (!choice?.message || choice.message.role !== 'assistant')
      fail(AgentErrorCode.BAD_RESPONSE, 'chat: the gateway answered without an assistant message');
    this.turns++;
    const m = choice!.message!;
    const toolCalls = [...(m.tool_calls ?? [])];
    const message: AssistantMessage = { role: 'assistant', content: m.content ?? null };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    const content = typeof m.content === 'string' ? m.content : '';
    // An empty reply (e.g. only a malformed tool call, which the gateway does not pass on) has
    // nothing to continue from: it is not appended, so asking again sends the same context.
    if (messages === this.messages && (toolCalls.length > 0 || content !== '')) this.messages.push(message);
    return { message, content, toolCalls, finishReason: choice!.finish_reason ?? 'stop' };
  }

  /** Runs a reply's tool calls with the agent's handlers and appends their results to the context. */
  async runTools(reply: AgentReply): Promise<string[]> {
    const results: string[] = [];
    for (const call of reply.toolCalls) {
      const handler = this.agent.handler(call.function.name);
      if (handler === undefined) fail(AgentErrorCode.UNKNOWN_TOOL, `the model called ${JSON.stringify(call.function.name)}, which this agent does not have`);
      const args = parseArguments(call.function.arguments);
      const result = String(await handler!(args));
      this.messages.push({ role: 'tool', tool_call_id: call.id ?? '', content: result });
      this.toolCalls++;
      results.push(result);
    }
    return results;
  }

  /**
   * Rewrites the context and announces the step to the gateway (before the next call, which will
   * fork). A truncation must leave a context that starts cleanly (no tool result without its call).
   */
  async contextStep(step: ContextStepRequest): Promise<void> {
    let next: ChatMessage[];
    if (step?.kind === 'truncate') {
      const first = step.keepFirst ?? 1, last = step.keepLast;
      if (!Number.isInteger(first) || first < 0) fail(AgentErrorCode.INVALID_ARGUMENT, `step.keepFirst: expected an integer >= 0, got ${first}`);
      if (!Number.isInteger(last) || last < 0) fail(AgentErrorCode.INVALID_ARGUMENT, `step.keepLast: expected an integer >= 0, got ${last}`);
      const n = this.messages.length;
      next = first + last >= n ? [...this.messages] : [...this.messages.slice(0, first), ...this.messages.slice(n - last)];
      const orphan = next.findIndex((m, i) => m.role === 'tool' && !answersKeptCall(next, i));
      if (orphan >= 0) fail(AgentErrorCode.BAD_CONTEXT, `step: truncating would keep a tool result (message ${orphan}) without the call it answers`);
    } else if (step?.kind === 'summarize') {
      if (!Array.isArray(step.messages) || step.messages.length === 0)
        fail(AgentErrorCode.INVALID_ARGUMENT, 'step.messages: expected the summarised context (a non-empty array of messages)');
      next = [...step.messages];
    } else {
      return fail(AgentErrorCode.INVALID_ARGUMENT, `step.kind: expected 'truncate' or 'summarize', got ${JSON.stringify((step as { kind?: unknown })?.kind)}`);
    }
    const detail = step.detail ?? (step.kind === 'truncate' ? `kept ${next.length} of ${this.messages.length} messages` : `${this.messages.length} messages summarised into ${next.length}`);
    await this.post('/forge/context-steps', { kind: step.kind, detail });
    this.messages = next;
    this.steps.push({ kind: step.kind, detail });
  }

  private async post(path: string, body: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.baseURL}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.connection.apiKey}` },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new AgentSdkError(AgentErrorCode.GATEWAY, `${path}: the gateway could not be reached (${(e as Error).message})`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AgentSdkError(AgentErrorCode.BAD_RESPONSE, `${path}: the gateway answered ${res.status} with a body that is not JSON`, res.status);
    }
    if (!res.ok) {
      const err = (json as { error?: { message?: string; code?: string } }).error;
      throw new AgentSdkError(AgentErrorCode.GATEWAY, `${path}: ${res.status} ${err?.message ?? text}`, res.status, err?.code);
    }
    return json;
  }
}

function parseArguments(text: unknown): Record<string, unknown> {
  if (typeof text !== 'string') return (text ?? {}) as Record<string, unknown>;
  try {
    const v = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/** Whether the tool message at `i` answers a call made by an assistant message kept before it. */
function answersKeptCall(messages: readonly ChatMessage[], i: number): boolean {
  const id = (messages[i] as { tool_call_id?: string }).tool_call_id;
  for (let k = i - 1; k >= 0; k--) {
    const m = messages[k];
    if (m.role === 'assistant' && m.tool_calls?.some((c) => c.id === id)) return true;
  }
  return false;
}
