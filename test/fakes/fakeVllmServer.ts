// A FAKE vLLM server, for tests: it stands in for a GPU inference server we cannot run here. A real
// node:http server on loopback that speaks vLLM's OpenAI-compatible protocol with its token-id
// extensions (return_token_ids, return_tokens_as_token_ids, streamed prompt_token_ids and per-chunk
// token_ids, stream_options.include_usage) — or, with dialect 'sglang', SGLang's non-streamed
// variant (choice.prompt_token_ids / choice.token_ids, streamed token ids refused). Prompts are
// rendered with the nano chat template, so prompt ids are real; completions come from a script
// (fakeVllmGeneration.ts) with seeded made-up logprobs. Every call it served is kept in `calls`, so
// tests compare what the gateway recorded with what this server produced.
//
// Fault switches (per request through `nextFaults`, or for every request through `faults`): omit
// token ids, omit the prompt ids, drop some logprobs, name the wrong token in a logprob entry,
// answer with an HTTP error, hang, cut the stream after k tokens, slow tokens.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { render, type ChatMessage, type ToolDefinition } from '../../lib/model/chatTemplate.js';
import { encode, SpecialToken, tokenBytes } from '../../lib/model/tokenizer.js';
import { makeRng } from '../helpers/random.js';
import { generate, type FakeScript, type Generated } from './fakeVllmGeneration.js';

export type { FakeScript } from './fakeVllmGeneration.js';

export interface FakeFaults {
  /** Ignore return_token_ids: no prompt_token_ids, no token_ids (an older server). */
  omitTokenIds?: boolean;
  /** Send the completion's token_ids but not the prompt's. */
  omitPromptIds?: boolean;
  /** Completion positions whose logprob entry is left out. */
  dropLogprobsAt?: readonly number[];
  /** A position whose logprob entry names the next id instead of the sampled one. */
  wrongIdAt?: number;
  /** Answer with this HTTP status and a vLLM error body. */
  status?: number;
  /** Take the request and never answer (until the client goes away). */
  hang?: boolean;
  /** Stream this many tokens, then destroy the connection. */
  cutAfterTokens?: number;
  /** Wait this long before each streamed token. */
  tokenDelayMs?: number;
}

export interface FakeCall {
  endpoint: 'chat' | 'completions';
  body: Record<string, any>;
  promptIds: Int32Array;
  generated?: Generated;
  /** The client went away before the response was complete. */
  aborted: boolean;
  done: boolean;
}

export interface FakeVllmOptions {
  script: FakeScript;
  model?: string;
  maxModelLen?: number;
  seed?: number;
  dialect?: 'vllm' | 'sglang';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class BadRequest extends Error {}

export class FakeVllmServer {
  readonly calls: FakeCall[] = [];
  /** Faults for every request. */
  faults: FakeFaults = {};
  /** Faults for the next requests, one each, before `faults`. */
  readonly nextFaults: FakeFaults[] = [];
  readonly model: string;
  readonly maxModelLen: number;
  /** The API root (".../v1") once started. */
  url = '';
  private readonly server: Server;
  private served = 0;

  constructor(private readonly options: FakeVllmOptions) {
    this.model = options.model ?? 'fake/nano-vllm';
    this.maxModelLen = options.maxModelLen ?? 8192;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (!res.headersSent) this.error(res, e instanceof BadRequest ? 400 : 500, (e as Error).message);
        else res.destroy();
      });
    });
  }

  /** Listens on loopback; returns the API root (".../v1"). */
  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
    return this.url;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private error(res: ServerResponse, status: number, message: string): void {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message, type: status === 400 ? 'BadRequestError' : 'InternalServerError', param: null, code: status } }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: this.model, object: 'model', owned_by: 'vllm', max_model_len: this.maxModelLen }] }));
      return;
    }
    const endpoint = req.url === '/v1/chat/completions' ? 'chat' : req.url === '/v1/completions' ? 'completions' : undefined;
    if (req.method !== 'POST' || endpoint === undefined) return this.error(res, 404, `no route ${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, any>;
    const faults = this.nextFaults.shift() ?? this.faults;
    const call: FakeCall = { endpoint, body, promptIds: new Int32Array(0), aborted: false, done: false };
    this.calls.push(call);
    res.on('close', () => {
      if (!res.writableFinished) call.aborted = true;
    });
    if (faults.status !== undefined) return this.error(res, faults.status, 'fake vLLM: injected failure');
    if (faults.hang) return; // the response stays open until the client goes away
    const sglang = this.options.dialect === 'sglang';
    if (sglang && body.stream && (body.return_token_ids || body.return_prompt_token_ids))
      throw new BadRequest('return_token_ids is not supported with streaming on /v1/chat/completions.');

    call.promptIds = endpoint === 'chat' ? this.renderChat(body) : this.promptOf(body.prompt);
    const maxTokens = body.max_tokens ?? this.maxModelLen - call.promptIds.length;
    if (call.promptIds.length + maxTokens > this.maxModelLen)
      throw new BadRequest(`This model's maximum context length is ${this.maxModelLen} tokens. However, you requested ${call.promptIds.length + maxTokens} tokens (${call.promptIds.length} in the messages, ${maxTokens} in the completion).`);
    const stops: string[] = body.stop === undefined || body.stop === null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
    const g = generate({
      kind: endpoint, promptIds: call.promptIds, scripted: this.options.script(call.promptIds, this.served++),
      maxTokens, stops, tools: body.tools as ToolDefinition[] | undefined, rng: makeRng((this.options.seed ?? 1) + 7919 * this.calls.length),
    });
    call.generated = g;
    const ids = !faults.omitTokenIds && body.return_token_ids;
    const promptIds = ids && !faults.omitPromptIds ? Array.from(call.promptIds) : undefined;
    const entry = (i: number) => {
      if (!body.logprobs || faults.dropLogprobsAt?.includes(i)) return undefined;
      const id = faults.wrongIdAt === i ? g.ids[i] + 1 : g.ids[i];
      const token = body.return_tokens_as_token_ids ? `token_id:${id}` : Buffer.from(tokenBytes(g.ids[i])).toString('latin1');
      return { token, logprob: g.logprobs[i], bytes: Array.from(tokenBytes(g.ids[i])), top_logprobs: [] };
    };
    const usage = { prompt_tokens: call.promptIds.length, completion_tokens: g.ids.length, total_tokens: call.promptIds.length + g.ids.length };
    const head = { id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-fake${this.calls.length}`, created: Math.floor(Date.now() / 1000), model: this.model };

    if (!body.stream) {
      const entries = Array.from(g.ids, (_, i) => entry(i)).filter((e) => e !== undefined);
      const choice: Record<string, any> = { index: 0, finish_reason: g.finishReason, [sglang ? 'matched_stop' : 'stop_reason']: g.stopReason };
      if (endpoint === 'chat') {
        choice.message = { role: 'assistant', content: g.toolCalls.length > 0 && g.content === '' ? null : g.content, tool_calls: g.toolCalls };
        if (g.reasoning !== undefined) choice.message[sglang ? 'reasoning_content' : 'reasoning'] = g.reasoning;
        choice.logprobs = body.logprobs ? { content: entries } : null;
      } else {
        choice.text = g.content;
        choice.logprobs = body.logprobs ? { tokens: entries.map((e) => e!.token), token_logprobs: entries.map((e) => e!.logprob) } : null;
      }
      if (ids) choice.token_ids = Array.from(g.ids);
      if (promptIds && (sglang || endpoint === 'completions')) choice.prompt_token_ids = promptIds;
      const out: Record<string, any> = { ...head, object: endpoint === 'chat' ? 'chat.completion' : 'text_completion', choices: [choice], usage };
      if (promptIds && !sglang && endpoint === 'chat') out.prompt_token_ids = promptIds;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
      call.done = true;
      return;
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (data: unknown) => res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    const object = endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    if (endpoint === 'chat')
      send({ ...head, object, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], ...(promptIds ? { prompt_token_ids: promptIds } : {}) });
    for (let i = 0; i < g.ids.length; i++) {
      if (faults.tokenDelayMs) await sleep(faults.tokenDelayMs);
      if (res.destroyed) return;
      if (faults.cutAfterTokens === i) {
        res.socket?.destroy();
        return;
      }
      const last = i === g.ids.length - 1;
      const e = entry(i);
      const choice: Record<string, any> = { index: 0, finish_reason: last ? g.finishReason : null };
      if (last) choice.stop_reason = g.stopReason;
      if (ids) choice.token_ids = [g.ids[i]];
      if (endpoint === 'chat') {
        choice.delta = g.chatDeltas[i];
        choice.logprobs = e ? { content: [e] } : null;
      } else {
        choice.text = g.textDeltas[i];
        choice.logprobs = e ? { tokens: [e.token], token_logprobs: [e.logprob], top_logprobs: [{ [e.token]: e.logprob }], text_offset: [0] } : null;
        if (i === 0 && promptIds) choice.prompt_token_ids = promptIds;
      }
      send({ ...head, object, choices: [choice] });
    }
    if (g.ids.length === 0) send({ ...head, object, choices: [{ index: 0, delta: {}, text: '', logprobs: null, finish_reason: g.finishReason }] });
    if (body.stream_options?.include_usage) send({ ...head, object, choices: [], usage });
    send('[DONE]');
    res.end();
    call.done = true;
  }

  /** The chat prompt: the nano template's rendering, as vLLM renders the model's own template. */
  private renderChat(body: Record<string, any>): Int32Array {
    try {
      return render(body.messages as ChatMessage[], body.tools as ToolDefinition[] | undefined, { addGenerationPrompt: true });
    } catch (e) {
      throw new BadRequest((e as Error).message);
    }
  }

  /** A completions prompt: token ids as given, text after a BOS (add_special_tokens, vLLM's default). */
  private promptOf(prompt: unknown): Int32Array {
    if (typeof prompt === 'string') return Int32Array.from([SpecialToken.BOS, ...encode(prompt)]);
    if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((t) => Number.isInteger(t))) return Int32Array.from(prompt as number[]);
    throw new BadRequest('the fake vLLM server takes one prompt: a string or an array of token ids');
  }
}
