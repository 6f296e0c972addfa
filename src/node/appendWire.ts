import type { ClusterMessage } from '../core/clusterMessages.js';
import type { EntryPayload } from '../core/types.js';
import { forgetPayloadBytes, keepPayloadBytes, payloadBytes } from '../storage/journal.js';
import { PlainDecoder } from '../transport/plainDecoder.js';
import { appendEntriesMax } from './messageShape.js';

/**
 * How an append's entries travel between nodes: each payload as a MessagePack `bin` holding the very bytes the
 * journal stores (journal.ts: payloadBytes). The master encodes a payload once, not once per follower and append,
 * and the follower stores the bytes it received instead of encoding what it has just decoded. Every other message,
 * and everything else in an append, travels as it is.
 */

export interface WireEntry {
  readonly index: number;
  readonly term: number;
  readonly payload: Uint8Array;
}

/**
 * The message as it goes on the wire. Bytes of entries already applied here (a lagging follower's) were encoded for
 * this append alone: they are not kept (journal.ts, encodedPayloads).
 */
export function toWire(message: ClusterMessage, appliedIndex: number): unknown {
  if (message.type !== 'appendRequest' || message.entries.length === 0) return message;
  const entries: WireEntry[] = message.entries.map((entry) => {
    const payload = payloadBytes(entry.payload);
    if (entry.index <= appliedIndex) forgetPayloadBytes(entry.payload);
    return { index: entry.index, term: entry.term, payload };
  });
  return { ...message, entries };
}

/**
 * The message as the coordinator takes it: an append's payloads decoded, their bytes kept for the journal. Returns
 * why not when a payload is not exactly one MessagePack value; anything else malformed is left for messageProblem
 * (messageShape.ts), which checks the decoded message whole. A peer of this protocol always sends `bin` payloads;
 * a payload already decoded (a map) is passed on for messageProblem to judge.
 */
export function fromWire(message: unknown): { readonly message: unknown } | { readonly problem: string; readonly index: number | null } {
  if (typeof message !== 'object' || message === null) return { message };
  const record = message as Record<string, unknown>;
  const entries = record['entries'];
  if (record['type'] !== 'appendRequest' || !Array.isArray(entries) || entries.length === 0 || entries.length > appendEntriesMax) return { message };
  const decoded: unknown[] = new Array(entries.length);
  for (let i = 0; i < entries.length; i++) {
    const entry: unknown = entries[i];
    const payload = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>)['payload'] : undefined;
    if (!(payload instanceof Uint8Array)) {
      decoded[i] = entry;
      continue;
    }
    let value: unknown;
    try {
      value = payloadDecoder(payload.byteLength).decode(payload);
    } catch (err) {
      const index = (entry as Record<string, unknown>)['index'];
      return {
        problem: `the entry at index ${String(index)} has a payload that is not one MessagePack value (${(err as Error).message})`,
        index: typeof index === 'number' && Number.isSafeInteger(index) ? index : null,
      };
    }
    // Only maps reach the journal (messageProblem refuses anything else as an entry without a payload).
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array)) {
      keepPayloadBytes(value as EntryPayload, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength));
    }
    decoded[i] = { ...(entry as Record<string, unknown>), payload: value };
  }
  return { message: { ...record, entries: decoded } };
}

/**
 * Every element of a MessagePack value takes at least one byte, so no honest payload declares more elements than it
 * has bytes: the bounds stop a tiny payload from announcing a huge container. One decoder per bound in use (the
 * bound only grows, to the largest payload seen, so there are few).
 */
let decoderBound = 0;
let decoder: PlainDecoder | null = null;
function payloadDecoder(bytes: number): PlainDecoder {
  if (decoder === null || bytes > decoderBound) {
    decoderBound = Math.max(bytes, 64 * 1024);
    decoder = new PlainDecoder({ maxArrayLength: decoderBound, maxMapLength: decoderBound, maxStrLength: decoderBound, maxBinLength: decoderBound });
  }
  return decoder;
}
