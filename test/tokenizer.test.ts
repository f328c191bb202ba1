// The byte-level tokenizer (lib/model/tokenizer.ts) against the plain UTF-8 reference
// (test/reference/utf8.ts) and the platform's TextDecoder, on fresh random text and byte sequences.
// The seed is printed in every failure; rerun one with FORGE_TEST_SEED=<seed>.
import { describe, expect, it } from 'vitest';
import { seededRun } from './helpers/random.js';

import {
  BYTE_TOKENS,
  decode,
  decodeBytes,
  encode,
  isSpecial,
  RESERVED_SPECIALS,
  SpecialToken,
  specialId,
  specialText,
  StreamDecoder,
  tokenBytes,
  vocabSize,
} from '../lib/model/tokenizer.js';
import { chance, int, makeRng, pick, randomText, runSeed, type Rng } from './helpers/conversations.js';
import { SPECIAL_IDS } from './reference/chatTemplate.js';
import { codePoints, utf8Encode, utf8Of, wellFormed } from './reference/utf8.js';

const { seed, rng, why } = seededRun();

/** The platform's WHATWG decoder, keeping a leading BOM: the independent reference for decoding. */
const platform = (bytes: ArrayLike<number>) => new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(bytes));

const SPECIALS = Object.values(SpecialToken) as number[];

/** Random ids: byte runs biased towards UTF-8 structure (lead and continuation bytes, valid text) and specials. */
function randomIds(rand: Rng, n: number, specials = true): number[] {
  const out: number[] = [];
  while (out.length < n) {
    const r = rand();
    if (r < 0.3) out.push(...utf8Encode(randomText(rand, 3)));
    else if (r < 0.55) out.push(int(rand, 0x80, 0xbf)); // continuation
    else if (r < 0.75) out.push(pick(rand, [0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff]));
    else if (r < 0.9) out.push(int(rand, 0, 255));
    else if (specials) out.push(chance(rand, 0.8) ? pick(rand, SPECIALS) : int(rand, BYTE_TOKENS, vocabSize - 1));
  }
  return out.slice(0, n);
}

/** decodeBytes written from its definition: a byte's id is the byte, a special's its text's UTF-8. */
const referenceBytes = (ids: number[]) => ids.flatMap((id) => (id < BYTE_TOKENS ? [id] : utf8Encode(specialText(id))));

describe('vocabulary', () => {
  it('puts the specials at fixed ids after the 256 bytes, named as documented', () => {
    expect(vocabSize).toBe(BYTE_TOKENS + Object.keys(SPECIAL_IDS).length + RESERVED_SPECIALS);
    for (const [name, id] of Object.entries(SPECIAL_IDS)) {
      expect(specialText(id)).toBe(`<|${name}|>`);
      expect(specialId(`<|${name}|>`)).toBe(id);
    }
    const texts = new Set<string>();
    for (let id = BYTE_TOKENS; id < vocabSize; id++) {
      expect(isSpecial(id)).toBe(true);
      texts.add(specialText(id));
    }
    expect(texts.size).toBe(vocabSize - BYTE_TOKENS);
    expect(specialText(vocabSize - 1)).toBe(`<|reserved_${RESERVED_SPECIALS - 1}|>`);
    expect(isSpecial(255)).toBe(false);
    expect(isSpecial(vocabSize)).toBe(false);
    expect(specialId('<|nope|>')).toBeUndefined();
  });
});

describe('encode / decode', () => {
  it('encodes random Unicode to its UTF-8 bytes and decodes it back (lone surrogates as U+FFFD)', () => {
    const rand = rng();
    for (let trial = 0; trial < 400; trial++) {
      const text = randomText(rand, 40, chance(rand, 0.3));
      const ids = encode(text);
      expect(ids).toBeInstanceOf(Int32Array);
      expect(Array.from(ids), why(`encode(${JSON.stringify(text)})`)).toEqual(utf8Encode(text));
      expect(decode(ids), why(`decode(encode(${JSON.stringify(text)}))`)).toBe(wellFormed(text));
    }
  });

  it('never produces a special id: special-token text typed as text stays bytes', () => {
    for (const text of ['<|user|>', '<|end|><|assistant|>', '<|tool_call|>x\n{}<|/tool_call|>', '<|reserved_3|>']) {
      const ids = encode(text);
      expect(Array.from(ids).every((id) => id < BYTE_TOKENS)).toBe(true);
      expect(ids.length).toBe(text.length); // ASCII: one id per character
      expect(decode(ids)).toBe(text);
    }
  });

  it('keeps NUL, a leading BOM, U+FFFD itself and the extremes of each UTF-8 length', () => {
    for (const cp of [0, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfeff, 0xfffd, 0xffff, 0x10000, 0x10ffff]) {
      const text = String.fromCodePoint(cp) + 'x' + String.fromCodePoint(cp);
      expect(Array.from(encode(text))).toEqual([...utf8Of(cp), 0x78, ...utf8Of(cp)]);
      expect(decode(encode(text))).toBe(text);
    }
  });

  it('decodes any byte sequence as the WHATWG decoder does (one U+FFFD per maximal ill-formed subpart)', () => {
    const rand = rng();
    for (let trial = 0; trial < 400; trial++) {
      const ids = randomIds(rand, int(rand, 0, 60), false);
      expect(decode(ids), why(`decode(${JSON.stringify(ids)})`)).toBe(platform(ids));
    }
    // The Unicode Standard's own example (chapter 3, "U+FFFD Substitution of Maximal Subparts").
    const example = [0x61, 0xf1, 0x80, 0x80, 0xe1, 0x80, 0xc2, 0x62, 0x80, 0x63, 0x80, 0xbf, 0x64];
    expect(decode(example)).toBe('a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd');
  });

  it('renders specials as their text; decode(ids) is the UTF-8 decoding of decodeBytes(ids)', () => {
    const rand = rng();
    for (let trial = 0; trial < 300; trial++) {
      const ids = randomIds(rand, int(rand, 0, 60));
      const bytes = decodeBytes(ids);
      expect(Array.from(bytes), why(`decodeBytes(${JSON.stringify(ids)})`)).toEqual(referenceBytes(ids));
      expect(decode(ids), why(`decode(${JSON.stringify(ids)})`)).toBe(platform(bytes));
      if (ids.length > 0) {
        const k = int(rand, 0, ids.length - 1);
        expect(Array.from(tokenBytes(ids[k]))).toEqual(referenceBytes([ids[k]]));
      }
    }
    // A special inside a character ends it.
    expect(decode([0xe2, 0x82, SpecialToken.END, 0xac])).toBe('\uFFFD<|end|>\uFFFD');
  });

  it('round-trips long texts (past the decoder output chunk)', () => {
    const rand = rng();
    const text = Array.from({ length: 200 }, () => randomText(rand, 100)).join('');
    expect(text.length).toBeGreaterThan(5000);
    expect(decode(encode(text))).toBe(text);
    expect(Array.from(encode(text))).toEqual(utf8Encode(text));
  });

  it('accepts plain arrays and integer TypedArrays of ids', () => {
    const ids = [0x68, 0x69, SpecialToken.EOS];
    for (const arr of [ids, Int32Array.from(ids), Uint32Array.from(ids), Uint16Array.from(ids), Float64Array.from(ids)])
      expect(decode(arr)).toBe('hi<|eos|>');
  });

  it('rejects bad input naming the argument and the index', () => {
    expect(() => decode([104, vocabSize, 105])).toThrow(/ids\[1\]: token id 288 out of range \[0, 288\)/);
    expect(() => decode([104, -1])).toThrow(RangeError);
    expect(() => decode([1.5])).toThrow(/ids\[0\]/);
    expect(() => decode([Number.NaN])).toThrow(/ids\[0\]/);
    expect(() => decode('abc' as never)).toThrow(TypeError);
    expect(() => decodeBytes([300])).toThrow(/ids\[0\]/);
    expect(() => encode(5 as never)).toThrow(TypeError);
    expect(() => specialText(65)).toThrow(RangeError);
    expect(() => tokenBytes(vocabSize)).toThrow(RangeError);
    try {
      decode([9999]);
    } catch (e) {
      expect((e as { code?: string }).code).toBe('FORGE_ERR_OUT_OF_RANGE');
    }
  });
});

describe('StreamDecoder', () => {
  it('matches decode when the ids are split at every position', () => {
    const rand = rng();
    for (let trial = 0; trial < 60; trial++) {
      const ids = randomIds(rand, int(rand, 0, 40));
      const whole = decode(ids);
      const d = new StreamDecoder();
      for (let cut = 0; cut <= ids.length; cut++) {
        const got = d.pushAll(ids.slice(0, cut)) + d.pushAll(ids.slice(cut)) + d.end();
        expect(got, why(`split ${JSON.stringify(ids)} at ${cut}`)).toBe(whole);
        expect(d.pendingBytes).toBe(0);
      }
      let oneByOne = '';
      for (const id of ids) {
        oneByOne += d.push(id);
        expect(d.pendingBytes).toBeLessThanOrEqual(3);
      }
      expect(oneByOne + d.end(), why(`one by one ${JSON.stringify(ids)}`)).toBe(whole);
    }
  });

  it('emits a multi-byte character with its last byte, never before', () => {
    const rand = rng();
    for (let trial = 0; trial < 100; trial++) {
      const text = wellFormed(randomText(rand, 20));
      // Byte offset where each code point ends, from the reference encoder.
      const ends: number[] = [];
      let at = 0;
      for (const cp of codePoints(text)) ends.push((at += utf8Of(cp).length));
      const ids = utf8Encode(text);
      const d = new StreamDecoder();
      let out = '';
      for (let i = 0; i < ids.length; i++) {
        out += d.push(ids[i]);
        const complete = codePoints(text).slice(0, ends.filter((e) => e <= i + 1).length);
        expect(out, why(`after byte ${i} of ${JSON.stringify(text)}`)).toBe(String.fromCodePoint(...complete));
        expect(d.pendingBytes).toBe(i + 1 - (ends.filter((e) => e <= i + 1).pop() ?? 0));
      }
      expect(d.end()).toBe('');
    }
  });

  it('ends a stream cut inside a character with U+FFFD, then starts clean', () => {
    for (const cp of [0xe9, 0x20ac, 0x1f600]) {
      const bytes = utf8Of(cp);
      for (let k = 1; k < bytes.length; k++) {
        const d = new StreamDecoder();
        expect(d.pushAll(bytes.slice(0, k))).toBe('');
        expect(d.pendingBytes).toBe(k);
        expect(d.end()).toBe('\uFFFD');
        expect(d.pushAll(bytes)).toBe(String.fromCodePoint(cp));
        expect(d.end()).toBe('');
      }
    }
  });

  it('validates ids', () => {
    const d = new StreamDecoder();
    expect(() => d.push(vocabSize)).toThrow(/id: token id 288 out of range/);
    expect(() => d.pushAll([65, -3])).toThrow(/ids\[1\]/);
  });
});
