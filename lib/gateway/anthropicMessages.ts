// Anthropic Messages (POST /v1/messages): system, text / tool_use / tool_result / thinking blocks,
// tools with input_schema, tool_choice ({ type: auto | any | tool (+ name) | none }, with
// disable_parallel_tool_use), stop_sequences, streaming events (message_start, content_block_start /
// delta / stop, message_delta, message_stop). Converted to the chat messages the template renders.
// POST /v1/messages/count_tokens: { input_tokens } of the prompt the same body would send, rendered
// as a call renders it (an upstream whose server renders the prompt cannot count: 404).
import type { FastifyInstance } from 'fastify';
import type { ChatMessage, TextPart, ToolCall } from '../model/chatTemplate.js';
import { countChatTokens, runChat, type ChatRequest, type ChoiceOutcome, type GatewayContext } from './callRunner.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { SessionStore } from './sessions.js';
import { clientSignal, SseWriter } from './sse.js';
import type { ToolChoice } from './upstream.js';

const textOrBlocks = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'object', required: ['type'] } }] };

const messagesSchema = {
  body: {
    type: 'object',
    required: ['max_tokens', 'messages'],
    properties: {
      model: { type: 'string' },
      max_tokens: { type: 'integer', minimum: 1 },
      system: textOrBlocks,
      messages: {
        type: 'array',
        minItems: 1,
        items: { type: 'object', required: ['role', 'content'], properties: { role: { enum: ['user', 'assistant'] }, content: textOrBlocks } },
      },
      tools: { type: 'array', items: { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1 } } } },
      tool_choice: {
        type: 'object',
        required: ['type'],
        properties: { type: { type: 'string' }, name: { type: 'string' }, disable_parallel_tool_use: { type: 'boolean' } },
      },
      stop_sequences: { type: 'array', items: { type: 'string' } },
      stream: { type: 'boolean' },
      temperature: { type: 'number', minimum: 0, maximum: 1 },
      top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
      top_k: { type: 'integer', minimum: 0 },
      metadata: { type: 'object' },
    },
  },
} as const;

/** count_tokens takes a messages body without max_tokens. */
const countSchema = { body: { ...messagesSchema.body, required: ['messages'] } } as const;

type Block = { type: string; [k: string]: unknown };
interface MessagesBody {
  model?: string;
  max_tokens: number;
  system?: string | Block[];
  messages: { role: 'user' | 'assistant'; content: string | Block[] }[];
  tools?: { name: string; description?: string; input_schema?: unknown }[];
  tool_choice?: { type: string; name?: string; disable_parallel_tool_use?: boolean };
  stop_sequences?: string[];
  stream?: boolean;
  temperature?: number;
  top_p?: number;
}

function blockText(path: string, content: unknown): string {
  if (typeof content === 'string') return content;
  if (content === undefined || content === null) return '';
  if (!Array.isArray(content)) throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `${path}: expected a string or text blocks`, path);
  return content
    .map((b: Block, k) => {
      if (b.type !== 'text' || typeof b.text !== 'string')
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `${path}[${k}]: only text blocks are supported here, got ${JSON.stringify(b.type)}`, `${path}[${k}]`);
      return b.text;
    })
    .join('\n');
}

/** Anthropic messages to chat messages: tool_result blocks become tool turns, tool_use blocks tool calls. */
export function toChatMessages(body: MessagesBody): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (body.system !== undefined) out.push({ role: 'system', content: blockText('system', body.system) });
  body.messages.forEach((m, i) => {
    const path = `messages[${i}].content`;
    if (typeof m.content === 'string') {
      out.push({ role: m.role, content: m.content });
      return;
    }
    if (m.role === 'user') {
      const texts: string[] = [];
      m.content.forEach((b, k) => {
        if (b.type === 'tool_result') {
          if (typeof b.tool_use_id !== 'string')
            throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `${path}[${k}].tool_use_id: expected a string`, `${path}[${k}].tool_use_id`);
          out.push({ role: 'tool', tool_call_id: b.tool_use_id, content: blockText(`${path}[${k}].content`, b.content) });
        } else if (b.type === 'text' && typeof b.text === 'string') texts.push(b.text);
        else throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `${path}[${k}]: unsupported block type ${JSON.stringify(b.type)} in a user message`, `${path}[${k}]`);
      });
      if (texts.length > 0) out.push({ role: 'user', content: texts.join('\n') });
      return;
    }
    let reasoning: string | undefined;
    const texts: string[] = [];
    const calls: ToolCall[] = [];
    m.content.forEach((b, k) => {
      if (b.type === 'text' && typeof b.text === 'string') texts.push(b.text);
      else if (b.type === 'thinking' && typeof b.thinking === 'string') reasoning = (reasoning ?? '') + b.thinking;
      else if (b.type === 'tool_use' && typeof b.id === 'string' && typeof b.name === 'string')
        calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: (b.input ?? {}) as Record<string, unknown> } });
      else throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `${path}[${k}]: unsupported or malformed ${JSON.stringify(b.type)} block in an assistant message`, `${path}[${k}]`);
    });
    // Several text blocks stay parts (rendered joined by "\n"): a streamed answer comes back cut into
    // blocks around its reasoning and tool calls, and the gateway recognises it by the parts.
    const msg: ChatMessage = { role: 'assistant', content: texts.length > 1 ? texts.map((text): TextPart => ({ type: 'text', text })) : texts.join('') };
    if (reasoning !== undefined) msg.reasoning_content = reasoning;
    if (calls.length > 0) msg.tool_calls = calls;
    out.push(msg);
  });
  return out;
}

/** Anthropic's tool_choice as the gateway's, checked against the tools the request offers. */
function toolChoice(body: MessagesBody): ToolChoice {
  const tc = body.tool_choice;
  const names = (body.tools ?? []).map((t) => t.name);
  switch (tc?.type ?? 'auto') {
    case 'auto':
      return 'auto';
    case 'none':
      return 'none';
    case 'any':
      if (names.length === 0)
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'tool_choice: type "any" needs tools, and none were given', 'tool_choice');
      return 'required';
    case 'tool':
      if (typeof tc?.name !== 'string' || !names.includes(tc.name))
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
          `tool_choice.name: expected the name of a given tool, got ${JSON.stringify(tc?.name)}`, 'tool_choice.name');
      return { name: tc.name };
    default:
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
        `tool_choice.type: expected "auto", "any", "tool" or "none", got ${JSON.stringify(tc?.type)}`, 'tool_choice.type');
  }
}

function toChatRequest(body: MessagesBody, defaultModel: string): ChatRequest {
  body.tools?.forEach((t, i) => {
    const schema = t.input_schema;
    if (schema !== undefined && (typeof schema !== 'object' || schema === null || Array.isArray(schema)))
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
        `tools[${i}].input_schema: expected a JSON Schema object, got ${schema === null ? 'null' : Array.isArray(schema) ? 'an array' : typeof schema}`, `tools[${i}].input_schema`);
  });
  const choice = toolChoice(body);
  return {
    protocol: 'anthropic',
    model: body.model ?? defaultModel,
    messages: toChatMessages(body),
    tools: body.tools && body.tools.length > 0 ? body.tools : undefined,
    toolChoice: choice,
    ...(body.tool_choice?.disable_parallel_tool_use === true && choice !== 'none' ? { parallelToolCalls: false } : {}),
    sampling: { temperature: body.temperature, topP: body.top_p, maxTokens: body.max_tokens, stop: body.stop_sequences },
    n: 1,
    raw: body,
  };
}

function stopReason(o: ChoiceOutcome): string {
  if (o.finishReason === 'tool_calls') return 'tool_use';
  if (o.finishReason === 'length') return 'max_tokens';
  if (o.result.stopSequence !== undefined) return 'stop_sequence';
  return 'end_turn';
}

function contentBlocks(o: ChoiceOutcome): Block[] {
  const blocks: Block[] = [];
  if (o.result.reasoning !== undefined) blocks.push({ type: 'thinking', thinking: o.result.reasoning, signature: '' });
  if (o.result.content !== '' || o.toolCalls.length === 0) blocks.push({ type: 'text', text: o.result.content });
  for (const c of o.toolCalls) blocks.push({ type: 'tool_use', id: c.id, name: c.name, input: c.arguments });
  return blocks;
}

export function anthropicRoutes(ctx: GatewayContext, store: SessionStore) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.post('/v1/messages/count_tokens', { schema: countSchema }, async (request) => {
      const session = store.resolve(request);
      const req = toChatRequest(request.body as MessagesBody, ctx.upstream.models()[0]?.id ?? 'default');
      return { input_tokens: countChatTokens(ctx, session, req) };
    });

    app.post('/v1/messages', { schema: messagesSchema }, async (request, reply) => {
      const session = store.resolve(request);
      const body = request.body as MessagesBody;
      const req = toChatRequest(body, ctx.upstream.models()[0]?.id ?? 'default');
      const id = `msg_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 10)}`;
      const signal = clientSignal(request, reply);
      const head = { id, type: 'message', role: 'assistant', model: req.model };

      if (!body.stream) {
        const [o] = await runChat(ctx, session, req, () => {}, signal);
        return {
          ...head, content: contentBlocks(o), stop_reason: stopReason(o), stop_sequence: o.result.stopSequence ?? null,
          usage: { input_tokens: o.result.promptTokens, output_tokens: o.result.completionTokens, cache_read_input_tokens: o.result.cachedPromptTokens },
          forge: { session_id: session.info.id, call_ids: [o.callId] },
        };
      }

      const sse = new SseWriter(reply);
      const emit = (type: string, data: Record<string, unknown>) => sse.send({ type, ...data }, type);
      let index = -1;
      let open: 'text' | 'thinking' | null = null;
      const begin = () => {
        if (index >= 0 || sse.headersSent) return;
        emit('message_start', { message: { ...head, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } } });
      };
      const close = () => {
        if (open !== null) emit('content_block_stop', { index });
        open = null;
      };
      const openBlock = (kind: 'text' | 'thinking') => {
        if (open === kind) return;
        close();
        open = kind;
        index++;
        emit('content_block_start', { index, content_block: kind === 'text' ? { type: 'text', text: '' } : { type: 'thinking', thinking: '', signature: '' } });
      };
      try {
        const [o] = await runChat(ctx, session, req, (_choice, e) => {
          if (e.type === 'content') {
            begin();
            openBlock('text');
            emit('content_block_delta', { index, delta: { type: 'text_delta', text: e.text } });
          } else if (e.type === 'reasoning') {
            begin();
            openBlock('thinking');
            emit('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: e.text } });
          } else if (e.type === 'tool_call') {
            begin();
            close();
            index++;
            emit('content_block_start', { index, content_block: { type: 'tool_use', id: e.call.id, name: e.call.name, input: {} } });
            emit('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: e.call.argumentsText } });
            emit('content_block_stop', { index });
          }
        }, signal);
        begin();
        if (index < 0) openBlock('text'); // an empty completion still has its (empty) text block
        close();
        emit('message_delta', {
          delta: { stop_reason: stopReason(o), stop_sequence: o.result.stopSequence ?? null },
          usage: { input_tokens: o.result.promptTokens, output_tokens: o.result.completionTokens },
        });
        emit('message_stop', {});
        sse.end();
      } catch (err) {
        sse.fail(err, 'anthropic');
      }
      return reply;
    });
  };
}
