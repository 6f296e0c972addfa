import type { RuntimeOptions } from '../../src/node/clusterRuntime.js';

/** A one-node runtime's options for unit tests: fast ticks, small bounds. Override what a test is about. */
export function soloRuntimeOptions(overrides: Partial<RuntimeOptions> = {}): RuntimeOptions {
  return {
    self: { id: 'self', name: 'solo', address: '127.0.0.1:1', roles: { masterEligible: true, votingOnly: false }, version: '1.0.0' },
    clusterName: 'test',
    bootstrap: { kind: 'initialMasterNodes', names: ['solo'] },
    tickMs: 5,
    electionTimeoutTicks: 10,
    heartbeatIntervalTicks: 2,
    nodeFailureTimeoutTicks: 20,
    inSyncTimeoutTicks: 20,
    appendBytesMax: 1024 * 1024,
    publishTimeoutTicks: 100,
    clockDriftPercent: 5,
    readIndexTimeoutMs: 5000,
    readIndexWaitersMax: 64,
    groupCommitEntriesMax: 64,
    groupCommitBytesMax: 1 << 20,
    writeQueueEntriesMax: 100,
    writeQueueBytesMax: 1 << 20,
    frameBytesMax: 64 << 20,
    writeTimeoutMs: 5000,
    ...overrides,
  };
}
