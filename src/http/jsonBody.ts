import { ConclaveError } from '../errors/catalogue.js';

/**
 * The one parser of JSON request bodies, for every JSON content type the API takes (application/json and
 * application/merge-patch+json alike): one set of rules, whatever the client labels its body.
 *
 * Beyond the grammar it refuses what the repository could not keep exactly as sent (docs/http-api.md, "JSON
 * bodies"):
 * - a property named "__proto__", anywhere (PROPERTY_NAME_REFUSED): no document needs it, and every JavaScript
 *   consumer that copies a document by assignment (Object.assign, most merge helpers) would turn it into a
 *   prototype. "constructor" and "prototype" are ordinary words and stay ordinary data.
 * - a string or name holding a lone UTF-16 surrogate (INVALID_UNICODE): JSON's escapes can spell one, but UTF-8
 *   cannot, so the journal's encoding would store U+FFFD on the other nodes while this one kept the original.
 * - a number beyond a double's range (INVALID_JSON): JSON.parse makes it Infinity, which JSON writes back as null.
 */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') throw new ConclaveError('INVALID_JSON', 'The body is empty; send a JSON document.');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConclaveError('INVALID_JSON', `The body is not valid JSON: ${syntaxProblem(err as Error)}.`);
  }
  checkStorable(value);
  return value;
}

/**
 * V8's message without its own "… is not valid JSON" tail (the sentence already says so) and without a trailing
 * full stop; the position it names stays.
 */
export function syntaxProblem(err: Error): string {
  return err.message.replace(/,? ".*? is not valid JSON$/s, '').replace(/\.$/, '');
}

/** Throws on the first thing parseJsonBody refuses beyond the grammar; walks iteratively (bodies nest deep). */
function checkStorable(root: unknown): void {
  const stack: Array<[unknown, string]> = [[root, '']];
  while (stack.length > 0) {
    const [value, path] = stack.pop()!;
    if (typeof value === 'string') {
      if (loneSurrogate.test(value)) throw notWellFormed('a string', path);
    } else if (typeof value === 'number') {
      if (!Number.isFinite(value)) {
        throw new ConclaveError('INVALID_JSON', `The number at ${pointer(path)} is beyond the range of a 64-bit float.`, { path: pointer(path) });
      }
    } else if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${path}/${i}`]);
    } else if (typeof value === 'object' && value !== null) {
      const names = Object.keys(value);
      for (let i = names.length - 1; i >= 0; i--) {
        const name = names[i]!;
        const at = `${path}/${escapePointer(name)}`;
        if (name === '__proto__') {
          throw new ConclaveError(
            'PROPERTY_NAME_REFUSED',
            `The property name "__proto__" (at ${at}) is refused: it is reserved in JavaScript; rename the property.`,
            { name, path: at },
          );
        }
        if (loneSurrogate.test(name)) throw notWellFormed('a property name', at);
        stack.push([(value as Record<string, unknown>)[name], at]);
      }
    }
  }
}

/** In Unicode mode a paired surrogate is one code point, so only a lone one is of category Cs. */
const loneSurrogate = /\p{Cs}/u;

function notWellFormed(what: string, path: string): ConclaveError {
  return new ConclaveError(
    'INVALID_UNICODE',
    `${what === 'a string' ? 'The string' : 'The property name'} at ${pointer(path)} holds a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF escape); send well-formed Unicode.`,
    { path: pointer(path) },
  );
}

/** A JSON Pointer (RFC 6901) as people read it: the whole body is "/". */
function pointer(path: string): string {
  return path === '' ? '/' : path;
}

function escapePointer(name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1');
}
