import fc from 'fast-check';

/**
 * Arbitrary JSON documents for the round-trip property tests (issue 13): every key the JSON grammar allows —
 * the names JavaScript treats specially ("__proto__", "constructor", "prototype", "toString"), the empty name,
 * JSON-Pointer characters, unicode outside the BMP, lone surrogates (JSON's escapes can spell them), very long
 * names — deep and wide values, and numbers at the edges of a double.
 */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const specialKeys = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', '0', '-0', '01', '1e3', '~', '/', 'a/b~c', ' '];

export const jsonKey: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...specialKeys) },
  { weight: 3, arbitrary: fc.string({ maxLength: 8 }) },
  // 'binary' draws any UTF-16 code unit sequence: lone surrogates included.
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.string({ minLength: 200, maxLength: 400 }) },
);

export const edgeNumbers = [-0, 0, 1e308, -1e308, 5e-324, -5e-324, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, 2 ** 53 + 2, 2 ** 63, -(2 ** 63), 2 ** 64, 1.7976931348623157e308, 0.1, 4294967295, 4294967296, -2147483649];

export const jsonNumber: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(...edgeNumbers),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
);

export const jsonString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  // Long strings: the MessagePack encoder switches to TextEncoder beyond 200 bytes (and replaces lone surrogates).
  { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 200, maxLength: 600 }) },
);

/** An object built by definition, so that a "__proto__" key is an own property (as JSON.parse makes it). */
function objectOf(entries: ReadonlyArray<readonly [string, Json]>): { [key: string]: Json } {
  return Object.fromEntries(entries) as { [key: string]: Json };
}

const { value: jsonValue } = fc.letrec<{ value: Json }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    jsonNumber,
    jsonString,
    fc.array(tie('value'), { maxLength: 5 }),
    fc.array(fc.tuple(jsonKey, tie('value')), { maxLength: 6 }).map(objectOf),
  ),
}));

/** A value nested `depth` levels deep (objects and arrays alternating), around `leaf`. */
function nested(depth: number, leaf: Json, key: string): Json {
  let value = leaf;
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? objectOf([[key, value]]) : [value];
  return value;
}

/** A JSON object: the properties of a node, or a merge patch of them. */
export const jsonDocument: fc.Arbitrary<{ [key: string]: Json }> = fc.oneof(
  { weight: 6, arbitrary: fc.array(fc.tuple(jsonKey, jsonValue), { maxLength: 8 }).map(objectOf) },
  // Wide.
  { weight: 1, arbitrary: fc.array(fc.tuple(jsonKey, jsonValue), { minLength: 50, maxLength: 120 }).map(objectOf) },
  // Deep: around the 32 levels properties may nest.
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 20, max: 40 }), jsonValue, jsonKey).map(([depth, leaf, key]) => objectOf([['deep', nested(depth, leaf, key)]])) },
);

/** The codes the API may refuse `value` with beyond the JSON grammar (src/http/jsonBody.ts): none when accepted. */
export function refusalsOf(value: unknown): Array<'PROPERTY_NAME_REFUSED' | 'INVALID_UNICODE'> {
  const stack: unknown[] = [value];
  let proto = false;
  let unicode = false;
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (/\p{Cs}/u.test(v)) unicode = true;
    } else if (Array.isArray(v)) {
      stack.push(...(v as unknown[]));
    } else if (typeof v === 'object' && v !== null) {
      for (const key of Object.keys(v)) {
        if (key === '__proto__') proto = true;
        if (/\p{Cs}/u.test(key)) unicode = true;
        stack.push((v as Record<string, unknown>)[key]);
      }
    }
  }
  return [...(proto ? (['PROPERTY_NAME_REFUSED'] as const) : []), ...(unicode ? (['INVALID_UNICODE'] as const) : [])];
}

/** How deeply objects and arrays nest (the properties of a node may nest 32 levels). */
export function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    deepest = Math.max(deepest, depth + 1);
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}
