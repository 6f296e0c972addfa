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
 *   quantifier  := ('*' | '+' | '?' | '{' n '}' | '{' n ',' '}' | '{' n ',' m '}') '?'?     (n, m <= 16)
 *   escape      := d D w W s S b B n r t f v | xHH | uHHHH | one of ^ $ \ . * + ? ( ) [ ] { } | / -
 */

/** The largest count of a counted repetition (V8's linear engine refuses more in the releases this project runs on). */
export const patternRepetitionMax = 16;
/** The largest size a pattern may expand to (see patternShape). */
export const patternSizeMax = 1000;

const classEscapes = new Set([...'dDwWsSnrtfv']);
const atomEscapes = new Set([...classEscapes, 'b', 'B']);
const punctuationEscapes = new Set([...'^$\\.*+?()[]{}|/-']);
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

  const characterClass = (): void => {
    at++; // [
    if (peek() === '^') at++;
    let items = 0;
    while (peek() !== ']') {
      const c = peek();
      if (c === undefined) fail('a "[" without its "]"');
      if (c === '[') fail('a "[" inside a class (escape it)');
      if (c === '\\') escape(classEscapes);
      else at++;
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

  /** How many copies of the atom before it a quantifier makes the engine hold, or 1 without one. */
  const quantifier = (): number => {
    const c = peek();
    let copies = 1;
    if (c === '*' || c === '+' || c === '?') {
      at++;
      copies = 2;
    } else if (c === '{') {
      at++;
      const low = count();
      let high = low;
      if (peek() === ',') {
        at++;
        high = peek() === '}' ? low + 1 : count();
        if (high < low) fail('a repetition whose maximum is below its minimum');
      }
      if (peek() !== '}') fail('a "{" without its "}" (escape a literal one)');
      at++;
      copies = Math.max(1, high);
    } else return 1;
    if (peek() === '?') at++; // lazy: the same work
    const next = peek();
    if (next === '*' || next === '+' || next === '?' || next === '{') fail('two quantifiers in a row');
    return copies;
  };

  const alternatives = (depth: number): number => {
    if (depth > 32) fail('groups nested more than 32 deep');
    let size = sequence(depth);
    while (peek() === '|') {
      at++;
      size += sequence(depth);
    }
    return size;
  };

  const sequence = (depth: number): number => {
    let size = 0;
    for (;;) {
      const c = peek();
      if (c === undefined || c === '|' || c === ')') return size;
      let atom = 1;
      // Assertions match no character: nothing to repeat (a quantifier after one is an error in every engine).
      const assertion = c === '^' || c === '$' || (c === '\\' && (source[at + 1] === 'b' || source[at + 1] === 'B'));
      if (c === '(') {
        at++;
        if (peek() === '?') {
          if (source[at + 1] !== ':') fail('only "(?:" groups are taken (no lookaround, names or flags)');
          at += 2;
        }
        atom = Math.max(1, alternatives(depth + 1));
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
      size += atom * quantifier();
      if (size > patternSizeMax) fail(`the pattern expands to more than ${patternSizeMax} steps (fewer repetitions or alternatives)`);
    }
  };

  try {
    const size = alternatives(0);
    if (at < source.length) fail('a ")" without its "("');
    return { size: Math.max(1, size) };
  } catch (err) {
    if (err instanceof PatternError) return { problem: err.message };
    throw err;
  }
}
