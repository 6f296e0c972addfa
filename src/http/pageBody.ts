import { Readable } from 'node:stream';

import type { PageTake, StoredNode } from '../storage/contentTables.js';
import { storedNodeJson } from './representation.js';

/** The size of the pieces a page's body is written in: small enough that no write holds the event loop long. */
const chunkChars = 64 * 1024;

/**
 * The body of a page of nodes (a child listing, a query), bounded in bytes: `take` serialises each node as the
 * storage layer reads it and ends the page once the next node would pass `bytesMax` (content.pageBytesMax) — the
 * first node is always taken, or a client could never get past a large one. So a page of 1,000 children of 500 KiB
 * each is neither read whole from SQLite nor built as one 500 MB string; the client follows nextCursor.
 *
 * The node texts are the stored JSON copied in (storedNodeJson), never parsed and serialised again, and the body
 * is sent as a stream of pieces rather than joined into one string first.
 */
export class PageBody {
  private readonly texts: string[] = [];
  private bytes = 0;

  constructor(private readonly bytesMax: number) {}

  readonly take: PageTake = (node: StoredNode) => {
    const text = storedNodeJson(node);
    const size = Buffer.byteLength(text);
    if (this.texts.length > 0 && this.bytes + size > this.bytesMax) return false;
    this.texts.push(text);
    this.bytes += size;
    return true;
  };

  /**
   * `prefix` + the JSON array of the nodes taken + `suffix`: a stream of pieces, or one string when the page is
   * smaller than a piece (most pages: no stream to set up, and the answer has a Content-Length).
   */
  body(prefix: string, suffix: string): Readable | string {
    const texts = this.texts;
    if (this.bytes + prefix.length + suffix.length < chunkChars) return `${prefix}[${texts.join(',')}]${suffix}`;
    function* pieces(): Generator<string> {
      let piece = `${prefix}[`;
      for (let i = 0; i < texts.length; i++) {
        piece += i === 0 ? texts[i] : `,${texts[i]}`;
        if (piece.length >= chunkChars) {
          yield piece;
          piece = '';
        }
      }
      yield `${piece}]${suffix}`;
    }
    return Readable.from(pieces(), { objectMode: false });
  }
}
