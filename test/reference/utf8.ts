// Plain UTF-8 reference for the tokenizer tests, written from the encoding's definition (RFC 3629),
// independent of lib/model/tokenizer.ts (which uses TextEncoder and its own decoder state machine).

/** The code points of a JS string; a lone surrogate becomes U+FFFD (what UTF-8 can carry). */
export function codePoints(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const u = s.charCodeAt(i);
    if (u >= 0xd800 && u <= 0xdbff && i + 1 < s.length) {
      const v = s.charCodeAt(i + 1);
      if (v >= 0xdc00 && v <= 0xdfff) {
        out.push(0x10000 + ((u - 0xd800) << 10) + (v - 0xdc00));
        i++;
        continue;
      }
    }
    out.push(u >= 0xd800 && u <= 0xdfff ? 0xfffd : u);
  }
  return out;
}

/** The UTF-8 bytes of one code point. */
export function utf8Of(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 63)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 63), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63)];
}

/** The UTF-8 bytes of a string (lone surrogates as U+FFFD). */
export function utf8Encode(s: string): number[] {
  return codePoints(s).flatMap(utf8Of);
}

/** The string with each lone surrogate replaced by U+FFFD. */
export function wellFormed(s: string): string {
  return codePoints(s).map((cp) => String.fromCodePoint(cp)).join('');
}
