import { hasQuorum, type VotingConfiguration } from './quorum.js';

/**
 * The voting configuration the cluster should have, by the CrateDB / Elasticsearch rules:
 *
 * - all master-eligible nodes when their number is odd, all but one when it is even (an even configuration
 *   tolerates no more failures than the odd one below it, and is easier to split in half);
 * - once it has reached three nodes it never shrinks below three: losing nodes one at a time then keeps the
 *   cluster available down to two live members of the three (the seeds' maintenance example);
 * - voting exclusions are honoured (excluded nodes are removed, even below three);
 * - the current master is kept, then current members, then new nodes, in id order for determinism;
 * - a new configuration is only adopted if the live nodes hold a quorum of it, and if it holds a node that can
 *   lead (not voting-only): otherwise the current one stays (excluding every node that could be master would
 *   leave a cluster that can never elect one again).
 *
 * Pure: the caller passes everything it knows; the result depends only on the arguments.
 */
export interface ReconfigureInput {
  /** Master-eligible nodes (including voting-only ones) that are currently live members of the cluster. */
  readonly liveEligible: ReadonlySet<string>;
  /** Voting exclusions: nodes to remove from the configuration, whether live or not. */
  readonly excluded: ReadonlySet<string>;
  /** The current master's id. It is live by definition and stays in the configuration unless excluded. */
  readonly master: string;
  readonly current: VotingConfiguration;
  /**
   * The nodes known to be able to lead (master-eligible members that are not voting-only). A configuration must
   * hold one of them; when absent, every node counts as able to lead.
   */
  readonly canLead?: ReadonlySet<string>;
}

/** n when odd, n - 1 when even: the largest odd size not above n. */
export function roundDownToOdd(n: number): number {
  return n % 2 === 0 ? n - 1 : n;
}

export function reconfigure(input: ReconfigureInput): VotingConfiguration {
  const { liveEligible, excluded, master, current } = input;
  const byId = (ids: Iterable<string>) => [...ids].sort();
  const nonExcludedCurrent = byId(current).filter((id) => !excluded.has(id));
  const minimumSize = nonExcludedCurrent.length < 3 ? 1 : 3;
  const liveNonExcluded = byId(liveEligible).filter((id) => !excluded.has(id));
  const targetSize = Math.max(roundDownToOdd(liveNonExcluded.length), minimumSize);

  const liveInCurrent = nonExcludedCurrent.filter((id) => liveEligible.has(id));
  const masterFirst = liveInCurrent.includes(master) || (liveEligible.has(master) && !excluded.has(master))
    ? [master, ...liveInCurrent.filter((id) => id !== master)]
    : liveInCurrent;
  const liveNotInCurrent = liveNonExcluded.filter((id) => !current.has(id) && id !== master);
  const notLiveInCurrent = nonExcludedCurrent.filter((id) => !liveEligible.has(id) && id !== master);

  const candidate = new Set([...masterFirst, ...liveNotInCurrent, ...notLiveInCurrent].slice(0, Math.max(targetSize, 0)));
  const canLead = input.canLead === undefined || [...candidate].some((id) => input.canLead!.has(id));
  return hasQuorum(candidate, liveEligible) && canLead ? candidate : current;
}
