/**
 * Quorums. A voting configuration is a set of node ids; a set of votes is a quorum of it when it holds more than
 * half of its members (floor(n/2) + 1). During a configuration change the journal runs under a joint
 * configuration, and a decision needs a quorum of the old AND of the new configuration (Raft thesis §4.3;
 * Elasticsearch's CoordinationState.isElectionQuorum does the same with last-committed and last-accepted).
 */
export type VotingConfiguration = ReadonlySet<string>;

export interface JointConfiguration {
  readonly current: VotingConfiguration;
  /** Present while a change is in flight: the configuration being moved to. */
  readonly next?: VotingConfiguration;
}

export function quorumSize(configuration: VotingConfiguration): number {
  return Math.floor(configuration.size / 2) + 1;
}

export function hasQuorum(configuration: VotingConfiguration, votes: ReadonlySet<string>): boolean {
  // An empty configuration has no quorum: nothing can be decided before bootstrap.
  if (configuration.size === 0) return false;
  let count = 0;
  for (const id of configuration) if (votes.has(id)) count++;
  return count >= quorumSize(configuration);
}

export function hasJointQuorum(joint: JointConfiguration, votes: ReadonlySet<string>): boolean {
  return hasQuorum(joint.current, votes) && (joint.next === undefined || hasQuorum(joint.next, votes));
}

/**
 * The highest index that a quorum of every configuration in force has matched: the commit index a leader may
 * advance to (given that the entry there is from its own term).
 */
export function quorumMatchIndex(joint: JointConfiguration, matchIndex: (id: string) => number): number {
  const of = (configuration: VotingConfiguration) => {
    if (configuration.size === 0) return 0;
    const indexes = [...configuration].map(matchIndex).sort((a, b) => b - a);
    return indexes[quorumSize(configuration) - 1]!;
  };
  return joint.next === undefined ? of(joint.current) : Math.min(of(joint.current), of(joint.next));
}
