import type { CoreOptions, RestoredState } from '../../src/core/coordinationCore.js';
import type { Entry, Random } from '../../src/core/types.js';

/**
 * Options and states for unit tests of one CoordinationCore, stepped by hand. Anything with more than one node runs
 * in the simulator (test/sim), through the runtime's own Ready loop: a transcript (test/transcripts) replays one
 * situation exactly.
 */

/** A seeded linear congruential generator (Numerical Recipes constants), 32-bit. */
export function lcg(seed: number): Random {
  let state = seed >>> 0;
  return {
    nextInt(bound: number): number {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return Math.floor((state / 0x1_0000_0000) * bound);
    },
  };
}

export const coreOptions = (id: string, seed: number, overrides: Partial<CoreOptions> = {}): CoreOptions => ({
  id,
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 2,
  appendEntriesMax: 4,
  inflightAppendsMax: 2,
  uncommittedEntriesMax: 64,
  clockDriftPercent: 10,
  readIndexPendingMax: 64,
  canBeMaster: true,
  random: lcg(seed),
  ...overrides,
});

export const fresh = (): RestoredState => ({ hardState: { term: 0, votedFor: null, commitIndex: 0 }, entries: [], appliedIndex: 0 });

/**
 * The journal of a cluster of `voters` after `commands` writes in term 1: the first configuration at index 1, then
 * one command entry each.
 */
export function journalOf(voters: readonly string[], commands: readonly unknown[]): Entry[] {
  return [
    { index: 1, term: 1, payload: { kind: 'configuration', current: [...voters] } },
    ...commands.map((data, i): Entry => ({ index: i + 2, term: 1, payload: { kind: 'command', data } })),
  ];
}

export const commands = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `cmd-${from + i}`);
