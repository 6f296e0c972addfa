import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import { createSecureContext } from 'node:tls';

import { ConfigError } from '../config/load.js';
import type { Config } from '../config/settings.js';
import type { NodeTlsMaterial } from '../replication/internalHttp.js';

/**
 * TLS files named in the configuration, read once at start: the API's (http.tls*File, which may come from a public
 * CA) and the node's transport material, which node-to-node HTTP uses too (transport.tls*File, the cluster's CA).
 * Settings name files, never key material, so that no key shows in argv or the environment of `ps`.
 */
function read(setting: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`Cannot read ${setting} ${file}: ${(err as Error).message}`);
  }
}

/** Fastify's https option for the API, or null for plain HTTP. */
export function httpsOptionsOf(config: Config): ServerOptions | null {
  const { tlsCertFile, tlsKeyFile, tlsClientCaFile } = config.http;
  if (tlsCertFile === '') return null;
  const options: ServerOptions = {
    cert: read('http.tlsCertFile', tlsCertFile),
    key: read('http.tlsKeyFile', tlsKeyFile),
    ...(tlsClientCaFile !== '' ? { ca: read('http.tlsClientCaFile', tlsClientCaFile), requestCert: true, rejectUnauthorized: true } : {}),
  };
  try {
    // A key that does not match its certificate must fail the start, not the first client's handshake.
    createSecureContext(options);
  } catch (err) {
    throw new ConfigError(`The files ${tlsCertFile} and ${tlsKeyFile} (http.tlsCertFile, http.tlsKeyFile) do not make a usable TLS setup: ${(err as Error).message}`);
  }
  return options;
}

/** The transport's TLS material, or null when nodes talk without TLS. */
export function nodeTlsOf(config: Config): NodeTlsMaterial | null {
  const { tlsCertFile, tlsKeyFile, tlsCaFile } = config.transport;
  if (tlsCertFile === '') return null;
  return { cert: read('transport.tlsCertFile', tlsCertFile), key: read('transport.tlsKeyFile', tlsKeyFile), ca: read('transport.tlsCaFile', tlsCaFile) };
}
