/**
 * fast-check parameters shared by the simulation tests. fast-check prints the seed (and the
 * counterexample path) of a failing run; CONCLAVE_TEST_SEED=<seed> replays that run.
 */
import type { Parameters } from 'fast-check';

export function propertyParameters<T>(numRuns: number): Parameters<T> {
  const seedText = process.env['CONCLAVE_TEST_SEED'];
  if (seedText === undefined || seedText.trim() === '') return { numRuns };
  const seed = Number(seedText);
  if (!Number.isInteger(seed)) throw new Error(`CONCLAVE_TEST_SEED must be an integer, got ${JSON.stringify(seedText)}`);
  return { numRuns, seed };
}
