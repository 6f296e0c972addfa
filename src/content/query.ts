import { ConclaveError } from '../errors/catalogue.js';
import { parsePath } from './paths.js';
import { parseNodeType } from './validate.js';

/**
 * Parses the query string of GET /api/v1/query into a QuerySpec. The SQL is built in src/storage; the rules of
 * what a query may say live here.
 *
 *   under=/a/b               strict descendants of /a/b
 *   type=article             node type equality
 *   prop.title=Hello         property equality (the value is read as JSON when it parses, else as a string)
 *   prop.price[gte]=10       ranges: gt, gte, lt, lte; and ne for inequality
 *   sort=-prop.price         path (default), name, created, modified or prop.NAME; "-" for descending
 *   limit=50                 page size, at most the configured query.pageSizeMax
 *   cursor=...               nextCursor of the previous page
 */

export type FilterOp = 'eq' | 'ne' | 'gt' | 'gte' | 'lt' | 'lte';
export type ScalarValue = string | number | null;

export interface PropertyFilter {
  /** Property path segments: prop.a.b → ['a', 'b']. */
  readonly property: readonly string[];
  readonly op: FilterOp;
  readonly value: ScalarValue;
}

export type SortKey =
  | { readonly kind: 'path' }
  | { readonly kind: 'name' }
  | { readonly kind: 'created' }
  | { readonly kind: 'modified' }
  | { readonly kind: 'property'; readonly property: readonly string[] };

export interface QueryCursor {
  readonly value: ScalarValue;
  readonly id: string;
}

export interface QuerySpec {
  readonly under?: string;
  readonly type?: string;
  readonly filters: readonly PropertyFilter[];
  readonly sort: SortKey;
  readonly descending: boolean;
  readonly limit: number;
  readonly cursor?: QueryCursor;
  /** A fingerprint of everything but the cursor, so a cursor cannot be replayed against another query. */
  readonly fingerprint: string;
}

/** Bounds the size of the generated SQL; more filters than this is a mistake, not a query. */
export const queryFiltersMax = 16;

const ops: readonly FilterOp[] = ['eq', 'ne', 'gt', 'gte', 'lt', 'lte'];
const filterKey = /^prop\.(.+?)(?:\[(eq|ne|gt|gte|lt|lte)\])?$/;
// Segments are quoted into a JSON path; quotes, dots, brackets and backslashes cannot be expressed there.
// eslint-disable-next-line no-control-regex
const propertySegment = /^[^".[\]\\\u0000-\u001f]+$/;

export function parsePropertyPath(text: string, field: string): string[] {
  const segments = text.split('.');
  if (segments.length > 8 || !segments.every((s) => propertySegment.test(s) && s.length <= 256)) {
    throw new ConclaveError('INVALID_REQUEST', `"${field}" names an unusable property path "${text}".`, { field });
  }
  return segments;
}

function parseValue(raw: string, field: string): ScalarValue {
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    return raw;
  }
  if (typeof value === 'boolean') return value ? 1 : 0; // SQLite's json_extract yields 1 and 0 for true and false
  if (typeof value === 'number' || typeof value === 'string' || value === null) return value;
  throw new ConclaveError('INVALID_REQUEST', `"${field}" compares with an object or array; only scalars are allowed.`, {
    field,
  });
}

export function single(value: unknown, field: string): string {
  if (Array.isArray(value)) {
    throw new ConclaveError('INVALID_REQUEST', `"${field}" is given more than once.`, { field });
  }
  return String(value);
}

export function parseSort(raw: string | undefined): { sort: SortKey; descending: boolean } {
  if (raw === undefined || raw === '') return { sort: { kind: 'path' }, descending: false };
  const descending = raw.startsWith('-');
  const key = descending ? raw.slice(1) : raw;
  if (key === 'path' || key === 'name' || key === 'created' || key === 'modified') return { sort: { kind: key }, descending };
  if (key.startsWith('prop.')) {
    return { sort: { kind: 'property', property: parsePropertyPath(key.slice(5), 'sort') }, descending };
  }
  throw new ConclaveError('INVALID_REQUEST', '"sort" is one of path, name, created, modified or prop.NAME, with "-" for descending.', {
    field: 'sort',
  });
}

export function parseLimit(raw: unknown, defaultLimit: number, limitMax: number): number {
  if (raw === undefined) return defaultLimit;
  const text = single(raw, 'limit');
  const limit = Number(text);
  if (!Number.isInteger(limit) || limit < 1 || limit > limitMax) {
    throw new ConclaveError('INVALID_REQUEST', `"limit" must be an integer from 1 to ${limitMax}.`, { field: 'limit', limitMax });
  }
  return limit;
}

export function parseQuery(
  params: Record<string, unknown>,
  limits: { pageSizeDefault: number; pageSizeMax: number },
): QuerySpec {
  let under: string | undefined;
  let type: string | undefined;
  let sortText: string | undefined;
  let cursorText: string | undefined;
  const filters: PropertyFilter[] = [];
  for (const [key, raw] of Object.entries(params)) {
    if (key === 'limit') continue;
    const value = single(raw, key);
    if (key === 'under') under = parsePath(value, 'under');
    else if (key === 'type') type = parseNodeType(value);
    else if (key === 'sort') sortText = value;
    else if (key === 'cursor') cursorText = value;
    else {
      const match = filterKey.exec(key);
      if (match === null) {
        throw new ConclaveError(
          'INVALID_REQUEST',
          `Unknown query parameter "${key}": use under, type, prop.NAME[op], sort, limit or cursor.`,
          { field: key },
        );
      }
      const op = (match[2] ?? 'eq') as FilterOp;
      if (!ops.includes(op)) throw new ConclaveError('INVALID_REQUEST', `Unknown operator in "${key}".`, { field: key });
      const filterValue = parseValue(value, key);
      if (filterValue === null && op !== 'eq' && op !== 'ne') {
        throw new ConclaveError('INVALID_REQUEST', `"${key}" cannot order against null.`, { field: key });
      }
      filters.push({ property: parsePropertyPath(match[1]!, key), op, value: filterValue });
    }
  }
  if (filters.length > queryFiltersMax) {
    throw new ConclaveError('INVALID_REQUEST', `A query takes at most ${queryFiltersMax} property filters.`);
  }
  const { sort, descending } = parseSort(sortText);
  const limit = parseLimit(params['limit'], limits.pageSizeDefault, limits.pageSizeMax);
  const fingerprint = fingerprintOf(JSON.stringify({ under, type, filters, sort, descending }));
  const spec: QuerySpec = { under, type, filters, sort, descending, limit, fingerprint };
  return cursorText === undefined ? spec : { ...spec, cursor: decodeCursor(cursorText, fingerprint) };
}

/** FNV-1a, 32 bits: enough to tell queries apart, not a security measure (cursors are not secrets). */
export function fingerprintOf(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(36);
}

const base64url = {
  encode(text: string): string {
    const bytes = new TextEncoder().encode(text);
    let binary = '';
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  },
  decode(text: string): string {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  },
};

export function encodeCursor(cursor: QueryCursor, fingerprint: string): string {
  return base64url.encode(JSON.stringify([fingerprint, cursor.value, cursor.id]));
}

export function decodeCursor(text: string, fingerprint: string): QueryCursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(base64url.decode(text));
  } catch {
    throw new ConclaveError('INVALID_CURSOR', 'The cursor is malformed; pass nextCursor from the previous page unchanged.');
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== 3 ||
    typeof parsed[2] !== 'string' ||
    !(parsed[1] === null || typeof parsed[1] === 'string' || typeof parsed[1] === 'number')
  ) {
    throw new ConclaveError('INVALID_CURSOR', 'The cursor is malformed; pass nextCursor from the previous page unchanged.');
  }
  if (parsed[0] !== fingerprint) {
    throw new ConclaveError('INVALID_CURSOR', 'The cursor belongs to a different query; keep the filters and sort unchanged.');
  }
  return { value: parsed[1] as ScalarValue, id: parsed[2] };
}
