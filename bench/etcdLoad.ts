import type { Etcd3 } from 'etcd3';

import { etcdClient, type EtcdCluster } from './etcdCluster.js';
import { withServerCpu } from './processCpu.js';
import { runLoad, type Channel, type Connect, type LoadResult, type LoadTiming, type Operation } from './load.js';
import { DocumentPaths, documentBody, documentText, documentTextChars } from './operations.js';

/**
 * The load scenarios of the comparison run against etcd: the same closed-loop clients (runLoad) and the same 1 KB
 * values (the bytes of Conclave's JSON document bodies) as Conclave's cluster-of-3 scenarios, with the etcd3
 * package's gRPC client instead of HTTP. Client i goes to member i mod 3, one client object (one HTTP/2 connection)
 * per member, as etcd's own clients multiplex their calls.
 */

export type EtcdReadConsistency = 'serializable' | 'linearizable';

export interface EtcdScenarioResult extends LoadResult {
  readonly name: string;
  readonly members: number;
  readonly consistency: EtcdReadConsistency | null;
  /** The members sent to, in the order of opsByOrigin, and which of them led when the scenario began. */
  readonly sentToMembers: readonly string[];
  readonly leader: string;
  /** CPU every member used over the scenario, in cores (null: not readable here). */
  readonly serverCpuCores: number | null;
}

export interface EtcdLoadOptions extends LoadTiming {
  readonly writeClientLevels: readonly number[];
  readonly readClients: number;
  readonly progress: (text: string) => void;
}

const callTimeoutMs = 10_000;

export const etcdClients: Connect<Etcd3> = (origin): Channel<Etcd3> => {
  const client = etcdClient(origin, callTimeoutMs);
  return { client, close: async () => client.close() };
};

/** Puts of fresh keys, each value the JSON body Conclave's writer sends for the same sequence number. */
export function etcdWriter(paths: DocumentPaths): Operation<Etcd3> {
  const text = documentText(documentTextChars);
  return async (client) => {
    const { path, sequence } = paths.fresh();
    await client.put(path).value(documentBody(sequence, text));
    paths.written.push(path);
    return 200;
  };
}

/** Gets of random keys among those written; a key that is not there is an error. */
export function etcdReader(paths: DocumentPaths, consistency: EtcdReadConsistency): Operation<Etcd3> {
  const written = paths.written;
  if (written.length === 0) throw new Error('no key was written, so there is nothing to read');
  return async (client) => {
    const key = written[Math.floor(Math.random() * written.length)]!;
    const value = await client.get(key).serializable(consistency === 'serializable').buffer();
    if (value === null) throw new Error(`${key} is missing`);
    return 200;
  };
}

/** Writes at every client level, then reads in both modes, on one running etcd cluster; one scenario at a time. */
export async function* etcdScenarioSteps(cluster: EtcdCluster, options: EtcdLoadOptions): AsyncGenerator<EtcdScenarioResult> {
  const leader = await cluster.leader();
  // Followers first, as for Conclave: a single client always goes through a follower (forwarded to the leader).
  const members = [...cluster.names.filter((n) => n !== leader), leader];
  const urls = members.map((n) => cluster.url(n));
  const labels = { members: members.length, sentToMembers: members, leader };
  const paths = new DocumentPaths('/bench');
  const pids = cluster.names.map((n) => cluster.pid(n));
  const load = async (label: string, clients: number, operation: Operation<Etcd3>) => {
    const { result, serverCpuCores } = await withServerCpu(pids, () => runLoad(label, urls, clients, options, operation, etcdClients));
    return { ...result, serverCpuCores };
  };
  for (const clients of options.writeClientLevels) {
    const name = 'durable write (put 1 KB)';
    options.progress(`etcd, ${name}, ${clients} client(s) over all members`);
    yield { name, consistency: null, ...labels, ...(await load(`etcd ${name}`, clients, etcdWriter(paths))) };
  }
  for (const consistency of ['serializable', 'linearizable'] as const) {
    const name = `read (get 1 KB), ${consistency}`;
    options.progress(`etcd, ${name}, ${options.readClients} clients over all members`);
    yield { name, consistency, ...labels, ...(await load(`etcd ${name}`, options.readClients, etcdReader(paths, consistency))) };
  }
}
