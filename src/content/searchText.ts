import type { JsonObject, JsonValue } from './model.js';
import type { SchemaDefinition } from './schema.js';

/**
 * What full-text search indexes of a node: its name, and a body of text taken from its properties — those its
 * type's schema marks `fulltext` (strings, and arrays of strings), or, for a type without a schema, every string
 * value of the node at any depth (unless the cluster's search policy says not to). A pure function of the node and the schema writes to its type are checked
 * against (src/storage/searchIndex.ts keeps the index equal to it on every apply, so every node of the cluster
 * indexes the same text and answers a search the same).
 *
 * The two private-use characters snippets mark matches with are taken out of the text (replaced by a space): a
 * value holding them could otherwise forge a highlight.
 */
export interface SearchText {
  readonly name: string;
  readonly body: string;
}

export const snippetMatchStart = '\uE000';
export const snippetMatchEnd = '\uE001';
const markers = /[\uE000\uE001]/g;

/**
 * `indexUntyped` is the cluster's search policy (setSearchPolicy): whether the strings of a node whose type has no
 * schema are indexed; its name always is.
 */
export function searchTextOf(node: { readonly name: string; readonly properties: JsonObject }, schema: SchemaDefinition | undefined, indexUntyped = true): SearchText {
  const parts: string[] = [];
  if (schema === undefined) {
    if (indexUntyped) collectStrings(node.properties, parts);
  }
  else {
    for (const [name, rule] of Object.entries(schema.properties)) {
      if (rule.fulltext !== true) continue;
      const value = node.properties[name];
      if (typeof value === 'string') parts.push(value);
      else if (Array.isArray(value)) for (const item of value) if (typeof item === 'string') parts.push(item);
    }
  }
  return { name: clean(node.name), body: clean(parts.join('\n')) };
}

/** The schema fields the indexed text depends on, as a key: equal keys index every node of a type alike. */
export function fulltextKeyOf(schema: SchemaDefinition | undefined): string {
  if (schema === undefined) return '*';
  return JSON.stringify(Object.entries(schema.properties).filter(([, rule]) => rule.fulltext === true).map(([name]) => name));
}

function collectStrings(value: JsonValue, into: string[]): void {
  if (typeof value === 'string') into.push(value);
  else if (Array.isArray(value)) for (const item of value) collectStrings(item, into);
  else if (value !== null && typeof value === 'object') for (const item of Object.values(value)) collectStrings(item, into);
}

function clean(text: string): string {
  return text.replace(markers, ' ');
}
