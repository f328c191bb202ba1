// OpenAI Completions, the legacy endpoint (POST /v1/completions): a raw prompt — text, or token ids
// the agent rendered itself — completed without a chat template. Recorded like a chat call, its
// place in the session's call tree found from the prompt's token ids.
//
// Supported: prompt (a string, an array of token ids, or a one-element array of either), max_tokens
// (default 16, as OpenAI's), temperature, top_p, n, stop, seed, logprobs: k (each token's logprob;
// top_logprobs dicts hold the k most likely tokens the upstream reports, plus the sampled token, so
// up to k + 1 entries as OpenAI documents; only the sampled one when the upstream gives no
// alternatives), stream with stream_options.include_usage. Refused with 400: several prompts in one
// request (send one request per prompt), echo: true, suffix, best_of > 1. Token text in logprobs is the upstream's when it
// knows its vocabulary, else "token_id:<id>" (vLLM's convention); text_offset is the length of the
// text produced before the token arrived (exact for an upstream that streams token by token).
import type { FastifyInstance } from 'fastify';
import { runChat, type ChoiceOutcome, type GatewayContext, type PromptRequest } from './callRunner.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { SessionStore } from './sessions.js';
import { clientSignal, SseWriter } from './sse.js';
import { openaiUsage } from './openaiChat.js';
import type { TopLogprob } from './upstream.js';

const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });
const tokenIds = { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } };

const completionsSchema = {
  body: {
    type: 'object',
    required: ['prompt'],
    properties: {
      model: { type: 'string' },
      prompt: {
        anyOf: [
          { type: 'string' },
          tokenIds,
          { type: 'array', minItems: 1, items: { anyOf: [{ type: 'string' }, tokenIds] } },
        ],
      },
      stream: nullable({ type: 'boolean' }),
      stream_options: nullable({ type: 'object' }),
      n: nullable({ type: 'integer', minimum: 1 }),
      temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
      top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
      max_tokens: nullable({ type: 'integer', minimum: 1 }),
      stop: { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }, { type: 'null' }] },
      seed: nullable({ type: 'integer', minimum: 0 }),
      logprobs: nullable({ type: 'integer', minimum: 0, maximum: 20 }),
      echo: nullable({ type: 'boolean' }),
      suffix: nullable({ type: 'string' }),
      best_of: nullable({ type: 'integer', minimum: 1 }),
    },
  },
} as const;

interface CompletionsBody {
  model?: string;
  prompt: string | number[] | (string | number[])[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  max_tokens?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  logprobs?: number | null;
  echo?: boolean | null;
  suffix?: string | null;
  best_of?: number | null;
}

/** The one prompt of the request: text, or token ids. */
function promptOf(prompt: CompletionsBody['prompt']): string | Int32Array {
  if (typeof prompt === 'string') return prompt;
  if (prompt.every((p) => typeof p === 'number')) return Int32Array.from(prompt as number[]);
  if (prompt.length > 1)
    throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER,
      `prompt: ${prompt.length} prompts in one request are not supported; send one request per prompt (n gives several completions of one prompt)`, 'prompt');
  const only = prompt[0];
  return typeof only === 'string' ? only : Int32Array.from(only);
}

function toPromptRequest(body: CompletionsBody, defaultModel: string): PromptRequest {
  if (body.echo) throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER, 'echo: true is not supported', 'echo');
  if (body.suffix) throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER, 'suffix is not supported', 'suffix');
  if ((body.best_of ?? 1) > 1) throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER, 'best_of > 1 is not supported; use n', 'best_of');
  const stop = body.stop === undefined || body.stop === null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    protocol: 'openai',
    model: body.model ?? defaultModel,
    prompt: promptOf(body.prompt),
    sampling: {
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      maxTokens: body.max_tokens ?? 16,
      stop,
      seed: body.seed ?? undefined,
      ...(body.logprobs ? { topLogprobs: body.logprobs } : {}),
    },
    n: body.n ?? 1,
    raw: body,
  };
}

/** OpenAI's legacy logprobs object: the tokens so far, taken chunk by chunk when streaming. */
class LogprobWriter {
  tokens: string[] = [];
  token_logprobs: number[] = [];
  top_logprobs: Record<string, number>[] | null = [];
  text_offset: number[] = [];

  constructor(private readonly text: (id: number) => string, private readonly top: number) {}

  add(id: number, logprob: number, offset: number, alternatives: readonly TopLogprob[] | undefined): void {
    const token = this.text(id);
    this.tokens.push(token);
    this.token_logprobs.push(logprob);
    const top: Record<string, number> = {};
    if (this.top > 0) {
      for (const t of (alternatives ?? []).slice(0, this.top)) top[this.text(t.token)] = t.logprob;
      top[token] = logprob;
    }
    this.top_logprobs!.push(top);
    this.text_offset.push(offset);
  }

  take(): LogprobWriter | null {
    if (this.tokens.length === 0) return null;
    const out = new LogprobWriter(this.text, this.top);
    [out.tokens, out.token_logprobs, out.top_logprobs, out.text_offset] = [this.tokens, this.token_logprobs, this.top_logprobs, this.text_offset];
    this.tokens = [];
    this.token_logprobs = [];
    this.top_logprobs = [];
    this.text_offset = [];
    return out;
  }

  toJSON() {
    return { tokens: this.tokens, token_logprobs: this.token_logprobs, top_logprobs: this.top_logprobs, text_offset: this.text_offset };
  }
}

const finish = (o: ChoiceOutcome) => (o.finishReason === 'abort' || o.finishReason === 'tool_calls' ? 'stop' : o.finishReason);

const usage = (outcomes: ChoiceOutcome[]) => openaiUsage(outcomes, { cachedDetails: false });

export function openaiCompletionsRoutes(ctx: GatewayContext, store: SessionStore) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.post('/v1/completions', { schema: completionsSchema }, async (request, reply) => {
      const session = store.resolve(request);
      const body = request.body as CompletionsBody;
      const req = toPromptRequest(body, ctx.upstream.models()[0]?.id ?? 'default');
      const id = `cmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
      const created = Math.floor(Date.now() / 1000);
      const head = { id, object: 'text_completion', created, model: req.model };
      const wantLogprobs = body.logprobs !== undefined && body.logprobs !== null;
      const tokenText = (t: number) => ctx.upstream.tokenText?.(t) ?? `token_id:${t}`;
      const writer = () => new LogprobWriter(tokenText, body.logprobs ?? 0);
      const signal = clientSignal(request, reply);

      // Logprob entries come from the token events (a token the upstream gave no logprob has none).
      const pending = Array.from({ length: req.n }, writer);
      const textLength = new Array<number>(req.n).fill(0);
      const onToken = (choice: number, token: number, logprob: number, top: TopLogprob[] | undefined) => {
        if (wantLogprobs) pending[choice].add(token, logprob, textLength[choice], top);
      };

      if (!body.stream) {
        const outcomes = await runChat(ctx, session, req, (choice, e) => {
          if (e.type === 'token') onToken(choice, e.token, e.logprob, e.top);
          else if (e.type === 'content') textLength[choice] += e.text.length;
        }, signal);
        return {
          ...head,
          choices: outcomes.map((o, index) => ({ index, text: o.result.content, logprobs: wantLogprobs ? pending[index] : null, finish_reason: finish(o) })),
          usage: usage(outcomes),
          forge: { session_id: session.info.id, call_ids: outcomes.map((o) => o.callId) },
        };
      }

      const sse = new SseWriter(reply);
      const chunk = (index: number, text: string, finishReason: string | null = null) => {
        sse.send({ ...head, choices: [{ index, text, logprobs: wantLogprobs ? pending[index].take() : null, finish_reason: finishReason }] });
        textLength[index] += text.length;
      };
      try {
        const outcomes = await runChat(ctx, session, req, (choice, e) => {
          if (e.type === 'token') onToken(choice, e.token, e.logprob, e.top);
          else if (e.type === 'content') chunk(choice, e.text);
        }, signal);
        outcomes.forEach((o, index) => chunk(index, '', finish(o)));
        if (body.stream_options?.include_usage) sse.send({ ...head, choices: [], usage: usage(outcomes) });
        sse.send('[DONE]');
        sse.end();
      } catch (err) {
        sse.fail(err, 'openai');
      }
      return reply;
    });
  };
}
