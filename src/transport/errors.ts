/**
 * Operating errors of the cluster transport. They never reach HTTP clients (the transport speaks only to other
 * nodes), so they live here rather than in the HTTP error catalogue; the codes are stable because operators grep
 * logs for them.
 */

/** Why a transport handshake was refused: by the peer (reported through `refused`) or by this node (logged). */
export type TransportRefusalCode =
  | 'PROTOCOL_MISMATCH'
  | 'CLUSTER_NAME_MISMATCH'
  | 'CLUSTER_SECRET_MISMATCH'
  | 'CLUSTER_UUID_MISMATCH'
  | 'SELF_CONNECTION'
  | 'HANDSHAKE_TIMEOUT'
  | 'HANDSHAKE_INVALID'
  // The peer already holds transport.connectionsMax inbound connections.
  | 'TOO_MANY_CONNECTIONS'
  // The peer already has transport.handshakesMax handshakes in progress, or handshakesPerSourceMax from this address.
  | 'TOO_MANY_HANDSHAKES'
  // TLS failed before our own handshake could start: a certificate not signed by the cluster CA, or no TLS at all.
  | 'TLS_HANDSHAKE_FAILED';

export const transportRefusalCodes: readonly TransportRefusalCode[] = [
  'PROTOCOL_MISMATCH',
  'CLUSTER_NAME_MISMATCH',
  'CLUSTER_SECRET_MISMATCH',
  'CLUSTER_UUID_MISMATCH',
  'SELF_CONNECTION',
  'HANDSHAKE_TIMEOUT',
  'HANDSHAKE_INVALID',
  'TOO_MANY_CONNECTIONS',
  'TOO_MANY_HANDSHAKES',
  'TLS_HANDSHAKE_FAILED',
];

export function isTransportRefusalCode(value: unknown): value is TransportRefusalCode {
  return typeof value === 'string' && (transportRefusalCodes as readonly string[]).includes(value);
}

export type TransportErrorCode =
  | TransportRefusalCode
  /** A frame's declared length exceeds frameBytesMax (the receiver's, or the peer's for a frame we would send). */
  | 'FRAME_TOO_LARGE'
  /** A frame's body is not valid MessagePack, or a value cannot be encoded as MessagePack. */
  | 'FRAME_INVALID'
  /** A well-formed frame that the protocol does not allow at this point. */
  | 'PROTOCOL_VIOLATION'
  /** An address that is not host:port (or [ipv6]:port). */
  | 'ADDRESS_INVALID'
  /** Options that cannot work (an empty secret, a minimum above a maximum, unreadable TLS files). */
  | 'OPTIONS_INVALID'
  /** The transport is not running: start() was not called, or stop() was. */
  | 'NOT_RUNNING';

export class TransportError extends Error {
  readonly code: TransportErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: TransportErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransportError';
    this.code = code;
    this.details = details;
  }
}

export function isTransportError(err: unknown, code?: TransportErrorCode): err is TransportError {
  return err instanceof TransportError && (code === undefined || err.code === code);
}
