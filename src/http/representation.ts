import type { Preconditions } from '../content/commands.js';
import { etagOf, type ContentNode } from '../content/model.js';
import { header } from '../auth/requestHeaders.js';
import { ConclaveError } from '../errors/catalogue.js';
import type { StoredNode } from '../storage/contentTables.js';

/** The JSON form of a node. The position among siblings is internal; the order of a listing shows it. */
export function nodeJson(node: ContentNode) {
  return {
    id: node.id,
    path: node.path,
    name: node.name,
    parentId: node.parentId,
    type: node.type,
    properties: node.properties,
    binaries: node.binaries,
    version: node.version,
    etag: etagOf(node),
    createdAt: node.createdAt,
    createdBy: node.createdBy,
    modifiedAt: node.modifiedAt,
    modifiedBy: node.modifiedBy,
  };
}

/**
 * The JSON text of a stored node: the very bytes JSON.stringify(nodeJson(node)) gives for it (same fields, same
 * order), with the stored text of the properties and binaries copied in instead of parsed and serialised again.
 */
export function storedNodeJson(node: StoredNode): string {
  const text = JSON.stringify;
  return (
    `{"id":${text(node.id)},"path":${text(node.path)},"name":${text(node.name)},"parentId":${text(node.parentId)},"type":${text(node.type)},` +
    `"properties":${node.propertiesJson},"binaries":${node.binariesJson},"version":${text(node.version)},"etag":${text(etagOf(node))},` +
    `"createdAt":${text(node.createdAt)},"createdBy":${text(node.createdBy)},"modifiedAt":${text(node.modifiedAt)},"modifiedBy":${text(node.modifiedBy)}}`
  );
}

// RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text; lists are
// separated by commas with optional white space. Node gives header values as latin1, so obs-text is \x80-\xff.
const entityTag = /[ \t]*(W\/)?("[\x21\x23-\x7e\x80-\xff]*")[ \t]*(,|$)/y;

/**
 * Parses If-Match / If-None-Match of a write. If-Match uses strong comparison (RFC 9110 §13.1.1): a weak tag never
 * matches, so a list of weak tags only is refused at once with 412 saying so, before anything is proposed.
 */
export function parsePreconditions(headers: Record<string, string | string[] | undefined>): Preconditions {
  const ifMatch = header(headers, 'if-match');
  const ifNoneMatch = header(headers, 'if-none-match');
  const pre: { ifMatch?: string[] | '*'; ifNoneMatch?: '*' } = {};
  if (ifMatch !== undefined) {
    pre.ifMatch = ifMatch.trim() === '*' ? '*' : parseTags(ifMatch, 'If-Match');
    if (pre.ifMatch.length === 0) {
      throw new ConclaveError(
        'PRECONDITION_FAILED',
        `If-Match ${ifMatch.trim().slice(0, 200)} names only weak entity tags (W/"..."), and If-Match compares strongly: a weak tag never matches. Send the ETag exactly as a read returned it.`,
        { weak: true },
      );
    }
  }
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') {
      throw new ConclaveError('INVALID_REQUEST', 'On writes, If-None-Match takes only "*" (create-only).');
    }
    pre.ifNoneMatch = '*';
  }
  return pre;
}

/**
 * The entity tags of an If-Match / If-None-Match header. 'strong' comparison (writes) drops weak tags, which never
 * match; 'weak' comparison (If-None-Match on reads, RFC 9110 §13.1.2) keeps them as their opaque tag, so a tag
 * weakened by a proxy still revalidates.
 */
export function parseTags(text: string, name: string, comparison: 'strong' | 'weak' = 'strong'): string[] {
  const tags: string[] = [];
  entityTag.lastIndex = 0;
  while (entityTag.lastIndex < text.length) {
    const match = entityTag.exec(text);
    if (match === null) {
      throw new ConclaveError(
        'INVALID_REQUEST',
        `${name} must be "*" or a comma-separated list of quoted entity tags such as "id:3" (printable characters, no spaces or quotes inside); it was ${text.trim().slice(0, 200)}.`,
        { header: name },
      );
    }
    if (match[1] === undefined || comparison === 'weak') tags.push(match[2]!);
    if (match[3] === '') break;
  }
  if (text.trim() === '') throw new ConclaveError('INVALID_REQUEST', `${name} is empty; send "*" or quoted entity tags.`, { header: name });
  return tags;
}

/** Re-exported for the routes: it lives below src/http, which the relay and node-to-node transfers read too. */
export { header };

export function isTrue(value: unknown, field: string): boolean {
  if (value === undefined || value === 'false') return false;
  if (value === 'true' || value === '') return true;
  throw new ConclaveError('INVALID_REQUEST', `"${field}" must be true or false.`, { field });
}
