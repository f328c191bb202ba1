// OpenAI Chat Completions (POST /v1/chat/completions) and the model list (GET /v1/models).
// top_logprobs: the gateway knows only the sampled token's logprob, so each top_logprobs list holds
// that one token (documented limitation; the engine does not return alternatives).
import type { FastifyInstance } from 'fastify';
import type { ChatMessage } from '../model/chatTemplate.js';
import { runChat, type ChatRequest, type ChoiceOutcome, type GatewayContext } from './callRunner.js';
import { GatewayErrorCode, errorBody, gatewayError, toGatewayError } from './errors.js';
import type { SessionStore } from './sessions.js';
import { clientSignal, SseWriter } from './sse.js';

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

function toolChoice(value: unknown): 'auto' | 'none' {
  if (value === undefined || value === null || value === 'auto') return 'auto';
  if (value === 'none') return 'none';
  throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER,
    `tool_choice: only "auto" and "none" are supported, got ${JSON.stringify(value)}`, 'tool_choice');
}

function toChatRequest(body: ChatBody, defaultModel: string): ChatRequest {
  const stop = body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    protocol: 'openai',
    model: body.model ?? defaultModel,
    messages: body.messages,
    tools: body.tools && body.tools.length > 0 ? body.tools : undefined,
    toolChoice: toolChoice(body.tool_choice),
    sampling: {
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      stop,
      seed: body.seed ?? undefined,
    },
    n: body.n ?? 1,
    raw: body,
  };
}

/** OpenAI's logprob entry for one token, named by the upstream ("token_id:<id>" when it cannot);
 * a lone byte >= 0x80 is not text by itself, so the engine names it "\\xNN" and its bytes are that byte. */
function logprobEntry(tokenText: (id: number) => string, token: number, logprob: number, top: number) {
  const text = tokenText(token);
  const bytes = /^\\x[0-9a-f]{2}$/.test(text) ? [parseInt(text.slice(2), 16)] : Array.from(Buffer.from(text, 'utf8'));
  const entry = { token: text, logprob, bytes, top_logprobs: [] as { token: string; logprob: number; bytes: number[] }[] };
  if (top > 0) entry.top_logprobs.push({ token: text, logprob, bytes });
  return entry;
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

function usage(outcomes: ChoiceOutcome[]) {
  const prompt = outcomes[0]?.result.promptTokens ?? 0;
  const completion = outcomes.reduce((s, o) => s + o.result.completionTokens, 0);
  const cached = outcomes[0]?.result.cachedPromptTokens ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
}

export function openaiRoutes(ctx: GatewayContext, store: SessionStore) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    const defaultModel = () => ctx.upstream.models()[0]?.id ?? 'default';

    app.get('/v1/models', async (request) => {
      store.resolve(request);
      return { object: 'list', data: ctx.upstream.models().map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.ownedBy })) };
    });

    app.post('/v1/chat/completions', { schema: chatSchema }, async (request, reply) => {
      const session = store.resolve(request);
      const body = request.body as ChatBody;
      const req = toChatRequest(body, defaultModel());
      const id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
      const created = Math.floor(Date.now() / 1000);
      const wantLogprobs = body.logprobs === true;
      const top = body.top_logprobs ?? 0;
      const tokenText = (t: number) => ctx.upstream.tokenText?.(t) ?? `token_id:${t}`;
      const signal = clientSignal(request, reply);

      if (!body.stream) {
        const outcomes = await runChat(ctx, session, req, () => {}, signal);
        return {
          id, object: 'chat.completion', created, model: req.model,
          choices: outcomes.map((o, index) => ({
            index,
            message: message(o),
            // Only complete logprobs are sent: an upstream that returned none (or not all) gets null.
            logprobs: wantLogprobs && o.result.completionIds && o.result.logprobs?.length === o.result.completionIds.length
              ? { content: Array.from(o.result.completionIds, (t, i) => logprobEntry(tokenText, t, o.result.logprobs![i], top)), refusal: null }
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
              if (wantLogprobs) pending[choice].push(logprobEntry(tokenText, e.token, e.logprob, top));
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
        if (!sse.headersSent) throw err;
        // Headers are gone: the error travels as an event in OpenAI's error shape.
        sse.send(errorBody('openai', toGatewayError(err)));
        sse.end();
      }
      return reply;
    });
  };
}
