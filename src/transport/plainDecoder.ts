import { Decoder, type DecoderOptions } from '@msgpack/msgpack';
// The library's own UTF-8 decoding of strings it does not cache (not re-exported from its index): a key decodes to
// exactly the string it did before this decoder — even bytes that are not valid UTF-8, which the library's
// JavaScript decoder reads differently from TextDecoder — so an entry journaled earlier reads the same everywhere.
import { utf8Decode } from '@msgpack/msgpack/dist.esm/utils/utf8.mjs';

/**
 * MessagePack decoding in which every map key is plain data. @msgpack/msgpack refuses a map key "__proto__" (it
 * builds maps as ordinary objects, where assigning that key would replace the prototype), yet its encoder writes
 * such a key without complaint: a journal entry or a frame it wrote could then never be read back — a cluster that
 * journaled one stopped making progress and its master could not restart (issue 13). Here such a key decodes as
 * an own, enumerable data property, in its place among the others; the prototype is never touched.
 *
 * How: the library hands every map key to a key decoder before its own check, so ours renames "__proto__" (and, to
 * keep the renaming one-to-one, any key that already starts with the marker) by prefixing the marker; once the
 * value is decoded, the few objects holding a renamed key are rebuilt with the original names, defined rather than
 * assigned. Values without such keys — all but a handful — cost no second pass.
 */

/** A prefix no honest key starts with; a key that does is escaped too, so renaming stays reversible. */
const marker = '\u0000conclave-escaped-key\u0000';

interface KeyDecoder {
  canBeCached(byteLength: number): boolean;
  decode(bytes: Uint8Array, inputOffset: number, byteLength: number): string;
}

/** The library's own cache of short keys (a field of every Decoder, shared between them). */
const sharedKeyCache = (new Decoder() as unknown as { keyDecoder: KeyDecoder | null }).keyDecoder;

/** A decoder whose `decode` accepts any map key; takes the library's options (bounds) otherwise. */
export class PlainDecoder {
  private escaped = false;
  private readonly decoder: Decoder;

  constructor(options: Omit<DecoderOptions, 'keyDecoder'> = {}) {
    const keys: KeyDecoder = {
      // Every key passes through decode (the library decodes the others itself, past our check).
      canBeCached: () => true,
      decode: (bytes, offset, byteLength) => {
        const key =
          sharedKeyCache !== null && sharedKeyCache.canBeCached(byteLength)
            ? sharedKeyCache.decode(bytes, offset, byteLength)
            : utf8Decode(bytes, offset, byteLength);
        if (key !== '__proto__' && !key.startsWith(marker)) return key;
        this.escaped = true;
        return marker + key;
      },
    };
    this.decoder = new Decoder({ ...options, keyDecoder: keys });
  }

  /** Decodes exactly one value (throws the library's errors on anything else, as Decoder.decode does). */
  decode(bytes: Uint8Array): unknown {
    this.escaped = false;
    const value = this.decoder.decode(bytes);
    if (!this.escaped) return value;
    this.escaped = false;
    return restoreKeys(value);
  }
}

/**
 * The value with every escaped key back to its name, as own data properties in the original order. Iterative:
 * a value nests as deep as its bytes allow, deeper than the call stack.
 */
function restoreKeys(root: unknown): unknown {
  const holder = { root };
  const stack: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = [{ parent: holder, key: 'root' }];
  while (stack.length > 0) {
    const { parent, key } = stack.pop()!;
    const value = (parent as Record<string | number, unknown>)[key];
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push({ parent: value, key: i });
    } else if (typeof value === 'object' && value !== null && !(value instanceof Uint8Array) && !(value instanceof Date)) {
      const record = value as Record<string, unknown>;
      const names = Object.keys(record);
      if (names.some((name) => name.startsWith(marker))) {
        const rebuilt: Record<string, unknown> = {};
        for (const name of names) {
          Object.defineProperty(rebuilt, name.startsWith(marker) ? name.slice(marker.length) : name, {
            value: record[name],
            enumerable: true,
            writable: true,
            configurable: true,
          });
        }
        (parent as Record<string | number, unknown>)[key] = rebuilt;
        for (const name of Object.keys(rebuilt)) stack.push({ parent: rebuilt, key: name });
      } else {
        for (const name of names) stack.push({ parent: record, key: name });
      }
    }
  }
  return holder.root;
}

/** Decodes one value with no bounds beyond the bytes' own (the journal's entries, which this node wrote). */
const unbounded = new PlainDecoder();
export function decodePlain(bytes: Uint8Array): unknown {
  return unbounded.decode(bytes);
}
