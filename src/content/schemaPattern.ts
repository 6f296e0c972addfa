/**
 * The patterns a schema may hold: a small, fixed subset of ECMAScript regular expressions, read by this parser
 * before V8 compiles them with its linear-time engine (schema.ts compilePattern). The subset is ours, not whatever
 * the V8 of one node accepts, so that every node of a cluster — whatever its Node release — accepts the same
 * patterns; and the parser measures each pattern's size as the engine will expand it (counted repetitions copied
 * out), since the engine's work is the subject's length times that size. schema.ts bounds the work per write with it.
 *
 *   pattern     := alternative ('|' alternative)*
 *   alternative := (atom quantifier?)*
 *   atom        := '(' ('?:')? pattern ')' | '[' '^'? classItem+ ']' | '\' escape | '.' | '^' | '$' | literal
 *   quantifier  := ('*' | '+' | '?' | '{' n '}' | '{' n ',' '}' | '{' n ',' m '}') '?'?
 *                  (the copies repetitions expand to, multiplied down nested ones, at most 16)
 *   escape      := d D w W s S b B n r t f v | xHH | uHHHH | one of ^ $ \ . * + ? ( ) [ ] { } | / -
 */

/** The largest count of a counted repetition (V8's linear engine refuses more in the releases this project runs on). */
export const patternRepetitionMax = 16;
/** The largest size a pattern may expand to (see patternShape). */
export const patternSizeMax = 1000;

const classEscapes = new Set([...'dDwWsSnrtfv']);
const atomEscapes = new Set([...classEscapes, 'b', 'B']);
const punctuationEscapes = new Set([...'^$\\.*+?()[]{}|/-']);
/** The escapes of one control character, by their letter. */
const controlEscapes: Readonly<Record<string, number>> = { n: 10, r: 13, t: 9, f: 12, v: 11 };
const hex = /^[0-9A-Fa-f]$/;

class PatternError extends Error {}

/** The pattern's expanded size, or what is wrong with it (a message naming the character's position). */
export function patternShape(source: string): { readonly size: number } | { readonly problem: string } {
  let at = 0;
  const fail = (why: string): never => {
    throw new PatternError(`${why} at character ${at + 1}`);
  };
  const peek = () => source[at];

  const escape = (allowed: ReadonlySet<string>): void => {
    at++; // the backslash
    const c = source[at];
    if (c === undefined) fail('a lone "\\" at the end');
    if (allowed.has(c!) || punctuationEscapes.has(c!)) {
      at++;
      return;
    }
    const digits = c === 'x' ? 2 : c === 'u' ? 4 : 0;
    if (digits === 0) fail(`"\\${c}" is not an escape patterns take`);
    for (let i = 1; i <= digits; i++) if (!hex.test(source[at + i] ?? '')) fail(`"\\${c}" needs ${digits} hexadecimal digits`);
    at += 1 + digits;
  };

  /** One character of a class: its UTF-16 code unit, or null for a class escape (\d, \w, \s and their negations). */
  const classAtom = (): number | null => {
    if (peek() !== '\\') {
      const unit = source.charCodeAt(at);
      at++;
      return unit;
    }
    const start = at;
    const e = source[at + 1];
    escape(classEscapes);
    if (e === 'x' || e === 'u') return parseInt(source.slice(start + 2, at), 16);
    const control = e === undefined ? undefined : controlEscapes[e];
    if (control !== undefined) return control;
    return e !== undefined && punctuationEscapes.has(e) ? e.charCodeAt(0) : null;
  };

  const characterClass = (): void => {
    at++; // [
    if (peek() === '^') at++;
    let items = 0;
    while (peek() !== ']') {
      const c = peek();
      if (c === undefined) fail('a "[" without its "]"');
      if (c === '[') fail('a "[" inside a class (escape it)');
      const low = classAtom();
      if (peek() === '-' && source[at + 1] !== ']' && source[at + 1] !== undefined) {
        at++; // -
        if (peek() === '[') fail('a "[" inside a class (escape it)');
        const high = classAtom();
        if (low === null || high === null) fail('a range in a class needs one character at each end');
        if (high! < low!) fail('a range in a class that ends before it starts');
      }
      items++;
    }
    if (items === 0) fail('an empty class "[]"');
    at++; // ]
  };

  const count = (): number => {
    const start = at;
    while (/[0-9]/.test(peek() ?? '')) at++;
    if (at === start || at - start > 2) fail('a repetition needs a count of 0 to 16');
    const n = Number(source.slice(start, at));
    if (n > patternRepetitionMax) fail(`a repetition counts to ${n}; at most ${patternRepetitionMax}`);
    return n;
  };

  /**
   * What a quantifier makes of the atom before it: `size`, the copies the engine's work counts (two for * + ?);
   * `copies`, the copies the engine expands it into (x{n,} and x+ are n and 1 copies and a starred one), which
   * multiply down nested repetitions and may not pass patternRepetitionMax (V8's linear engine refuses more).
   */
  const quantifier = (): { size: number; copies: number } => {
    const c = peek();
    let size = 1;
    let copies = 1;
    if (c === '*' || c === '?') {
      at++;
      size = 2;
    } else if (c === '+') {
      at++;
      size = 2;
      copies = 2;
    } else if (c === '{') {
      at++;
      const low = count();
      let high = low;
      let open = false;
      if (peek() === ',') {
        at++;
        open = peek() === '}';
        high = open ? low + 1 : count();
        if (high < low) fail('a repetition whose maximum is below its minimum');
      }
      if (peek() !== '}') fail('a "{" without its "}" (escape a literal one)');
      at++;
      size = Math.max(1, high);
      copies = Math.max(1, open ? low + 1 : high);
    } else return { size, copies };
    if (peek() === '?') at++; // lazy: the same work
    const next = peek();
    if (next === '*' || next === '+' || next === '?' || next === '{') fail('two quantifiers in a row');
    return { size, copies };
  };

  /** A part of the pattern: its size, and the largest product of repetition copies along any nesting in it. */
  interface Part {
    size: number;
    copies: number;
  }

  const alternatives = (depth: number): Part => {
    if (depth > 32) fail('groups nested more than 32 deep');
    const part = sequence(depth);
    while (peek() === '|') {
      at++;
      const next = sequence(depth);
      part.size += next.size;
      part.copies = Math.max(part.copies, next.copies);
    }
    return part;
  };

  const sequence = (depth: number): Part => {
    const part: Part = { size: 0, copies: 1 };
    for (;;) {
      const c = peek();
      if (c === undefined || c === '|' || c === ')') return part;
      let atom: Part = { size: 1, copies: 1 };
      // Assertions match no character: nothing to repeat (a quantifier after one is an error in every engine).
      const assertion = c === '^' || c === '$' || (c === '\\' && (source[at + 1] === 'b' || source[at + 1] === 'B'));
      if (c === '(') {
        at++;
        if (peek() === '?') {
          if (source[at + 1] !== ':') fail('only "(?:" groups are taken (no lookaround, names or flags)');
          at += 2;
        }
        atom = alternatives(depth + 1);
        atom.size = Math.max(1, atom.size);
        if (peek() !== ')') fail('a "(" without its ")"');
        at++;
      } else if (c === '[') characterClass();
      else if (c === '\\') escape(atomEscapes);
      else if (c === ')' || c === ']' || c === '}' || c === '{' || c === '*' || c === '+' || c === '?') fail(`a "${c}" with nothing to apply to (escape a literal one)`);
      else at++;
      if (assertion) {
        const next = peek();
        if (next === '*' || next === '+' || next === '?' || next === '{') fail('a quantifier after an assertion (^, $, \\b, \\B)');
      }
      const q = quantifier();
      const copies = atom.copies * q.copies;
      if (copies > patternRepetitionMax) fail(`repetitions inside repetitions make ${copies} copies; at most ${patternRepetitionMax}`);
      part.copies = Math.max(part.copies, copies);
      part.size += atom.size * q.size;
      if (part.size > patternSizeMax) fail(`the pattern expands to more than ${patternSizeMax} steps (fewer repetitions or alternatives)`);
    }
  };

  try {
    const { size } = alternatives(0);
    if (at < source.length) fail('a ")" without its "("');
    return { size: Math.max(1, size) };
  } catch (err) {
    if (err instanceof PatternError) return { problem: err.message };
    throw err;
  }
}
