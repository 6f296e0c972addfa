import http from 'node:http';

/** What a test needs of a response; both app.inject responses and rawRequest answers fit it. */
export interface ResponseLike {
  readonly statusCode: number;
  readonly headers: Record<string, unknown>;
  readonly body: string;
}

/**
 * One request over a real socket, with the path sent exactly as given. app.inject parses URLs with WHATWG URL,
 * which resolves "." and ".." segments (also %2E%2E) before the server sees them; a real client can send them
 * literally (curl --path-as-is), so tests of dot segments go through here.
 */
export function rawRequest(
  baseUrl: string,
  options: { method: string; path: string; headers?: Record<string, string>; payload?: string | Buffer; localAddress?: string },
): Promise<ResponseLike> {
  const base = new URL(baseUrl);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.payload !== undefined) headers['content-length'] = String(Buffer.byteLength(options.payload));
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: base.hostname, port: base.port, method: options.method, path: options.path, headers, agent: false, localAddress: options.localAddress },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () =>
          resolve({
            statusCode: response.statusCode ?? 0,
            headers: response.headers as Record<string, unknown>,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
      },
    );
    request.on('error', reject);
    request.end(options.payload);
  });
}
