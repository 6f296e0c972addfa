import { ConclaveError } from '../errors/catalogue.js';

/**
 * The full-text query language of GET /api/v1/search, parsed here and compiled into an FTS5 MATCH expression that
 * quotes every word: nothing a client writes reaches FTS5's own syntax, so a malformed query is this parser's 400
 * naming the problem, never an error of the engine.
 *
 *   crème brûlée          both words (adjacent terms are ANDed); case and diacritics do not matter
 *   "crème brûlée"        the phrase
 *   bru*                  a word starting with "bru" (at least searchPrefixCharsMin letters or digits before *)
 *   tart OR pie           either
 *   tart -apple           tart but not apple; NOT apple is the same
 *   (tart OR pie) AND -apple, with parentheses nesting up to searchQueryDepthMax
 *
 * AND, OR and NOT are operators in capitals only ("and" is a word). A word is a run of characters other than white
 * space, quotes and parentheses; one without a letter or digit ("&", "--") is dropped, as the index holds none.
 * A negated term needs a term beside it that is not negated (FTS5 has no "everything but"): "-apple" alone and
 * "tart OR -apple" are refused.
 */

export interface SearchQueryLimits {
  /** Characters (code units) of the query. */
  readonly queryCharsMax: number;
  /** Words and phrases in it. */
  readonly termsMax: number;
}

export const searchPrefixCharsMin = 2;
export const searchQueryDepthMax = 8;

export type SearchQueryNode =
  | { readonly kind: 'term'; readonly text: string; readonly prefix: boolean }
  | { readonly kind: 'phrase'; readonly text: string }
  | { readonly kind: 'and'; readonly children: readonly SearchQueryNode[] }
  | { readonly kind: 'or'; readonly children: readonly SearchQueryNode[] }
  | { readonly kind: 'not'; readonly child: SearchQueryNode };

export interface ParsedSearchQuery {
  readonly tree: SearchQueryNode;
  /** The FTS5 MATCH expression. */
  readonly match: string;
}

type Token =
  | { readonly kind: 'word'; readonly text: string; readonly at: number }
  | { readonly kind: 'phrase'; readonly text: string; readonly at: number }
  | { readonly kind: '(' | ')' | '-' | 'AND' | 'OR' | 'NOT'; readonly at: number };

const tokenChar = /[\p{L}\p{N}]/u;
const space = /\s/u;

function invalid(message: string, at?: number): ConclaveError {
  return new ConclaveError('INVALID_SEARCH_QUERY', at === undefined ? message : `${message} (at character ${at + 1}).`, at === undefined ? {} : { position: at + 1 });
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (space.test(c)) {
      i++;
    } else if (c === '(' || c === ')') {
      tokens.push({ kind: c, at: i });
      i++;
    } else if (c === '"') {
      const end = text.indexOf('"', i + 1);
      if (end < 0) throw invalid('A phrase is not closed: a quotation mark has no partner', i);
      const phrase = text.slice(i + 1, end);
      if (!tokenChar.test(phrase)) throw invalid('A phrase holds no word to search for', i);
      tokens.push({ kind: 'phrase', text: phrase, at: i });
      i = end + 1;
    } else if (c === '-' && i + 1 < text.length && !space.test(text[i + 1]!) && (i === 0 || space.test(text[i - 1]!) || text[i - 1] === '(')) {
      tokens.push({ kind: '-', at: i });
      i++;
    } else {
      let end = i;
      while (end < text.length && !space.test(text[end]!) && text[end] !== '(' && text[end] !== ')' && text[end] !== '"') end++;
      const word = text.slice(i, end);
      if (word === 'AND' || word === 'OR' || word === 'NOT') tokens.push({ kind: word, at: i });
      else tokens.push({ kind: 'word', text: word, at: i });
      i = end;
    }
  }
  return tokens;
}

class Parser {
  private position = 0;
  private terms = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly termsMax: number,
  ) {}

  parse(): SearchQueryNode | null {
    const tree = this.or(0);
    const next = this.tokens[this.position];
    if (next !== undefined) throw invalid(next.kind === ')' ? 'A closing parenthesis has no opening one' : `Unexpected ${describe(next)}`, next.at);
    return tree;
  }

  private or(depth: number): SearchQueryNode | null {
    const children: SearchQueryNode[] = [];
    const first = this.and(depth);
    if (first !== null) children.push(first);
    while (this.tokens[this.position]?.kind === 'OR') {
      const op = this.tokens[this.position++]!;
      if (children.length === 0) throw invalid('OR needs a term before it', op.at);
      const next = this.and(depth);
      if (next === null) throw invalid('OR needs a term after it', op.at);
      children.push(next);
    }
    if (children.length === 0) return null;
    return children.length === 1 ? children[0]! : { kind: 'or', children };
  }

  private and(depth: number): SearchQueryNode | null {
    const children: SearchQueryNode[] = [];
    for (;;) {
      const token = this.tokens[this.position];
      if (token === undefined || token.kind === ')' || token.kind === 'OR') break;
      if (token.kind === 'AND') {
        this.position++;
        if (children.length === 0) throw invalid('AND needs a term before it', token.at);
        const next = this.unary(depth);
        if (next === null) throw invalid('AND needs a term after it', token.at);
        children.push(next);
        continue;
      }
      const next = this.unary(depth);
      if (next !== null) children.push(next);
    }
    if (children.length === 0) return null;
    return children.length === 1 ? children[0]! : { kind: 'and', children };
  }

  /** A term, a negated term, or null for a word the index cannot hold (no letter or digit). */
  private unary(depth: number): SearchQueryNode | null {
    const token = this.tokens[this.position];
    if (token === undefined) return null;
    if (token.kind === 'NOT' || token.kind === '-') {
      this.position++;
      if (depth + 1 > searchQueryDepthMax) throw invalid(`The query nests deeper than ${searchQueryDepthMax}`, token.at);
      const child = this.unary(depth + 1);
      if (child === null) throw invalid(`${token.kind === 'NOT' ? 'NOT' : 'A minus sign'} needs a term after it`, token.at);
      return { kind: 'not', child };
    }
    if (token.kind === '(') {
      this.position++;
      if (depth + 1 > searchQueryDepthMax) throw invalid(`The query nests deeper than ${searchQueryDepthMax}`, token.at);
      const inner = this.or(depth + 1);
      const close = this.tokens[this.position];
      if (close?.kind !== ')') throw invalid('A parenthesis is not closed', token.at);
      this.position++;
      if (inner === null) throw invalid('Parentheses hold no term', token.at);
      return inner;
    }
    if (token.kind === 'phrase') {
      this.position++;
      this.count(token.at);
      return { kind: 'phrase', text: token.text };
    }
    if (token.kind === 'word') {
      this.position++;
      const prefix = token.text.endsWith('*');
      const text = prefix ? token.text.slice(0, -1) : token.text;
      if (text.includes('*')) throw invalid('An asterisk only ends a word (a prefix search)', token.at);
      if (!tokenChar.test(text)) {
        if (prefix) throw invalid(`A prefix search needs at least ${searchPrefixCharsMin} letters or digits before the asterisk`, token.at);
        return null;
      }
      if (prefix) {
        const last = /[\p{L}\p{N}]+$/u.exec(text);
        if (last === null || [...last[0]].length < searchPrefixCharsMin) {
          throw invalid(`A prefix search needs at least ${searchPrefixCharsMin} letters or digits before the asterisk`, token.at);
        }
      }
      this.count(token.at);
      return { kind: 'term', text, prefix };
    }
    throw invalid(`Unexpected ${describe(token)}`, token.at);
  }

  private count(at: number): void {
    if (++this.terms > this.termsMax) throw invalid(`The query holds more than ${this.termsMax} words and phrases`, at);
  }
}

function describe(token: Token): string {
  return token.kind === 'word' || token.kind === 'phrase' ? `"${token.text}"` : token.kind;
}

function quoted(text: string): string {
  return `"${text.replace(/"/g, '""')}"`;
}

/** The FTS5 expression of a tree that matches something (not a bare negation). */
function compile(node: SearchQueryNode): string {
  switch (node.kind) {
    case 'term':
      return node.prefix ? `${quoted(node.text)} *` : quoted(node.text);
    case 'phrase':
      return quoted(node.text);
    case 'or':
      return node.children
        .map((child) => {
          if (child.kind === 'not') throw invalid('A negated term needs a term it narrows: write "a -b", not "a OR -b"');
          return `(${compile(child)})`;
        })
        .join(' OR ');
    case 'and': {
      const positive = node.children.filter((c) => c.kind !== 'not');
      const negative = node.children.filter((c): c is Extract<SearchQueryNode, { kind: 'not' }> => c.kind === 'not');
      if (positive.length === 0) throw invalid('A query (or a group of it) cannot be negated terms alone: add a term to search for');
      const base = positive.map((c) => `(${compile(c)})`).join(' AND ');
      return negative.length === 0 ? base : `(${base})${negative.map((n) => ` NOT (${compile(n.child)})`).join('')}`;
    }
    case 'not':
      throw invalid('A query (or a group of it) cannot be negated terms alone: add a term to search for');
  }
}

export function parseSearchQuery(text: string, limits: SearchQueryLimits): ParsedSearchQuery {
  if (text.length > limits.queryCharsMax) throw invalid(`The query is longer than ${limits.queryCharsMax} characters`);
  if (text.includes('\0') || /\p{Cs}/u.test(text)) throw invalid('The query holds a NUL character or a lone surrogate');
  const tree = new Parser(tokenize(text), limits.termsMax).parse();
  if (tree === null) throw invalid('The query holds no word to search for');
  return { tree, match: compile(tree) };
}
