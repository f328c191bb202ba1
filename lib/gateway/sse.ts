// A server-sent-events writer that sends its headers only with the first event, so that errors found
// before anything was produced (bad template input, limits) are still ordinary HTTP errors in the
// protocol's shape. Once hijacked, fastify no longer touches the reply.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errorBody, toGatewayError, type Protocol } from './errors.js';

export class SseWriter {
  private started = false;

  constructor(private readonly reply: FastifyReply) {}

  get headersSent(): boolean {
    return this.started;
  }

  /** Writes one event: `data: <json>` (OpenAI) or `event: <name>` + data (Anthropic). */
  send(data: unknown, event?: string): void {
    this.start();
    if (this.reply.raw.destroyed) return;
    const body = typeof data === 'string' ? data : JSON.stringify(data);
    this.reply.raw.write(`${event ? `event: ${event}\n` : ''}data: ${body}\n\n`);
  }

  end(): void {
    this.start();
    if (!this.reply.raw.destroyed) this.reply.raw.end();
  }

  /** A streamed answer failed: before anything was sent the error is rethrown (an ordinary HTTP error);
   *  after, it travels as the last event, in the protocol's error shape. */
  fail(err: unknown, protocol: Protocol): void {
    if (!this.started) throw err;
    const body = errorBody(protocol, toGatewayError(err));
    if (protocol === 'anthropic') this.send(body, 'error');
    else this.send(body);
    this.end();
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
  }
}

/** Aborted when the client goes away before the response is complete (cancels the upstream call). */
export function clientSignal(request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  request.raw.on('aborted', () => controller.abort());
  return controller.signal;
}
