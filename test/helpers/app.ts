import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';

import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/settings.js';
import { ConclaveNode } from '../../src/node/conclaveNode.js';
import { tempDir, waitFor } from './tmp.js';

export const adminPassword = 'test-admin-password';
export const adminAuth = `Basic ${Buffer.from(`admin:${adminPassword}`).toString('base64')}`;

export interface TestNode {
  readonly node: ConclaveNode;
  readonly app: FastifyInstance;
  readonly dir: string;
  readonly config: Config;
  /** app.inject with the admin's credentials unless headers.authorization is given (null: none). */
  request(options: InjectOptions & { auth?: string | null }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** A real node (real SQLite in a temp dir) driven in-process through app.inject — no socket needed. */
export async function openTestNode(settings: Record<string, string | number | boolean> = {}, dir?: string): Promise<TestNode> {
  const tmp = dir === undefined ? tempDir() : { dir, cleanup: () => undefined };
  const config = loadConfig({ env: {}, flags: { 'data.dir': tmp.dir, 'http.port': 0, 'transport.port': 0, ...settings } });
  const node = await ConclaveNode.open(config, pino({ level: 'silent' }), { adminPassword, announce: () => undefined });
  await node.app.ready();
  // A node of one adds itself to its in-sync set on a tick after it forms the cluster, and under load that entry
  // can commit after the repository's bootstrap (when open() returns): a test that reads an index and counts on
  // the next entry being its own would race it.
  if (config.cluster.seeds.length === 0) {
    await waitFor('the node in its own in-sync set', () => (node.runtime.clusterState().inSync.includes(node.runtime.self().id) ? true : undefined)).catch(async (err: unknown) => {
      await node.stop();
      throw err;
    });
  }
  return {
    node,
    app: node.app,
    dir: tmp.dir,
    config,
    request(options) {
      const { auth, ...rest } = options;
      const headers = { ...(rest.headers ?? {}) } as Record<string, string>;
      if (auth !== null && headers['authorization'] === undefined) headers['authorization'] = auth ?? adminAuth;
      return node.app.inject({ ...rest, headers });
    },
    async close() {
      await node.stop();
      tmp.cleanup();
    },
  };
}

export function json(body: unknown): { payload: string; headers: Record<string, string> } {
  return { payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}
