import { ConclaveError } from '../errors/catalogue.js';
import {
  binaryPropertiesPerNodeMax,
  nodeTypeBytesMax,
  propertiesBytesMax,
  propertiesDepthMax,
  userNameBytesMax,
} from './limits.js';
import { isPlainObject } from './mergePatch.js';
import { roles, type JsonObject, type Role } from './model.js';
import { nameProblem, utf8Bytes } from './paths.js';

/** Input checks shared by the HTTP layer (before proposing) and apply() (on state-dependent results). */

const nodeTypePattern = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

export function parseNodeType(raw: unknown): string {
  if (typeof raw !== 'string' || !nodeTypePattern.test(raw) || utf8Bytes(raw) > nodeTypeBytesMax) {
    throw new ConclaveError(
      'INVALID_REQUEST',
      `"type" must be a string of letters, digits, "_", ".", ":" or "-", starting with a letter, at most ${nodeTypeBytesMax} bytes.`,
      { field: 'type' },
    );
  }
  return raw;
}

export function parseProperties(raw: unknown, field = 'properties'): JsonObject {
  if (!isPlainObject(raw)) {
    throw new ConclaveError('INVALID_PROPERTIES', `"${field}" must be a JSON object.`, { field });
  }
  checkPropertiesSize(raw);
  return raw;
}

/** How deeply objects and arrays nest, counted without recursion (the value may be hostile). */
export function nestingDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    deepest = Math.max(deepest, depth);
    if (deepest > limit) return deepest;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/**
 * The JSON text checkPropertiesSize measured, by properties object, until the content tables store it
 * (takePropertiesJson): serialising a 16 KiB document again took as long as inserting it. Properties objects are
 * never changed once checked (commands and nodes are immutable), so the text stays theirs.
 */
const checkedPropertiesJson = new WeakMap<JsonObject, string>();

/** The JSON text of `properties`: the one measured when they were checked (taken: it is kept once), else serialised now. */
export function takePropertiesJson(properties: JsonObject): string {
  const json = checkedPropertiesJson.get(properties);
  if (json === undefined) return JSON.stringify(properties);
  checkedPropertiesJson.delete(properties);
  return json;
}

export function checkPropertiesSize(properties: JsonObject): void {
  if (nestingDepth(properties, propertiesDepthMax) > propertiesDepthMax) {
    throw new ConclaveError('INVALID_PROPERTIES', `Properties nest deeper than ${propertiesDepthMax} levels of objects and arrays.`, {
      limit: propertiesDepthMax,
    });
  }
  const json = JSON.stringify(properties);
  const bytes = utf8Bytes(json);
  if (bytes > propertiesBytesMax) {
    throw new ConclaveError(
      'INVALID_PROPERTIES',
      `The properties of one node take ${bytes} bytes; the limit is ${propertiesBytesMax}. Store large values as binaries.`,
      { bytes, limit: propertiesBytesMax },
    );
  }
  checkedPropertiesJson.set(properties, json);
}

const binaryNamePattern = /^[A-Za-z0-9_.:-]+$/;

export function parseBinaryProperty(raw: unknown): string {
  if (typeof raw !== 'string' || !binaryNamePattern.test(raw) || raw.length > 128) {
    throw new ConclaveError(
      'INVALID_REQUEST',
      'The binary property name (?property=) must be 1-128 letters, digits, "_", ".", ":" or "-".',
      { field: 'property' },
    );
  }
  return raw;
}

export function checkBinaryCount(count: number): void {
  if (count > binaryPropertiesPerNodeMax) {
    throw new ConclaveError('INVALID_REQUEST', `A node holds at most ${binaryPropertiesPerNodeMax} binary properties.`);
  }
}

const userNamePattern = /^[A-Za-z0-9_.@-]+$/;

export function parseUserName(raw: unknown): string {
  if (typeof raw !== 'string' || !userNamePattern.test(raw) || utf8Bytes(raw) > userNameBytesMax) {
    throw new ConclaveError(
      'INVALID_REQUEST',
      `A user name is 1-${userNameBytesMax} letters, digits, "_", ".", "@" or "-".`,
      { field: 'name' },
    );
  }
  return raw;
}

export function parseRoles(raw: unknown): Role[] {
  if (!Array.isArray(raw) || raw.length === 0 || !raw.every((r) => (roles as readonly unknown[]).includes(r))) {
    throw new ConclaveError('INVALID_REQUEST', `"roles" must be a non-empty array of ${roles.join(', ')}.`, {
      field: 'roles',
    });
  }
  return [...new Set(raw as Role[])];
}

export function parseChildName(raw: unknown, field: string): string {
  const problem = typeof raw === 'string' ? nameProblem(raw) : 'it must be a string';
  if (problem !== undefined) {
    throw new ConclaveError('INVALID_PATH', `"${field}" is not an acceptable name: ${problem}.`, { field });
  }
  return raw as string;
}
