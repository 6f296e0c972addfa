import type { PropertyFilter, QueryCursor } from '../content/query.js';
import { descendantRange } from '../content/paths.js';
import { fulltextKeyOf, searchTextOf, snippetMatchEnd, snippetMatchStart, type SearchText } from '../content/searchText.js';
import type { JsonObject } from '../content/model.js';
import { invariant } from '../errors/catalogue.js';
import { getMeta, setMeta, type Db } from './database.js';
import { SchemaTables } from './schemaTables.js';

/**
 * The full-text index (SQLite FTS5) of the node's content: one row per content node, keyed by the node's rowid in
 * `nodes`, holding the text searchTextOf derives from the node and its type's schema. apply() keeps it in the
 * transaction of every entry (through ContentTables), so a search sees exactly the state a read sees.
 *
 * The index is derived, never replicated: it is not in state files (a foreign file's virtual table would run code of
 * the file's author), and every node builds it from its own state — in full when the data directory is upgraded,
 * when a snapshot is installed (inside the install's transaction: never served incomplete) and when a restored
 * directory first opens. `checkSearchIndex` proves it matches the content.
 *
 * Tokens: Unicode 6.1 words, case and diacritics folded (unicode61 remove_diacritics 2); prefix indexes of 2 and 3
 * characters keep short prefix queries cheap. Rank: BM25, a match in the name weighing twice one in the body.
 */
export const searchIndexSchema = `
CREATE VIRTUAL TABLE IF NOT EXISTS search_index USING fts5(
  node_id UNINDEXED, name, body,
  tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3'
);
`;

/** Nodes read at a time while indexing many. */
const buildPageRows = 1000;

/** Live meta key: the index has been built from this database's state (set by buildSearchIndex). */
const builtKey = 'search_index_built';

/** The tables FTS5 keeps for search_index: a live database's own, never a state file's. */
export const searchIndexObjects: ReadonlySet<string> = new Set(['search_index', 'search_index_data', 'search_index_idx', 'search_index_content', 'search_index_docsize', 'search_index_config']);

/**
 * Makes the node's live database ready to search, before it serves: creates the index where the directory has none
 * (a new one, an upgraded one, a restored one: a state file never holds it) and builds it from the state where it
 * was not built. Returns how many nodes were indexed (0 when the index was there).
 */
export function prepareSearchIndex(db: Db): number {
  if (!hasIndex(db)) {
    db.transaction(() => {
      db.exec(searchIndexSchema);
      db.prepare(`INSERT INTO search_index(search_index, rank) VALUES ('rank', 'bm25(0.0, 2.0, 1.0)')`).run();
    })();
  }
  return getMeta<number>(db, builtKey) === undefined ? buildSearchIndex(db) : 0;
}

function hasIndex(db: Db): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'search_index'`).pluck().get() !== undefined;
}

/**
 * Builds the index from the content (inside the caller's transaction, or its own): what a snapshot install, an
 * upgraded or a restored data directory needs. Every node's row is derived again; nothing of the old index stays.
 */
export function buildSearchIndex(db: Db): number {
  invariant(hasIndex(db), 'the database has no search index');
  const schemas = new SchemaTables(db);
  const run = () => {
    db.prepare('DELETE FROM search_index').run();
    const insert = db.prepare('INSERT INTO search_index (rowid, node_id, name, body) VALUES (?, ?, ?, ?)');
    // By pages: a connection writes nothing while one of its statements iterates.
    const next = db.prepare('SELECT rowid, id, name, type, properties FROM nodes WHERE rowid > ? ORDER BY rowid LIMIT ?');
    let count = 0;
    let after = 0;
    for (;;) {
      const rows = next.all(after, buildPageRows) as Array<{ rowid: number; id: string; name: string; type: string; properties: string }>;
      for (const row of rows) {
        const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, schemas.writeSchema(row.type)?.schema.definition);
        insert.run(row.rowid, row.id, text.name, text.body);
      }
      count += rows.length;
      if (rows.length < buildPageRows) break;
      after = rows.at(-1)!.rowid;
    }
    setMeta(db, builtKey, 1);
    return count;
  };
  return db.inTransaction ? run() : db.transaction(run)();
}

/** Empties the index with the content (a node leaving its cluster: detachCluster). */
export function clearSearchIndex(db: Db): void {
  if (hasIndex(db)) db.prepare('DELETE FROM search_index').run();
}

/** Builds the index again after the state was replaced (a snapshot install), when this database has one. */
export function rebuildSearchIndexIfPresent(db: Db): void {
  if (hasIndex(db)) buildSearchIndex(db);
}

export interface SearchFilters {
  readonly under?: string;
  readonly type?: string;
  readonly filters: readonly PropertyFilter[];
}

export interface SearchHit {
  readonly id: string;
  readonly path: string;
  readonly name: string;
  readonly type: string;
  /** BM25, higher is better (FTS5's rank negated). */
  readonly score: number;
  /** The best passage, cut into runs; `match` marks the words the query matched. */
  readonly snippet: ReadonlyArray<{ readonly text: string; readonly match: boolean }>;
  /** The cursor this hit ends a page with. */
  readonly cursor: QueryCursor;
}

const opSql: Record<PropertyFilter['op'], string> = { eq: '=', ne: '!=', gt: '>', gte: '>=', lt: '<', lte: '<=' };

function jsonPath(segments: readonly string[]): string {
  return '$' + segments.map((s) => `."${s}"`).join('');
}

/**
 * The index as apply() writes it and searches read it. Statements are prepared at first use; a database without the
 * index (a state file read through ContentTables) writes nothing to it.
 */
export class SearchIndex {
  private statements: ReturnType<SearchIndex['prepare']> | null = null;
  private present: boolean | undefined;

  constructor(
    private readonly db: Db,
    private readonly schemas: SchemaTables,
  ) {}

  private prepare() {
    const db = this.db;
    return {
      insert: db.prepare('INSERT INTO search_index (rowid, node_id, name, body) VALUES (?, ?, ?, ?)'),
      stored: db.prepare('SELECT name, body FROM search_index WHERE rowid = ?'),
      update: db.prepare('UPDATE search_index SET name = ?, body = ? WHERE rowid = ?'),
      removeRange: db.prepare('DELETE FROM search_index WHERE rowid IN (SELECT rowid FROM nodes WHERE path = ? OR (path > ? AND path < ?))'),
      ofType: db.prepare('SELECT rowid, id, name, properties FROM nodes WHERE type = ? AND id > ? ORDER BY id LIMIT ?'),
      matches: db.prepare('SELECT count(*) FROM (SELECT 1 FROM search_index WHERE search_index MATCH ? LIMIT ?)').pluck(),
    };
  }

  private get sql(): ReturnType<SearchIndex['prepare']> {
    this.statements ??= this.prepare();
    return this.statements;
  }

  private get enabled(): boolean {
    this.present ??= hasIndex(this.db);
    return this.present;
  }

  /** The database was replaced or rolled back under this object. */
  forget(): void {
    this.present = undefined;
  }

  private textOf(node: { readonly name: string; readonly type: string; readonly properties: JsonObject }): SearchText {
    return searchTextOf(node, this.schemas.writeSchema(node.type)?.schema.definition);
  }

  /** A node was inserted as nodes row `rowid`. */
  added(rowid: number | bigint, node: { readonly id: string; readonly name: string; readonly type: string; readonly properties: JsonObject }): void {
    if (!this.enabled) return;
    const text = this.textOf(node);
    this.sql.insert.run(rowid, node.id, text.name, text.body);
  }

  /** Node `rowid` changed: its row is written again when its text did change (FTS5 re-tokenises on every write). */
  changed(rowid: number | bigint, node: { readonly name: string; readonly type: string; readonly properties: JsonObject }): void {
    if (!this.enabled) return;
    const text = this.textOf(node);
    const stored = this.sql.stored.get(rowid) as SearchText | undefined;
    invariant(stored !== undefined, `node row ${rowid} has no row in the search index`);
    if (stored.name !== text.name || stored.body !== text.body) this.sql.update.run(text.name, text.body, rowid);
  }

  /** Before the subtree at `path` goes. */
  removingSubtree(path: string): void {
    if (!this.enabled) return;
    const { low, high } = descendantRange(path);
    this.sql.removeRange.run(path, low, high);
  }

  /**
   * The schema writes of `typeName` follow changed from `before` (a fulltext key, fulltextKeyOf): every node of the
   * type is indexed again when what the index takes of them changed. As large as the type, in the entry that made
   * the change.
   */
  schemaChanged(typeName: string, before: string): void {
    if (!this.enabled) return;
    const definition = this.schemas.writeSchema(typeName)?.schema.definition;
    if (fulltextKeyOf(definition) === before) return;
    let after = '';
    for (;;) {
      const rows = this.sql.ofType.all(typeName, after, buildPageRows) as Array<{ rowid: number; id: string; name: string; properties: string }>;
      for (const row of rows) {
        const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, definition);
        this.sql.update.run(text.name, text.body, row.rowid);
      }
      if (rows.length < buildPageRows) break;
      after = rows.at(-1)!.id;
    }
  }

  /** checkSearchIndex of this database (one without the index has nothing to check: an empty, passing answer). */
  check(): SearchIndexCheck {
    if (!this.enabled) return { nodes: 0, indexed: 0, mismatched: [], mismatchCount: 0, integrity: 'ok' };
    return checkSearchIndex(this.db);
  }

  /** The fulltext key of the schema writes of `typeName` follow now. */
  fulltextKey(typeName: string): string {
    return fulltextKeyOf(this.schemas.writeSchema(typeName)?.schema.definition);
  }

  /** How many documents `match` matches, counting up to `countMax` (one more says "more than that"). */
  matchCount(match: string, countMax: number): number {
    return this.sql.matches.get(match, countMax + 1) as number;
  }

  private whereOf(match: string, filters: SearchFilters): { where: string[]; params: unknown[] } {
    const where = ['search_index MATCH ?'];
    const params: unknown[] = [match];
    if (filters.under !== undefined) {
      const { low, high } = descendantRange(filters.under);
      where.push('n.path > ? AND n.path < ?');
      params.push(low, high);
    }
    if (filters.type !== undefined) {
      where.push('n.type = ?');
      params.push(filters.type);
    }
    for (const filter of filters.filters) {
      where.push(`json_extract(n.properties, ?) ${opSql[filter.op]} ?`);
      params.push(jsonPath(filter.property), filter.value);
    }
    return { where, params };
  }

  /** Results after the filters, counted up to `countMax` (one more says "more than that"). */
  total(match: string, filters: SearchFilters, countMax: number): number {
    const { where, params } = this.whereOf(match, filters);
    const sql = `SELECT count(*) FROM (SELECT 1 FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE ${where.join(' AND ')} LIMIT ?)`;
    return this.db.prepare(sql).pluck().get(...params, countMax + 1) as number;
  }

  /** One page of results, best first (ties by node id), after `cursor`; `limit + 1` are read to tell whether more follow. */
  page(match: string, filters: SearchFilters, cursor: QueryCursor | undefined, limit: number, snippetTokens: number): { readonly hits: SearchHit[]; readonly more: boolean } {
    const { where, params } = this.whereOf(match, filters);
    if (cursor !== undefined) {
      where.push('(s.rank > ? OR (s.rank = ? AND n.id > ?))');
      params.push(cursor.value, cursor.value, cursor.id);
    }
    const sql =
      `SELECT n.id, n.path, n.name, n.type, s.rank AS rank, snippet(search_index, -1, '${snippetMatchStart}', '${snippetMatchEnd}', '…', ?) AS snippet ` +
      `FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE ${where.join(' AND ')} ORDER BY s.rank, n.id LIMIT ?`;
    const rows = this.db.prepare(sql).all(snippetTokens, ...params, limit + 1) as Array<{ id: string; path: string; name: string; type: string; rank: number; snippet: string }>;
    const hits = rows.slice(0, limit).map((row) => ({
      id: row.id,
      path: row.path,
      name: row.name,
      type: row.type,
      score: row.rank === 0 ? 0 : -row.rank,
      snippet: snippetRuns(row.snippet),
      cursor: { value: row.rank, id: row.id },
    }));
    return { hits, more: rows.length > limit };
  }
}

/** Cuts FTS5's snippet at its markers into runs of text, matched or not. */
export function snippetRuns(snippet: string): Array<{ text: string; match: boolean }> {
  const runs: Array<{ text: string; match: boolean }> = [];
  let match = false;
  let text = '';
  for (const c of snippet) {
    if (c === snippetMatchStart || c === snippetMatchEnd) {
      if (text !== '') runs.push({ text, match });
      text = '';
      match = c === snippetMatchStart;
    } else {
      text += c;
    }
  }
  if (text !== '') runs.push({ text, match });
  return runs;
}

export interface SearchIndexCheck {
  readonly nodes: number;
  readonly indexed: number;
  /** Node ids whose row is missing, stale or foreign (at most 100 named). */
  readonly mismatched: readonly string[];
  readonly mismatchCount: number;
  /** FTS5's own integrity check of its index against the text it holds. */
  readonly integrity: 'ok' | string;
}

/**
 * Proves the index matches the content: every node has exactly its derived text in the index, nothing else is
 * there, and FTS5's inverted index agrees with that text. Reads in one transaction (the caller's, or its own).
 */
export function checkSearchIndex(db: Db): SearchIndexCheck {
  invariant(hasIndex(db), 'the database has no search index');
  const schemas = new SchemaTables(db);
  const run = (): SearchIndexCheck => {
    const mismatched: string[] = [];
    let mismatchCount = 0;
    let nodes = 0;
    const rows = db
      .prepare('SELECT n.id, n.name, n.type, n.properties, s.node_id AS indexed_id, s.name AS indexed_name, s.body AS indexed_body FROM nodes n LEFT JOIN search_index s ON s.rowid = n.rowid')
      .iterate() as Iterable<{ id: string; name: string; type: string; properties: string; indexed_id: string | null; indexed_name: string | null; indexed_body: string | null }>;
    for (const row of rows) {
      nodes++;
      const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, schemas.writeSchema(row.type)?.schema.definition);
      if (row.indexed_id !== row.id || row.indexed_name !== text.name || row.indexed_body !== text.body) {
        mismatchCount++;
        if (mismatched.length < 100) mismatched.push(row.id);
      }
    }
    const indexed = db.prepare('SELECT count(*) FROM search_index').pluck().get() as number;
    if (indexed !== nodes) mismatchCount += Math.abs(indexed - nodes);
    let integrity = 'ok';
    try {
      db.prepare(`INSERT INTO search_index(search_index, rank) VALUES ('integrity-check', 1)`).run();
    } catch (err) {
      integrity = (err as Error).message;
    }
    return { nodes, indexed, mismatched, mismatchCount, integrity };
  };
  return db.inTransaction ? run() : db.transaction(run)();
}
