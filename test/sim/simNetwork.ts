import type { ClusterMessage as Message } from '../../src/core/clusterMessages.js';
import type { SimRandom } from './simRandom.js';
import type { SimScheduler } from './simScheduler.js';

/**
 * The simulated network between nodes: every message gets a random latency (so messages reorder), may be
 * dropped or duplicated, and is lost when a partition blocks its link. Links are directed, so partitions can be
 * symmetric, one-way, or non-transitive (a bridge node that both sides reach while they cannot reach each other).
 * A partition is checked both when a message is sent and when it arrives: a message in flight when a link is
 * cut is lost, as on a real connection that resets.
 *
 * Stragglers: while a Straggling is in force, a message on one of its links is, with its probability, held back
 * for several election timeouts and then delivered — after terms have moved on, out of order with what was sent
 * after it (a route that blackholes some packets until a retransmission gets through, a connection replaced while
 * its old buffer still drains). Latency is otherwise short beside an election timeout, so without this no vote
 * request, refusal or acknowledgement ever arrives from an earlier era of the cluster (issue 13, item 2).
 */
export interface NetworkOptions {
  /** Latency of a normal delivery, uniform in [min, max] time units. */
  readonly latencyMin: number;
  readonly latencyMax: number;
  /** Probability that a message is slow (latency times `slowFactor`): this is what reorders messages a lot. */
  readonly slowProbability: number;
  readonly slowFactor: number;
  readonly dropRate: number;
  readonly duplicateRate: number;
}

export interface Partition {
  /** For traces and failure reports, e.g. "{n1,n2} | {n3,n4,n5}". */
  readonly description: string;
  /** Directed links that drop everything, as "from>to". */
  readonly blocked: ReadonlySet<string>;
}

/**
 * Messages on `links` are held back with `probability`, each for a delay uniform in [min, max] units — counted from
 * `releaseAt` when given (a route that comes back at that time and delivers its backlog in any order).
 */
export interface Straggling {
  readonly description: string;
  /** Directed links, as "from>to". */
  readonly links: ReadonlySet<string>;
  readonly probability: number;
  readonly delayUnitsMin: number;
  readonly delayUnitsMax: number;
  readonly releaseAt?: number;
}

export interface NetworkStats {
  sent: number;
  /** Messages held back by a Straggling (delivered late, unless a partition or a crash takes them). */
  straggled: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  blocked: number;
}

export class SimNetwork {
  private dropRate: number;
  private duplicateRate: number;
  private partitionInForce: Partition | null = null;
  private stragglingInForce: Straggling | null = null;
  /** Messages matching one of these are kept in `held` until release() (transcripts replay a schedule with them). */
  private readonly holds: Array<(m: Message) => boolean> = [];
  readonly held: Message[] = [];
  readonly stats: NetworkStats = { sent: 0, straggled: 0, delivered: 0, dropped: 0, duplicated: 0, blocked: 0 };

  constructor(
    private readonly scheduler: SimScheduler,
    private readonly random: SimRandom,
    private readonly options: NetworkOptions,
    /** Hands an arrived message to its node (which may be crashed or paused: the node decides). */
    private readonly deliver: (message: Message) => void,
  ) {
    this.dropRate = options.dropRate;
    this.duplicateRate = options.duplicateRate;
  }

  /** Keeps every later message that `matches` until release(). */
  hold(matches: (m: Message) => boolean): void {
    this.holds.push(matches);
  }

  /** Delivers the held messages `matches` picks, oldest first (a partition still blocks them); returns them. */
  release(matches: (m: Message) => boolean): Message[] {
    const chosen = this.held.filter(matches);
    for (const m of chosen) this.held.splice(this.held.indexOf(m), 1);
    for (const m of chosen) {
      if (!this.canReach(m.from, m.to)) {
        this.stats.blocked++;
        continue;
      }
      this.stats.delivered++;
      this.deliver(m);
    }
    return chosen;
  }

  /** Discards the held messages `matches` picks (lost on the way); returns them. */
  drop(matches: (m: Message) => boolean): Message[] {
    const chosen = this.held.filter(matches);
    for (const m of chosen) this.held.splice(this.held.indexOf(m), 1);
    this.stats.dropped += chosen.length;
    return chosen;
  }

  /** Ends every hold; what they kept stays held until released. */
  endHolds(): void {
    this.holds.length = 0;
  }

  send(message: Message): void {
    this.stats.sent++;
    if (this.holds.some((matches) => matches(message))) {
      this.held.push(message);
      return;
    }
    if (!this.canReach(message.from, message.to)) {
      this.stats.blocked++;
      return;
    }
    if (this.random.chance(this.dropRate)) {
      this.stats.dropped++;
      return;
    }
    this.schedule(message);
    if (this.random.chance(this.duplicateRate)) {
      this.stats.duplicated++;
      this.schedule(message);
    }
  }

  canReach(from: string, to: string): boolean {
    return this.partitionInForce === null || !this.partitionInForce.blocked.has(`${from}>${to}`);
  }

  get partition(): Partition | null {
    return this.partitionInForce;
  }

  /** Replaces any partition in force. */
  setPartition(partition: Partition): void {
    this.partitionInForce = partition;
  }

  heal(): void {
    this.partitionInForce = null;
  }

  get straggling(): Straggling | null {
    return this.stragglingInForce;
  }

  /** Replaces any straggling in force (null: none). Messages already held back still arrive late. */
  setStraggling(straggling: Straggling | null): void {
    this.stragglingInForce = straggling;
  }

  setDropRate(rate: number): void {
    this.dropRate = rate;
  }

  setDuplicateRate(rate: number): void {
    this.duplicateRate = rate;
  }

  get currentDropRate(): number {
    return this.dropRate;
  }

  get baseDropRate(): number {
    return this.options.dropRate;
  }

  get baseDuplicateRate(): number {
    return this.options.duplicateRate;
  }

  private schedule(message: Message): void {
    let latency = this.random.between(this.options.latencyMin, this.options.latencyMax);
    if (this.random.chance(this.options.slowProbability)) latency *= this.options.slowFactor;
    const straggling = this.stragglingInForce;
    if (straggling !== null && straggling.links.has(link(message.from, message.to)) && this.random.chance(straggling.probability)) {
      this.stats.straggled++;
      const held = Math.max(0, (straggling.releaseAt ?? this.scheduler.now) - this.scheduler.now);
      latency += held + this.random.between(straggling.delayUnitsMin, straggling.delayUnitsMax);
    }
    this.scheduler.after(latency, () => {
      if (!this.canReach(message.from, message.to)) {
        this.stats.blocked++;
        return;
      }
      this.stats.delivered++;
      this.deliver(message);
    });
  }
}

const link = (from: string, to: string) => `${from}>${to}`;
const describeGroup = (group: readonly string[]) => `{${[...group].sort().join(',')}}`;

/** Neither side reaches the other. */
export function symmetricPartition(sideA: readonly string[], sideB: readonly string[]): Partition {
  const blocked = new Set<string>();
  for (const a of sideA) {
    for (const b of sideB) {
      blocked.add(link(a, b));
      blocked.add(link(b, a));
    }
  }
  return { description: `${describeGroup(sideA)} | ${describeGroup(sideB)}`, blocked };
}

/** `senders` cannot reach `receivers`; the other direction still works (a half-broken link, a firewall rule). */
export function oneWayPartition(senders: readonly string[], receivers: readonly string[]): Partition {
  const blocked = new Set<string>();
  for (const a of senders) for (const b of receivers) blocked.add(link(a, b));
  return { description: `${describeGroup(senders)} -/-> ${describeGroup(receivers)}`, blocked };
}

/** Every directed link out of `from` to each of `to`. */
export function linksBetween(from: readonly string[], to: readonly string[]): Set<string> {
  const links = new Set<string>();
  for (const a of from) for (const b of to) if (a !== b) links.add(link(a, b));
  return links;
}

/**
 * Non-transitive: the two sides cannot reach each other, but `bridge` (on neither side) reaches and is reached
 * by both. A bridge that relays nothing is exactly what breaks naive "I can reach a majority" reasoning.
 */
export function bridgePartition(sideA: readonly string[], sideB: readonly string[], bridge: string): Partition {
  const { blocked } = symmetricPartition(sideA, sideB);
  return { description: `${describeGroup(sideA)} | ${describeGroup(sideB)} bridged by ${bridge}`, blocked };
}
