import { descendantRange } from '../content/paths.js';
import type { PropertyFilter } from '../content/query.js';

/**
 * The filters of GET /api/v1/query — a subtree, a type, property comparisons (src/content/query.ts) — as SQL over the
 * nodes table, shared by queries and searches so that both mean the same by them.
 */
export interface NodeFilters {
  readonly under?: string;
  readonly type?: string;
  readonly filters: readonly PropertyFilter[];
}

/** Turns a property path into a JSON path with every segment quoted (the query parser excludes quotes). */
export function jsonPath(property: readonly string[]): string {
  return `$${property.map((p) => `."${p}"`).join('')}`;
}

// IS and IS NOT: a comparison with null (prop.x=null) is one SQLite answers.
const opSql = { eq: 'IS', ne: 'IS NOT', gt: '>', gte: '>=', lt: '<', lte: '<=' } as const;

/** The WHERE terms (ANDed) and their parameters; `table` names the nodes table's alias in the statement ('' for none). */
export function nodeFilterSql(spec: NodeFilters, table = ''): { where: string[]; params: unknown[] } {
  const column = (name: string) => (table === '' ? name : `${table}.${name}`);
  const where: string[] = [];
  const params: unknown[] = [];
  if (spec.under !== undefined) {
    const { low, high } = descendantRange(spec.under);
    where.push(`${column('path')} > ? AND ${column('path')} < ?`);
    params.push(low, high);
  }
  if (spec.type !== undefined) {
    where.push(`${column('type')} = ?`);
    params.push(spec.type);
  }
  for (const filter of spec.filters) {
    where.push(`json_extract(${column('properties')}, ?) ${opSql[filter.op]} ?`);
    params.push(jsonPath(filter.property), filter.value);
  }
  return { where, params };
}
