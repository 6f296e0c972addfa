import type { QueryCursor } from '../content/query.js';
import { descendantRange } from '../content/paths.js';
import { nodeFilterSql, type NodeFilters } from './nodeFilters.js';
import type { SchemaDefinition } from '../content/schema.js';
import { migrationPending } from '../content/schemaState.js';
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

/** State meta key (the cluster's search policy, setSearchPolicy): 0 when untyped nodes' strings are not indexed. */
export const untypedMetaKey = 'search_index_untyped';

function indexesUntyped(db: Db): boolean {
  return getMeta<number>(db, untypedMetaKey) !== 0;
}

/**
 * Which schema a node's indexed text follows: its type's schema in force; while a migration of the type runs (or
 * failed, waiting), the new version for the nodes the migration has passed (id up to its progress) and the version
 * it migrates from for the rest. A pure function of the state, so every node indexes alike, and a schema change
 * re-indexes a type's nodes batch by batch with its migration rather than all at once.
 */
export interface Derivation {
  /** Nodes with an id up to `split` (none when '') follow `low`; the others `high`. */
  readonly split: string;
  readonly low: SchemaDefinition | undefined;
  readonly high: SchemaDefinition | undefined;
}

export function derivationOf(schemas: SchemaTables, typeName: string): Derivation {
  const migration = schemas.migration(typeName);
  if (migrationPending(migration)) {
    const to = schemas.version(typeName, migration!.toVersion)?.definition;
    const from = migration!.fromVersion === null ? undefined : schemas.version(typeName, migration!.fromVersion)?.definition;
    return { split: migration!.afterId, low: to, high: from };
  }
  const active = schemas.active(typeName)?.definition;
  return { split: '', low: active, high: active };
}

function definitionFor(derivation: Derivation, nodeId: string): SchemaDefinition | undefined {
  return derivation.split !== '' && nodeId <= derivation.split ? derivation.low : derivation.high;
}

/** Derivations by type, read once per type: what a pass over many nodes (a build, a check) uses. */
function derivations(schemas: SchemaTables): (typeName: string, nodeId: string) => SchemaDefinition | undefined {
  const known = new Map<string, Derivation>();
  return (typeName, nodeId) => {
    let d = known.get(typeName);
    if (d === undefined) known.set(typeName, (d = derivationOf(schemas, typeName)));
    return definitionFor(d, nodeId);
  };
}

/** Types whose derivation SearchIndex keeps in memory; past it the cache starts over. */
const derivationsCachedMax = 4096;

/** Nodes read at a time while indexing many. */
const buildPageRows = 1000;

/** Live meta key: the index has been built from this database's state (set by buildSearchIndex). */
const builtKey = 'search_index_built';

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
    const untyped = indexesUntyped(db);
    const schemaOf = derivations(schemas);
    db.prepare('DELETE FROM search_index').run();
    const insert = db.prepare('INSERT INTO search_index (rowid, node_id, name, body) VALUES (?, ?, ?, ?)');
    // By pages: a connection writes nothing while one of its statements iterates.
    const next = db.prepare('SELECT rowid, id, name, type, properties FROM nodes WHERE rowid > ? ORDER BY rowid LIMIT ?');
    let count = 0;
    let after = 0;
    for (;;) {
      const rows = next.all(after, buildPageRows) as Array<{ rowid: number; id: string; name: string; type: string; properties: string }>;
      for (const row of rows) {
        const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, schemaOf(row.type, row.id), untyped);
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

/**
 * The index as apply() writes it and searches read it. Statements are prepared at first use; a database without the
 * index (a state file read through ContentTables) writes nothing to it.
 */
export class SearchIndex {
  private statements: ReturnType<SearchIndex['prepare']> | null = null;
  private present: boolean | undefined;
  private untyped: boolean | undefined;
  /**
   * Each type's derivation, read at its first write: every write derives its node's text, and the schema and
   * migration reads behind a derivation are two statements and a definition parsed. Dropped when a schema or
   * migration of the type changes, and with everything on forget(); bounded like SchemaTables' cache.
   */
  private readonly derivationsByType = new Map<string, Derivation>();

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
      afterRowid: db.prepare('SELECT rowid, id, name, type, properties FROM nodes WHERE rowid > ? ORDER BY rowid LIMIT ?'),
      ofType: db.prepare('SELECT rowid, id, name, properties FROM nodes WHERE type = ? AND id > ? ORDER BY id LIMIT ?'),
      matches: db.prepare('SELECT count(*) FROM (SELECT 1 FROM search_index WHERE search_index MATCH ? LIMIT ?)').pluck(),
      matchPaths: db.prepare('SELECT n.path FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE search_index MATCH ?').pluck(),
      snippet: db
        .prepare(`SELECT snippet(search_index, -1, '${snippetMatchStart}', '${snippetMatchEnd}', '…', ?) FROM search_index WHERE search_index MATCH ? AND rowid = ?`)
        .pluck(),
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
    this.untyped = undefined;
    this.derivationsByType.clear();
  }

  /** What the index takes of a type's nodes now (derivationOf): read before a schema or migration change. */
  derivation(typeName: string): Derivation {
    let known = this.derivationsByType.get(typeName);
    if (known === undefined) {
      if (this.derivationsByType.size >= derivationsCachedMax) this.derivationsByType.clear();
      known = derivationOf(this.schemas, typeName);
      this.derivationsByType.set(typeName, known);
    }
    return known;
  }

  private definitionFor(typeName: string, nodeId: string): SchemaDefinition | undefined {
    return definitionFor(this.derivation(typeName), nodeId);
  }

  /** The cluster's search policy: whether untyped nodes' strings are indexed (read from the state). */
  indexesUntyped(): boolean {
    this.untyped ??= indexesUntyped(this.db);
    return this.untyped;
  }

  /**
   * Sets the policy and indexes every node of a type without a schema again: every untyped node of the repository,
   * in the entry that makes the change (as long as reading and tokenising them takes). Returns how many.
   */
  setIndexesUntyped(on: boolean): number {
    const changed = on !== this.indexesUntyped();
    setMeta(this.db, untypedMetaKey, on ? 1 : 0);
    this.untyped = on;
    if (!changed || !this.enabled) return 0;
    let count = 0;
    let after = 0;
    for (;;) {
      const rows = this.sql.afterRowid.all(after, buildPageRows) as Array<{ rowid: number; id: string; name: string; type: string; properties: string }>;
      for (const row of rows) {
        if (this.definitionFor(row.type, row.id) !== undefined) continue;
        const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, undefined, on);
        this.sql.update.run(text.name, text.body, row.rowid);
        count++;
      }
      if (rows.length < buildPageRows) break;
      after = rows.at(-1)!.rowid;
    }
    return count;
  }

  private textOf(node: { readonly id: string; readonly name: string; readonly type: string; readonly properties: JsonObject }): SearchText {
    return searchTextOf(node, this.definitionFor(node.type, node.id), this.indexesUntyped());
  }

  /** A node was inserted as nodes row `rowid`. */
  added(rowid: number | bigint, node: { readonly id: string; readonly name: string; readonly type: string; readonly properties: JsonObject }): void {
    if (!this.enabled) return;
    const text = this.textOf(node);
    this.sql.insert.run(rowid, node.id, text.name, text.body);
  }

  /** Node `rowid` changed: its row is written again when its text did change (FTS5 re-tokenises on every write). */
  changed(rowid: number | bigint, node: { readonly id: string; readonly name: string; readonly type: string; readonly properties: JsonObject }): void {
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
   * A schema or migration change of `typeName` moved what its nodes' text follows from `before` to now: the nodes in
   * the id ranges where that changed are indexed again — a migration batch's range, a whole type when a schema
   * without a migration comes or goes (only a type without nodes gets one that way, or a deleted schema), the
   * converted nodes when a migration is abandoned.
   */
  derivationChanged(typeName: string, before: Derivation): void {
    this.derivationsByType.delete(typeName);
    if (!this.enabled) return;
    const after = this.derivation(typeName);
    const bounds = [...new Set(['', before.split, after.split])].sort();
    // Intervals (bounds[i], bounds[i + 1]], and past the last bound: each follows one definition before and one
    // after (every split is a bound), read at a representative id — its upper bound, or one past every id.
    for (let i = 0; i < bounds.length; i++) {
      const high = bounds[i + 1];
      const probe = high ?? '\u{10FFFF}';
      const is = definitionFor(after, probe);
      if (fulltextKeyOf(definitionFor(before, probe)) !== fulltextKeyOf(is)) this.reindexRange(typeName, bounds[i]!, high, is);
    }
  }

  /** Indexes again the nodes of `typeName` with an id in (low, high] (high undefined: no upper bound). */
  private reindexRange(typeName: string, low: string, high: string | undefined, definition: SchemaDefinition | undefined): void {
    let after = low;
    for (;;) {
      const rows = (this.sql.ofType.all(typeName, after, buildPageRows) as Array<{ rowid: number; id: string; name: string; properties: string }>).filter(
        (row) => high === undefined || row.id <= high,
      );
      for (const row of rows) {
        const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, definition, this.indexesUntyped());
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


  /** How many documents `match` matches, counting up to `countMax` (one more says "more than that"). */
  matchCount(match: string, countMax: number): number {
    return this.sql.matches.get(match, countMax + 1) as number;
  }

  private whereOf(match: string, filters: NodeFilters): { where: string[]; params: unknown[] } {
    const { where, params } = nodeFilterSql(filters, 'n');
    return { where: ['search_index MATCH ?', ...where], params: [match, ...params] };
  }

  /**
   * Documents matching `match` that the reader may read, counted up to `countMax` (one more says "more than that"),
   * reading at most `scanMax` matches in all: `capped` when the count stopped there. For a reader who may not read
   * everything, what a search may rank is counted among what it may read, so that no refusal tells of others' nodes.
   */
  visibleMatchCount(match: string, visible: (path: string) => boolean, countMax: number, scanMax: number): { count: number; capped: boolean } {
    let count = 0;
    let scanned = 0;
    for (const path of this.sql.matchPaths.iterate(match) as Iterable<string>) {
      if (++scanned > scanMax) return { count, capped: true };
      if (visible(path) && ++count > countMax) break;
    }
    return { count, capped: false };
  }

  /** Results after the filters (and the reader's access), counted up to `countMax` (one more says "more than that"). */
  total(match: string, filters: NodeFilters, countMax: number, visible: ((path: string) => boolean) | null = null): number {
    const { where, params } = this.whereOf(match, filters);
    if (visible === null) {
      const sql = `SELECT count(*) FROM (SELECT 1 FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE ${where.join(' AND ')} LIMIT ?)`;
      return this.db.prepare(sql).pluck().get(...params, countMax + 1) as number;
    }
    let count = 0;
    const sql = `SELECT n.path FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE ${where.join(' AND ')}`;
    for (const path of this.db.prepare(sql).pluck().iterate(...params) as Iterable<string>) if (visible(path) && ++count > countMax) break;
    return count;
  }

  /**
   * One page of results, best first (ties by node id), after `cursor`, of the nodes the reader may read; one more is
   * looked for to tell whether more follow. Snippets are made for the page's results alone (FTS5 makes one by
   * tokenising the document again: for every match, it would cost more than the ranking).
   */
  page(
    match: string,
    filters: NodeFilters,
    cursor: QueryCursor | undefined,
    limit: number,
    snippetTokens: number,
    visible: ((path: string) => boolean) | null = null,
  ): { readonly hits: SearchHit[]; readonly more: boolean } {
    const { where, params } = this.whereOf(match, filters);
    if (cursor !== undefined) {
      where.push('(s.rank > ? OR (s.rank = ? AND n.id > ?))');
      params.push(cursor.value, cursor.value, cursor.id);
    }
    const sql =
      'SELECT s.rowid AS rowid, n.id, n.path, n.name, n.type, s.rank AS rank ' +
      `FROM search_index s JOIN nodes n ON n.rowid = s.rowid WHERE ${where.join(' AND ')} ORDER BY s.rank, n.id LIMIT ?`;
    const rows: Array<{ rowid: number; id: string; path: string; name: string; type: string; rank: number }> = [];
    let more = false;
    for (const row of this.db.prepare(sql).iterate(...params, visible === null ? limit + 1 : -1) as Iterable<(typeof rows)[number]>) {
      if (visible !== null && !visible(row.path)) continue;
      if (rows.length === limit) {
        more = true;
        break;
      }
      rows.push(row);
    }
    const hits = rows.map((row) => ({
      id: row.id,
      path: row.path,
      name: row.name,
      type: row.type,
      score: row.rank === 0 ? 0 : -row.rank,
      // The rowid bound as an integer: FTS5 compares a REAL bound to rowid with MATCH as no constraint at all.
      snippet: snippetRuns(this.sql.snippet.get(snippetTokens, match, BigInt(row.rowid)) as string),
      cursor: { value: row.rank, id: row.id },
    }));
    return { hits, more };
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
    const untyped = indexesUntyped(db);
    const schemaOf = derivations(schemas);
    const mismatched: string[] = [];
    let mismatchCount = 0;
    let nodes = 0;
    const rows = db
      .prepare('SELECT n.id, n.name, n.type, n.properties, s.node_id AS indexed_id, s.name AS indexed_name, s.body AS indexed_body FROM nodes n LEFT JOIN search_index s ON s.rowid = n.rowid')
      .iterate() as Iterable<{ id: string; name: string; type: string; properties: string; indexed_id: string | null; indexed_name: string | null; indexed_body: string | null }>;
    for (const row of rows) {
      nodes++;
      const text = searchTextOf({ name: row.name, properties: JSON.parse(row.properties) as JsonObject }, schemaOf(row.type, row.id), untyped);
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
