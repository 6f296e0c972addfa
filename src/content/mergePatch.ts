import type { JsonObject, JsonValue } from './model.js';

/** RFC 7396 JSON Merge Patch: objects merge recursively, null deletes, anything else replaces. */
export function applyMergePatch(target: JsonValue, patch: JsonValue): JsonValue {
  if (!isPlainObject(patch)) return patch;
  const result: JsonObject = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else {
      // defineProperty, not assignment: a key named "__proto__" must stay data, never become a prototype.
      Object.defineProperty(result, key, {
        value: applyMergePatch(Object.hasOwn(result, key) ? (result[key] as JsonValue) : null, value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return result;
}

export function isPlainObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
