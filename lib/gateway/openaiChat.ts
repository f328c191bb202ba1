// OpenAI Chat Completions (POST /v1/chat/completions) and the models (GET /v1/models, /v1/models/{id};
// in Anthropic's shape for a client that sends anthropic-version, as the Anthropic SDK does).
// tool_choice: "auto", "none" (calls are withheld, noted in the record), "required", or
// { type: "function", function: { name } }; parallel_tool_calls: false allows one call per choice.
// top_logprobs (with logprobs: true): the k most likely tokens at each step from the distribution the
// token's own logprob is from (the embedded engine: log_softmax of the raw logits); an upstream
// that gives no alternatives leaves each list empty.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ChatMessage } from '../model/chatTemplate.js';
import { runChat, type ChatRequest, type ChoiceOutcome, type GatewayContext } from './callRunner.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { SessionStore } from './sessions.js';
import { clientSignal, SseWriter } from './sse.js';
import type { ModelInfo, ToolChoice, TopLogprob } from './upstream.js';

const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });

const chatSchema = {
  body: {
    type: 'object',
    required: ['messages'],
    properties: {
      model: { type: 'string' },
      messages: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          required: ['role'],
          properties: { role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] } },
        },
      },
      tools: {
        type: 'array',
        items: {
          type: 'object',
          required: ['function'],
          properties: {
            type: { const: 'function' },
            function: { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1 } } },
          },
        },
      },
      tool_choice: {},
      parallel_tool_calls: nullable({ type: 'boolean' }),
      stream: nullable({ type: 'boolean' }),
      stream_options: nullable({ type: 'object' }),
      n: nullable({ type: 'integer', minimum: 1 }),
      temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
      top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
      max_tokens: nullable({ type: 'integer', minimum: 1 }),
      max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
      stop: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }, { type: 'null' }] },
      seed: nullable({ type: 'integer', minimum: 0 }),
      logprobs: nullable({ type: 'boolean' }),
      top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: 20 }),
    },
  },
} as const;

interface ChatBody {
  model?: string;
  messages: ChatMessage[];
  tools?: ChatRequest['tools'];
  tool_choice?: unknown;
  parallel_tool_calls?: boolean | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
}

const TOOL_CHOICE_SHAPES = '"auto", "none", "required" or { "type": "function", "function": { "name": ... } }';

/** The request's tool_choice, checked against the tools it offers. */
function toolChoice(value: unknown, tools: ChatBody['tools']): ToolChoice {
  if (value === undefined || value === null || value === 'auto') return 'auto';
  if (value === 'none') return 'none';
  let choice: ToolChoice;
  if (value === 'required') choice = 'required';
  else if (typeof value === 'object' && !Array.isArray(value) && (value as { type?: unknown }).type === 'function') {
    const name = (value as { function?: { name?: unknown } }).function?.name;
    if (typeof name !== 'string' || name === '')
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'tool_choice.function.name: expected the name of a tool', 'tool_choice.function.name');
    choice = { name };
  } else if (typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string')
    throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER,
      `tool_choice: type ${JSON.stringify((value as { type: string }).type)} is not supported; use ${TOOL_CHOICE_SHAPES}`, 'tool_choice');
  else throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `tool_choice: expected ${TOOL_CHOICE_SHAPES}, got ${JSON.stringify(value)}`, 'tool_choice');
  const names = (tools ?? []).map((t) => ('function' in t ? t.function.name : t.name));
  if (names.length === 0)
    throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `tool_choice: ${JSON.stringify(value)} needs tools, and none were given`, 'tool_choice');
  if (typeof choice === 'object' && !names.includes(choice.name))
    throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `tool_choice.function.name: no tool named ${JSON.stringify(choice.name)} was given`, 'tool_choice.function.name');
  return choice;
}

const describe = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/** What the schema cannot say briefly: content where a role needs it, tool parameters as a schema object. */
function checkShapes(body: ChatBody): void {
  body.messages.forEach((m, i) => {
    if (m.role !== 'assistant' && (m.content === undefined || m.content === null))
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `messages[${i}].content: a ${m.role} message needs content, got ${describe(m.content)}`, `messages[${i}].content`);
  });
  body.tools?.forEach((t, i) => {
    const parameters = 'function' in t ? t.function.parameters : undefined;
    if (parameters !== undefined && parameters !== null && (typeof parameters !== 'object' || Array.isArray(parameters)))
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
        `tools[${i}].function.parameters: expected a JSON Schema object, got ${describe(parameters)}`, `tools[${i}].function.parameters`);
  });
}

function toChatRequest(body: ChatBody, defaultModel: string): ChatRequest {
  checkShapes(body);
  const stop = body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  const top = body.top_logprobs ?? 0;
  if (top > 0 && body.logprobs !== true)
    throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'top_logprobs: logprobs must be true when top_logprobs is used', 'top_logprobs');
  const tools = body.tools && body.tools.length > 0 ? body.tools : undefined;
  return {
    protocol: 'openai',
    model: body.model ?? defaultModel,
    messages: body.messages,
    tools,
    toolChoice: toolChoice(body.tool_choice, tools),
    ...(body.parallel_tool_calls === false ? { parallelToolCalls: false } : {}),
    sampling: {
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      stop,
      seed: body.seed ?? undefined,
      ...(top > 0 ? { topLogprobs: top } : {}),
    },
    n: body.n ?? 1,
    raw: body,
  };
}

/** A token as OpenAI names it: text and UTF-8 bytes, from the upstream ("token_id:<id>" when it
 * cannot); a lone byte >= 0x80 is not text by itself, so the engine names it "\\xNN" and its bytes are that byte. */
function tokenInfo(tokenText: (id: number) => string, token: number, logprob: number) {
  const text = tokenText(token);
  const bytes = /^\\x[0-9a-f]{2}$/.test(text) ? [parseInt(text.slice(2), 16)] : Array.from(Buffer.from(text, 'utf8'));
  return { token: text, logprob, bytes };
}

/** OpenAI's logprob entry for one token, with the alternatives the upstream gave (most likely first). */
function logprobEntry(tokenText: (id: number) => string, token: number, logprob: number, top: readonly TopLogprob[] | undefined) {
  return { ...tokenInfo(tokenText, token, logprob), top_logprobs: (top ?? []).map((t) => tokenInfo(tokenText, t.token, t.logprob)) };
}

function message(o: ChoiceOutcome): Record<string, unknown> {
  const m: Record<string, unknown> = {
    role: 'assistant',
    content: o.toolCalls.length > 0 && o.result.content === '' ? null : o.result.content,
    refusal: null,
  };
  if (o.result.reasoning !== undefined) m.reasoning_content = o.result.reasoning;
  if (o.toolCalls.length > 0)
    m.tool_calls = o.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.argumentsText } }));
  return m;
}

const finish = (o: ChoiceOutcome) => (o.finishReason === 'abort' ? 'stop' : o.finishReason);

/** OpenAI's usage object of a request's choices (they share one prompt); chat adds the cached tokens. */
export function openaiUsage(outcomes: ChoiceOutcome[], options: { cachedDetails: boolean }) {
  const prompt = outcomes[0]?.result.promptTokens ?? 0;
  const completion = outcomes.reduce((s, o) => s + o.result.completionTokens, 0);
  const counts = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
  if (!options.cachedDetails) return counts;
  return { ...counts, prompt_tokens_details: { cached_tokens: outcomes[0]?.result.cachedPromptTokens ?? 0 } };
}
const usage = (outcomes: ChoiceOutcome[]) => openaiUsage(outcomes, { cachedDetails: true });

export function openaiRoutes(ctx: GatewayContext, store: SessionStore) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    const defaultModel = () => ctx.upstream.models()[0]?.id ?? 'default';

    const anthropicClient = (request: FastifyRequest) => request.headers['anthropic-version'] !== undefined;
    const modelObject = (m: ModelInfo, anthropic: boolean) => anthropic
      ? { type: 'model', id: m.id, display_name: m.id, created_at: new Date(0).toISOString() }
      // max_model_len: vLLM's field for the context length, which clients of vLLM read.
      : { id: m.id, object: 'model', created: 0, owned_by: m.ownedBy, ...(m.contextLength ? { max_model_len: m.contextLength } : {}) };

    app.get('/v1/models', async (request) => {
      store.resolve(request);
      const models = ctx.upstream.models();
      if (!anthropicClient(request)) return { object: 'list', data: models.map((m) => modelObject(m, false)) };
      return { data: models.map((m) => modelObject(m, true)), has_more: false, first_id: models[0]?.id ?? null, last_id: models.at(-1)?.id ?? null };
    });

    // A wildcard: model ids may hold "/" (e.g. "Qwen/Qwen3-8B"), sent encoded or not.
    app.get('/v1/models/*', async (request) => {
      store.resolve(request);
      const id = (request.params as { '*': string })['*'];
      const m = ctx.upstream.models().find((x) => x.id === id);
      if (m === undefined)
        throw gatewayError(GatewayErrorCode.ROUTE_NOT_FOUND,
          `model: the model ${JSON.stringify(id)} does not exist; this gateway serves ${ctx.upstream.models().map((x) => JSON.stringify(x.id)).join(', ')}`, 'model');
      return modelObject(m, anthropicClient(request));
    });

    app.post('/v1/chat/completions', { schema: chatSchema }, async (request, reply) => {
      const session = store.resolve(request);
      const body = request.body as ChatBody;
      const req = toChatRequest(body, defaultModel());
      const id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
      const created = Math.floor(Date.now() / 1000);
      const wantLogprobs = body.logprobs === true;
      const tokenText = (t: number) => ctx.upstream.tokenText?.(t) ?? `token_id:${t}`;
      const signal = clientSignal(request, reply);

      if (!body.stream) {
        // Alternatives come with the token events; the i-th event is the i-th completion token.
        const tops: (TopLogprob[] | undefined)[][] = Array.from({ length: req.n }, () => []);
        const outcomes = await runChat(ctx, session, req, (choice, e) => {
          if (e.type === 'token' && wantLogprobs) tops[choice].push(e.top);
        }, signal);
        return {
          id, object: 'chat.completion', created, model: req.model,
          choices: outcomes.map((o, index) => ({
            index,
            message: message(o),
            // Only complete logprobs are sent: an upstream that returned none (or not all) gets null.
            logprobs: wantLogprobs && o.result.completionIds && o.result.logprobs?.length === o.result.completionIds.length
              ? { content: Array.from(o.result.completionIds, (t, i) => logprobEntry(tokenText, t, o.result.logprobs![i], tops[index][i])), refusal: null }
              : null,
            finish_reason: finish(o),
          })),
          usage: usage(outcomes),
          forge: { session_id: session.info.id, call_ids: outcomes.map((o) => o.callId) },
        };
      }

      const sse = new SseWriter(reply);
      const chunk = (choice: number, delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
        sse.send({ id, object: 'chat.completion.chunk', created, model: req.model, choices: [{ index: choice, delta, logprobs: null, finish_reason: null, ...extra }] });
      const pending: ReturnType<typeof logprobEntry>[][] = Array.from({ length: req.n }, () => []);
      const started = new Array<boolean>(req.n).fill(false);
      const takeLogprobs = (choice: number) => {
        if (!wantLogprobs || pending[choice].length === 0) return {};
        const content = pending[choice];
        pending[choice] = [];
        return { logprobs: { content, refusal: null } };
      };
      const open = (choice: number) => {
        if (started[choice]) return;
        started[choice] = true;
        chunk(choice, { role: 'assistant', content: '' });
      };
      try {
        const outcomes = await runChat(ctx, session, req, (choice, e) => {
          switch (e.type) {
            case 'token':
              if (wantLogprobs) pending[choice].push(logprobEntry(tokenText, e.token, e.logprob, e.top));
              return;
            case 'content':
              open(choice);
              return chunk(choice, { content: e.text }, takeLogprobs(choice));
            case 'reasoning':
              open(choice);
              return chunk(choice, { reasoning_content: e.text }, takeLogprobs(choice));
            case 'tool_call':
              open(choice);
              return chunk(choice, {
                tool_calls: [{ index: e.index, id: e.call.id, type: 'function', function: { name: e.call.name, arguments: e.call.argumentsText } }],
              }, takeLogprobs(choice));
            default:
              return;
          }
        }, signal);
        outcomes.forEach((o, choice) => {
          open(choice);
          chunk(choice, {}, { finish_reason: finish(o), ...takeLogprobs(choice) });
        });
        if (body.stream_options?.include_usage)
          sse.send({ id, object: 'chat.completion.chunk', created, model: req.model, choices: [], usage: usage(outcomes) });
        sse.send('[DONE]');
        sse.end();
      } catch (err) {
        sse.fail(err, 'openai');
      }
      return reply;
    });
  };
}
