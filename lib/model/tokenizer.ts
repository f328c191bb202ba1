// The nano policy's tokenizer: byte-level. Ids 0..255 are the UTF-8 bytes of the text; special tokens
// follow at fixed ids. There are no merges, so the ids of a concatenation are the concatenation of the
// ids: that is what makes chat-template rendering prefix-stable and the gateway's records token-exact.
//
// Conventions (tested in test/tokenizer.test.ts):
// - encode(text) never produces a special id. Special-token text typed in content ("<|user|>") is
//   ordinary text and encodes as its bytes; specials enter a sequence only through the chat template.
// - A JS string may hold lone surrogates, which UTF-8 cannot carry: encode writes each as U+FFFD (as
//   TextEncoder does), so decode(encode(s)) === s.toWellFormed().
// - decode follows the WHATWG UTF-8 decoder (the "maximal subpart" rule): each ill-formed byte run
//   becomes one U+FFFD; a leading BOM is kept. Special ids decode to their text ("<|end|>"); a special
//   in the middle of a multi-byte character ends it (U+FFFD). decode(ids) equals the UTF-8 decoding of
//   decodeBytes(ids).
// - StreamDecoder emits a character only once its last byte has arrived; a stream that ends (end())
//   in the middle of a character emits U+FFFD for the incomplete bytes.
import { rangeError, typeError } from '../errors.js';

/** Number of byte tokens: ids 0..255. */
export const BYTE_TOKENS = 256;

/** Special token ids. Fixed forever: new specials take reserved slots, existing ids never move. */
export const SpecialToken = {
  /** Start of a document / conversation. */
  BOS: 256,
  /** End of a document (a plain-text stop token). */
  EOS: 257,
  /** Padding; never rendered by the template. */
  PAD: 258,
  SYSTEM: 259,
  USER: 260,
  ASSISTANT: 261,
  /** Opens a tool-result turn. */
  TOOL: 262,
  /** Ends a turn. */
  END: 263,
  TOOL_CALL: 264,
  TOOL_CALL_END: 265,
  THINK: 266,
  THINK_END: 267,
} as const;
export type SpecialToken = (typeof SpecialToken)[keyof typeof SpecialToken];

const NAMED_SPECIALS = [
  'bos', 'eos', 'pad', 'system', 'user', 'assistant', 'tool', 'end', 'tool_call', '/tool_call', 'think', '/think',
];
/** Slots kept free after the named specials, so adding one later does not change the model's shapes. */
export const RESERVED_SPECIALS = 20;

/** Size of the vocabulary: bytes, named specials, reserved slots (288). The model config reads it. */
export const vocabSize = BYTE_TOKENS + NAMED_SPECIALS.length + RESERVED_SPECIALS;

const SPECIAL_TEXT: readonly string[] = [
  ...NAMED_SPECIALS.map((name) => `<|${name}|>`),
  ...Array.from({ length: RESERVED_SPECIALS }, (_, k) => `<|reserved_${k}|>`),
];
const SPECIAL_BY_TEXT = new Map(SPECIAL_TEXT.map((text, k) => [text, BYTE_TOKENS + k]));

const textEncoder = new TextEncoder();
const SPECIAL_BYTES: readonly Uint8Array[] = SPECIAL_TEXT.map((text) => textEncoder.encode(text));

/** True for the ids of special tokens (>= 256 and < vocabSize). */
export function isSpecial(id: number): boolean {
  return id >= BYTE_TOKENS && id < vocabSize;
}

/** The text of a special id ("<|end|>"). */
export function specialText(id: number): string {
  if (!Number.isInteger(id) || !isSpecial(id))
    throw rangeError(`id: expected a special token id in [${BYTE_TOKENS}, ${vocabSize}), got ${id}`);
  return SPECIAL_TEXT[id - BYTE_TOKENS];
}

/** The id of a special token given its text ("<|end|>" -> 263), or undefined. */
export function specialId(text: string): number | undefined {
  return SPECIAL_BY_TEXT.get(text);
}

/** Checks `ids` is an array (or integer TypedArray) of ids in [0, vocabSize); errors name `name[i]`. */
export function expectTokenIds(name: string, ids: unknown): ArrayLike<number> {
  const ok =
    Array.isArray(ids) ||
    ids instanceof Int32Array || ids instanceof Uint32Array || ids instanceof Uint16Array ||
    ids instanceof Uint8Array || ids instanceof Float64Array;
  if (!ok) throw typeError(`${name}: expected an array or integer TypedArray of token ids`);
  const arr = ids as ArrayLike<number>;
  for (let i = 0; i < arr.length; i++) checkId(`${name}[${i}]`, arr[i]);
  return arr;
}

function checkId(name: string, id: unknown): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize)
    throw rangeError(`${name}: token id ${String(id)} out of range [0, ${vocabSize})`);
  return id;
}

/** The ids of `text`: its UTF-8 bytes (lone surrogates as U+FFFD). Never produces a special id. */
export function encode(text: string): Int32Array {
  if (typeof text !== 'string') throw typeError(`text: expected a string, got ${text === null ? 'null' : typeof text}`);
  return Int32Array.from(textEncoder.encode(text));
}

/** The bytes one token stands for: its byte, or the UTF-8 of a special's text. */
export function tokenBytes(id: number): Uint8Array {
  checkId('id', id);
  return id < BYTE_TOKENS ? Uint8Array.of(id) : SPECIAL_BYTES[id - BYTE_TOKENS].slice();
}

/** The bytes of `ids`, specials written as their text. */
export function decodeBytes(ids: ArrayLike<number>): Uint8Array {
  const arr = expectTokenIds('ids', ids);
  let n = 0;
  for (let i = 0; i < arr.length; i++) n += arr[i] < BYTE_TOKENS ? 1 : SPECIAL_BYTES[arr[i] - BYTE_TOKENS].length;
  const out = new Uint8Array(n);
  let at = 0;
  for (let i = 0; i < arr.length; i++) {
    const id = arr[i];
    if (id < BYTE_TOKENS) out[at++] = id;
    else {
      out.set(SPECIAL_BYTES[id - BYTE_TOKENS], at);
      at += SPECIAL_BYTES[id - BYTE_TOKENS].length;
    }
  }
  return out;
}

/** The text of `ids` (see the conventions at the top of this file). */
export function decode(ids: ArrayLike<number>): string {
  const arr = expectTokenIds('ids', ids);
  const decoder = new Utf8Decoder();
  const units = new Utf16Sink();
  for (let i = 0; i < arr.length; i++) decoder.feed(arr[i], units);
  decoder.flush(units);
  return units.take();
}

/** Collects UTF-16 code units and builds the string in chunks (one String.fromCharCode per chunk). */
class Utf16Sink {
  // Starts small (a streaming decoder usually holds a character or two) and grows to a chunk.
  private buf = new Uint16Array(16);
  private len = 0;
  private parts: string[] = [];

  push(unit: number): void {
    if (this.len === this.buf.length) {
      if (this.len < 4096) {
        const next = new Uint16Array(this.len * 2);
        next.set(this.buf);
        this.buf = next;
      } else this.spill();
    }
    this.buf[this.len++] = unit;
  }

  codePoint(cp: number): void {
    if (cp < 0x10000) this.push(cp);
    else {
      this.push(0xd800 + ((cp - 0x10000) >> 10));
      this.push(0xdc00 + ((cp - 0x10000) & 0x3ff));
    }
  }

  text(s: string): void {
    this.spill();
    this.parts.push(s);
  }

  take(): string {
    this.spill();
    const s = this.parts.length === 1 ? this.parts[0] : this.parts.join('');
    this.parts = [];
    return s;
  }

  private spill(): void {
    if (this.len === 0) return;
    this.parts.push(String.fromCharCode.apply(null, this.buf.subarray(0, this.len) as unknown as number[]));
    this.len = 0;
  }
}

const REPLACEMENT = 0xfffd;

/** The WHATWG UTF-8 decoder as a state machine over ids (specials end any pending character). */
class Utf8Decoder {
  // Bytes still needed, seen, the code point so far, and the allowed range of the next continuation
  // byte (narrower after E0, ED, F0, F4: that excludes overlongs, surrogates and code points above
  // U+10FFFF).
  needed = 0;
  seen = 0;
  private cp = 0;
  private lower = 0x80;
  private upper = 0xbf;

  /** Feeds one checked id into `out`. */
  feed(id: number, out: Utf16Sink): void {
    if (id >= BYTE_TOKENS) {
      this.flush(out);
      out.text(SPECIAL_TEXT[id - BYTE_TOKENS]);
      return;
    }
    this.byte(id, out);
  }

  /** Ends the input: an incomplete character becomes U+FFFD. */
  flush(out: Utf16Sink): void {
    if (this.needed !== 0) {
      this.reset();
      out.push(REPLACEMENT);
    }
  }

  private reset(): void {
    this.needed = this.seen = this.cp = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }

  private byte(b: number, out: Utf16Sink): void {
    if (this.needed === 0) {
      if (b < 0x80) out.push(b);
      else if (b >= 0xc2 && b <= 0xdf) {
        this.needed = 1;
        this.cp = b & 0x1f;
      } else if (b >= 0xe0 && b <= 0xef) {
        if (b === 0xe0) this.lower = 0xa0;
        if (b === 0xed) this.upper = 0x9f;
        this.needed = 2;
        this.cp = b & 0x0f;
      } else if (b >= 0xf0 && b <= 0xf4) {
        if (b === 0xf0) this.lower = 0x90;
        if (b === 0xf4) this.upper = 0x8f;
        this.needed = 3;
        this.cp = b & 0x07;
      } else out.push(REPLACEMENT);
      return;
    }
    if (b < this.lower || b > this.upper) {
      // The run so far is a maximal ill-formed subpart: one U+FFFD, then b starts afresh.
      this.reset();
      out.push(REPLACEMENT);
      this.byte(b, out);
      return;
    }
    this.lower = 0x80;
    this.upper = 0xbf;
    this.cp = (this.cp << 6) | (b & 0x3f);
    if (++this.seen === this.needed) {
      out.codePoint(this.cp);
      this.reset();
    }
  }
}

/**
 * Incremental decoder for streaming: push ids as they are sampled, get back the text that is complete.
 * A multi-byte character split across tokens comes out with its last byte; end() flushes (an
 * incomplete character becomes U+FFFD) and leaves the decoder empty, ready for reuse.
 */
export class StreamDecoder {
  private readonly utf8 = new Utf8Decoder();
  private readonly sink = new Utf16Sink();

  /** Bytes held back, waiting for the rest of their character (0..3). */
  get pendingBytes(): number {
    return this.utf8.needed > 0 ? this.utf8.seen + 1 : 0;
  }

  /** Feeds one id; returns the text it completes (often '', or one character). */
  push(id: number): string {
    this.utf8.feed(checkId('id', id), this.sink);
    return this.sink.take();
  }

  /** Feeds several ids; returns the text they complete. */
  pushAll(ids: ArrayLike<number>): string {
    const arr = expectTokenIds('ids', ids);
    for (let i = 0; i < arr.length; i++) this.utf8.feed(arr[i], this.sink);
    return this.sink.take();
  }

  /** Ends the stream: U+FFFD for an incomplete character; the decoder is then empty again. */
  end(): string {
    this.utf8.flush(this.sink);
    return this.sink.take();
  }
}
