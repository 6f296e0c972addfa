import { ConclaveError } from '../errors/catalogue.js';
import type { Preconditions } from './commands.js';
import { etagOf, type ContentNode } from './model.js';
import { schemaEtag, type StoredSchema } from './schemaState.js';

/**
 * If-Match / If-None-Match against the node a write meets. apply() is where they decide; a caller may also check
 * them early (before streaming a large upload) to refuse without doing the work — apply() checks again.
 */
export function checkPreconditions(node: ContentNode | undefined, preconditions: Preconditions, path: string): void {
  if (preconditions.ifNoneMatch === '*' && node !== undefined) {
    throw new ConclaveError('PRECONDITION_FAILED', `If-None-Match: * failed: a node already exists at ${path}.`, {
      path,
      etag: etagOf(node),
    });
  }
  const ifMatch = preconditions.ifMatch;
  if (ifMatch === undefined) return;
  if (node === undefined) {
    throw new ConclaveError('PRECONDITION_FAILED', `If-Match failed: no node exists at ${path}.`, { path });
  }
  if (ifMatch !== '*' && !ifMatch.includes(etagOf(node))) {
    // A tag of this node at another version means it changed; any other tag never named this node at all.
    const id = etagOf(node).slice(1, -1).split(':')[0];
    const why = ifMatch.some((tag) => tag.startsWith(`"${id}:`))
      ? `the node at ${path} has changed: it is ${etagOf(node)} now`
      : `no tag given names the node now at ${path} (${etagOf(node)}); a tag names one node at one version`;
    throw new ConclaveError('PRECONDITION_FAILED', `If-Match failed: ${why}.`, {
      path,
      etag: etagOf(node),
    });
  }
}

/** If-Match / If-None-Match against the schema in force of a type (its tag names the type and the version). */
export function checkSchemaPreconditions(schema: StoredSchema | undefined, preconditions: Preconditions, typeName: string): void {
  if (preconditions.ifNoneMatch === '*' && schema !== undefined) {
    throw new ConclaveError('PRECONDITION_FAILED', `If-None-Match: * failed: the type ${typeName} has a schema in force.`, { type: typeName, etag: schemaEtag(schema) });
  }
  const ifMatch = preconditions.ifMatch;
  if (ifMatch === undefined) return;
  if (schema === undefined) throw new ConclaveError('PRECONDITION_FAILED', `If-Match failed: the type ${typeName} has no schema in force.`, { type: typeName });
  if (ifMatch !== '*' && !ifMatch.includes(schemaEtag(schema))) {
    throw new ConclaveError('PRECONDITION_FAILED', `If-Match failed: the schema of ${typeName} in force is ${schemaEtag(schema)}.`, { type: typeName, etag: schemaEtag(schema) });
  }
}
