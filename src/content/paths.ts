import { ConclaveError } from '../errors/catalogue.js';

import { nameBytesMax, pathBytesMax, pathDepthMax } from './limits.js';

export const rootPath = '/';

/**
 * Bytes of the text in UTF-8, as TextEncoder writes it (a lone surrogate as the 3 bytes of U+FFFD). Counted, not
 * encoded: every read checks its path segment by segment, and an encoding allocated each time showed in profiles.
 */
export function utf8Bytes(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) {
      bytes += 1;
    } else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // a surrogate pair: 4 bytes for 2 units
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
}

// eslint-disable-next-line no-control-regex
const controlCharacters = /[\u0000-\u001f\u007f]/;

/** Checks one path segment and returns a message when it is not acceptable. */
export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return 'a path segment is empty (two slashes in a row, or a trailing slash)';
  if (name === '.' || name === '..') return `the segment "${name}" is not allowed: paths are absolute and literal`;
  if (name.includes('/')) return 'a name cannot contain "/"';
  if (controlCharacters.test(name)) return 'a name cannot contain control characters';
  if (utf8Bytes(name) > nameBytesMax) return `a name is longer than ${nameBytesMax} bytes`;
  return undefined;
}

/**
 * Validates an absolute content path and returns it unchanged. Paths are never normalised silently: a client that
 * sends "/a//b" or "/a/./b" gets an error rather than a write to a path it did not name.
 */
export function parsePath(raw: unknown, what = 'path'): string {
  if (typeof raw !== 'string') {
    throw new ConclaveError('INVALID_PATH', `The ${what} must be a string.`);
  }
  if (!raw.startsWith('/')) {
    throw new ConclaveError('INVALID_PATH', `The ${what} "${clip(raw)}" must start with "/".`, { path: clip(raw) });
  }
  if (raw === rootPath) return raw;
  if (utf8Bytes(raw) > pathBytesMax) {
    throw new ConclaveError('INVALID_PATH', `The ${what} is longer than ${pathBytesMax} bytes.`);
  }
  const segments = raw.slice(1).split('/');
  if (segments.length > pathDepthMax) {
    throw new ConclaveError('INVALID_PATH', `The ${what} is deeper than ${pathDepthMax} levels.`, { path: clip(raw) });
  }
  for (const segment of segments) {
    const problem = nameProblem(segment);
    if (problem !== undefined) {
      throw new ConclaveError('INVALID_PATH', `The ${what} "${clip(raw)}" is not acceptable: ${problem}.`, {
        path: clip(raw),
      });
    }
  }
  return raw;
}

export function parentPath(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut <= 0 ? rootPath : path.slice(0, cut);
}

export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

export function joinPath(parent: string, name: string): string {
  return parent === rootPath ? `/${name}` : `${parent}/${name}`;
}

export function isSameOrDescendant(path: string, ancestor: string): boolean {
  if (ancestor === rootPath) return true;
  return path === ancestor || path.startsWith(`${ancestor}/`);
}

/**
 * The open range of path strings that holds exactly the strict descendants of `path`: every descendant starts
 * with "path/", and "0" is the character after "/", so (path + "/", path + "0") is the subtree without the node
 * itself — low is excluded because for the root it is the root's own path. One range scan of the path index.
 */
export function descendantRange(path: string): { low: string; high: string } {
  const prefix = path === rootPath ? '' : path;
  return { low: `${prefix}/`, high: `${prefix}0` };
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
