import http from 'node:http';
import net from 'node:net';

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

/**
 * Sends `bytes` as they are on a fresh TCP connection and parses the first answer, for requests no HTTP client will
 * send (malformed request lines, oversized or broken headers). Resolves with null when the server closed the
 * connection without answering; rejects when no answer came within `timeoutMs`.
 */
export function rawExchange(baseUrl: string, bytes: string | Buffer, timeoutMs = 5_000): Promise<ResponseLike | null> {
  const base = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(Number(base.port), base.hostname, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms to ${JSON.stringify(String(bytes).slice(0, 80))}`));
    }, timeoutMs);
    const finish = () => {
      clearTimeout(timer);
      resolve(parseFirstResponse(Buffer.concat(chunks)));
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      // The server keeps a valid connection open after a complete answer: stop once one is complete.
      if (parseFirstResponse(Buffer.concat(chunks), true) !== null) {
        socket.destroy();
        finish();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', finish);
  });
}

/** The first HTTP/1.1 response in `data` (Content-Length or chunked body); null when there is none, or (complete) not all of it yet. */
function parseFirstResponse(data: Buffer, complete = false): ResponseLike | null {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
  if (status === null) return null;
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let rest = data.subarray(end + 4);
  let body: Buffer;
  if (headers['transfer-encoding'] === 'chunked') {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = rest.indexOf('\r\n');
      if (lineEnd < 0) return complete ? null : { statusCode: Number(status[1]), headers, body: Buffer.concat(parts).toString('utf8') };
      const size = parseInt(rest.subarray(0, lineEnd).toString('latin1'), 16);
      if (size === 0) break;
      if (rest.length < lineEnd + 2 + size) return complete ? null : { statusCode: Number(status[1]), headers, body: Buffer.concat(parts).toString('utf8') };
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      rest = rest.subarray(lineEnd + 2 + size + 2);
    }
    body = Buffer.concat(parts);
  } else {
    const length = Number(headers['content-length'] ?? 0);
    if (complete && rest.length < length) return null;
    body = rest.subarray(0, length);
  }
  return { statusCode: Number(status[1]), headers, body: body.toString('utf8') };
}
