// Reads a server-sent-events body (what an OpenAI-compatible server streams) as the data of its
// events, in order. Only `data:` lines matter to the OpenAI protocol; an event's data lines are
// joined with "\n" and the event ends at a blank line. A body that ends inside an event yields
// nothing for it: a stream cut mid-way must not look like a complete last event.

/** The data of each event in `body`; `[DONE]` is yielded like any other data. */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        if (nl === buffer.length - 1 && buffer[nl] === '\r') break; // its "\n" may be in the next chunk
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
        if (line === '') {
          if (data.length > 0) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
        } // event:, id:, retry: and comments (":") carry nothing the OpenAI protocol uses
      }
    }
  } finally {
    // Cancels the body when the consumer stops early (abort, error): the connection is released.
    reader.cancel().catch(() => {});
  }
}
