/** The cluster transport's public surface; see transport.ts for the model. */
export {
  Transport,
  transportDefaults,
  formatAddress,
  parseAddress,
  reconnectDelayMs,
  type ClosingNotice,
  type OutgoingStats,
  type PeerInfo,
  type TransportEvents,
  type TransportLogger,
  type TransportOptions,
  type TransportTlsOptions,
} from './transport.js';
export { TransportError, isTransportError, isTransportRefusalCode, transportRefusalCodes, type TransportErrorCode, type TransportRefusalCode } from './errors.js';
export { FrameDecoder, encodeFrame, frameHeaderBytes } from './frames.js';
