/**
 * Reading the headers of an HTTP request: one header's value, and whether a body follows. Here, below src/http,
 * because node-to-node authentication (internalAuth.ts), the request relay (src/forwarding) and the internal
 * transfers (src/replication) read them too; src/http re-exports `header` from representation.ts.
 */

/** One header's value; a repeated header's values joined with ", " (RFC 9110 §5.3). */
export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Whether a request carries a body: a Content-Length above 0, or chunks. */
export function requestHasBody(headers: { readonly [name: string]: string | string[] | undefined }): boolean {
  if (headers['transfer-encoding'] !== undefined) return true;
  const length = Number(headers['content-length'] ?? 0);
  return !Number.isFinite(length) || length > 0;
}
