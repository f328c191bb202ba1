// Reads a server-sent-events body (what an OpenAI-compatible server streams) as the data of its
// events, in order. Only `data:` lines matter to the OpenAI protocol; an event's data lines are
// joined with "\n" and the event ends at a blank line. A body that ends inside an event yields
// nothing for it: a stream cut mid-way must not look like a complete last event.
//
// Push-style (text in, events out through a callback, synchronously) rather than an async
// generator: a stream of many small chunks then costs no promise per event.
// Lines end with "\n", "\r\n" or "\r". A chunk without "\r" (what servers send) is split with
// indexOf alone; "\r" is folded into "\n" first where it occurs, a "\r\n" split across two chunks
// included.

export class SseDecoder {
  private buffer = '';
  private data: string[] = [];
  private endedWithCR = false;

  /** Feeds the next piece of the body (any chunking); calls `onData` with each event completed by it. */
  push(text: string, onData: (data: string) => void): void {
    if (this.endedWithCR && text.charCodeAt(0) === 10) text = text.slice(1); // the "\n" of a split "\r\n"
    this.endedWithCR = false;
    if (text.includes('\r')) {
      this.endedWithCR = text.charCodeAt(text.length - 1) === 13;
      text = text.replace(/\r\n?/g, '\n');
    }
    const buffer = this.buffer === '' ? text : this.buffer + text;
    // The unfinished last line is kept before any event is handed out (onData may throw: the reader
    // then stops, and nothing else of this piece matters).
    this.buffer = buffer.slice(buffer.lastIndexOf('\n') + 1);
    let start = 0;
    let nl: number;
    while ((nl = buffer.indexOf('\n', start)) >= 0) {
      const line = buffer.slice(start, nl);
      start = nl + 1;
      if (line === '') {
        if (this.data.length === 0) continue;
        const data = this.data.length === 1 ? this.data[0] : this.data.join('\n');
        this.data = [];
        onData(data);
      } else if (line.startsWith('data:')) {
        this.data.push(line.slice(line.charCodeAt(5) === 32 ? 6 : 5));
      } // event:, id:, retry: and comments (":") carry nothing the OpenAI protocol uses
    }
  }
}
