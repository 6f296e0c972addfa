import type { JobState } from '../../src/core/clusterJobs.js';
import type { ClusterChange } from '../../src/core/clusterState.js';
import { bridgePartition, linksBetween, oneWayPartition, symmetricPartition, type Partition, type Straggling } from './simNetwork.js';
import type { CrashPoint } from './simNode.js';
import type { SimCluster } from './simCluster.js';
import type { SimRandom } from './simRandom.js';

/**
 * The fault injector of the safety phase: at random intervals it crashes a node (between steps, or in the middle
 * of handling a Ready) and restarts it later, pauses and resumes a node, cuts the network (symmetric, one-way,
 * bridged, or the master alone) and heals it, fills a node's disk for a while (it stores no entries meanwhile),
 * raises the drop and duplicate rates for a while, holds back messages on some links for several election timeouts
 * (stragglers: they arrive after terms have moved on), pauses the master for about as long as its lease (so that
 * it resumes on either side of the lease's end, its followers possibly campaigning), and plays an operator who
 * changes the cluster state (voting exclusions, settings, removals). `healEverything` ends it all for the liveness
 * phase.
 *
 * Stragglers and lease-length pauses together draw schedules like issue 13's item 2 — a delayed refusal moving a
 * voter into a candidate's term, the candidate's delayed vote request arriving just after the voter heard from the
 * old master — which latency alone never does; the mutation check stickyOnlyAboveOwnTerm is caught through them.
 */
export interface FaultOptions {
  /** Time between two faults, uniform in [min, max] units. */
  readonly intervalUnitsMin: number;
  readonly intervalUnitsMax: number;
  /** How long a fault lasts before it is undone (a restart, a resume, a heal), uniform in [min, max] units. */
  readonly durationUnitsMin: number;
  readonly durationUnitsMax: number;
}

type FaultKind = 'crash' | 'pause' | 'leasePause' | 'partition' | 'lossy' | 'straggle' | 'operator' | 'diskFull';

export class FaultInjector {
  private active = false;
  /** No new fault before this time (see leasePause). */
  private quietUntil = 0;
  readonly counts: Record<FaultKind, number> = { crash: 0, pause: 0, leasePause: 0, partition: 0, lossy: 0, straggle: 0, operator: 0, diskFull: 0 };

  constructor(
    private readonly cluster: SimCluster,
    private readonly random: SimRandom,
    private readonly options: FaultOptions,
    private readonly diskRandom: SimRandom,
  ) {}

  start(): void {
    this.active = true;
    this.scheduleNext();
    this.scheduleDiskFaults();
  }

  stop(): void {
    this.active = false;
  }

  /** The start of the liveness phase: no partition, base loss rates, every node restarted or resumed. */
  healEverything(): void {
    this.stop();
    const { cluster } = this;
    cluster.trace('heal everything');
    cluster.heal();
    cluster.straggle(null);
    cluster.network.setDropRate(0);
    cluster.network.setDuplicateRate(0);
    for (const node of cluster.nodes) {
      node.disarmCrash();
      node.storage.full = false;
      if (!node.started) cluster.startNow(node.id);
      else if (node.status === 'crashed') node.restart();
      else if (node.status === 'paused') node.resume();
    }
  }

  private scheduleNext(): void {
    this.cluster.scheduler.after(this.random.between(this.options.intervalUnitsMin, this.options.intervalUnitsMax), () => {
      if (!this.active) return;
      this.inject();
      this.scheduleNext();
    });
  }

  private duration(): number {
    return this.random.between(this.options.durationUnitsMin, this.options.durationUnitsMax);
  }

  /** Undo `undo` after a while, unless the safety phase is over (healEverything did it already). */
  private later(undo: () => void): void {
    this.cluster.scheduler.after(this.duration(), () => {
      if (this.active) undo();
    });
  }

  private inject(): void {
    // A lease-length pause plays out on its own: a crash or a partition meanwhile would spoil the schedule it draws.
    if (this.cluster.now < this.quietUntil) return;
    const { cluster } = this;
    const nodes = cluster.nodes;
    const down = nodes.filter((n) => n.status !== 'running').length;
    // Keep at most a bare majority down at once, so that the workload gets somewhere between faults.
    const mayTakeDown = down < Math.floor(nodes.length / 2) + 1;
    const kind = this.random.weighted<FaultKind>([
      [mayTakeDown ? 3 : 0, 'crash'],
      [mayTakeDown ? 2 : 0, 'pause'],
      [mayTakeDown && this.cluster.master() !== null ? 4 : 0, 'leasePause'],
      [3, 'partition'],
      [1, 'lossy'],
      [2, 'straggle'],
      [1, 'operator'],
    ]);
    this.counts[kind]++;
    switch (kind) {
      case 'crash':
        return this.crash();
      case 'pause':
        return this.pause();
      case 'leasePause':
        return this.leasePause();
      case 'straggle':
        return this.straggle();
      case 'partition':
        return this.partition();
      case 'lossy':
        return this.lossy();
      case 'operator':
        return this.operate();
    }
  }

  /**
   * Full disks come on a schedule of their own, drawn from a stream of their own, in a third of the runs: the other
   * faults' schedule stays what it was before full disks existed, so that the seeds that catch the older mutation
   * checks still draw the schedules they caught them with.
   */
  private scheduleDiskFaults(): void {
    const random = this.diskRandom;
    if (!random.chance(1 / 3)) return;
    const next = () =>
      this.cluster.scheduler.after(random.between(3 * this.options.intervalUnitsMin, 3 * this.options.intervalUnitsMax), () => {
        if (!this.active) return;
        if (this.cluster.now >= this.quietUntil) {
          this.counts.diskFull++;
          this.fillDisk(random);
        }
        next();
      });
    next();
  }

  /** A node's disk fills up (the master's, often) for a while: see SimStorage.refuses and src/node/readyLoop.ts. */
  private fillDisk(random: SimRandom): void {
    const candidates = this.cluster.nodes.filter((n) => !n.storage.full);
    if (candidates.length === 0) return;
    const master = this.cluster.master();
    const node = master !== null && !master.storage.full && random.chance(0.5) ? master : random.pick(candidates);
    this.cluster.trace(`fault: the disk of ${node.id} is full`);
    node.storage.full = true;
    this.cluster.scheduler.after(random.between(this.options.durationUnitsMin, this.options.durationUnitsMax), () => {
      if (!this.active) return;
      this.cluster.trace(`fault over: the disk of ${node.id} has space again`);
      node.storage.full = false;
    });
  }

  private crash(): void {
    const candidates = this.cluster.nodes.filter((n) => n.status !== 'crashed');
    if (candidates.length === 0) return;
    // Masters are where the interesting crashes happen: favour them.
    const master = this.cluster.master();
    const node = master !== null && this.random.chance(0.4) ? master : this.random.pick(candidates);
    if (this.random.chance(0.3) && node.status === 'running') {
      // One draw of three points (before the commit, between the commit and the sending, after the Ready), as ever,
      // so that a seed's other faults stay put.
      const point = this.random.pick<CrashPoint>(['afterCommit', 'afterReady', 'beforeCommit']);
      this.cluster.trace(`fault: ${node.id} will crash ${point}`);
      node.armCrash(point);
      // If no Ready comes soon, crash anyway.
      this.cluster.scheduler.after(50, () => {
        if (this.active && node.crashIsArmed) node.crash();
      });
    } else {
      this.cluster.trace(`fault: crash ${node.id}`);
      node.crash();
    }
    this.later(() => {
      if (node.status === 'crashed') {
        this.cluster.trace(`fault over: restart ${node.id}`);
        node.restart();
      }
    });
  }

  private pause(): void {
    const candidates = this.cluster.nodes.filter((n) => n.status === 'running');
    if (candidates.length === 0) return;
    const master = this.cluster.master();
    const node = master !== null && this.random.chance(0.4) ? master : this.random.pick(candidates);
    this.cluster.trace(`fault: pause ${node.id}`);
    node.pause();
    this.later(() => node.resume());
  }

  /**
   * Pauses the master for half an election timeout to three: it resumes before, around or after its lease ran out,
   * while its followers may have campaigned meanwhile (their timeouts lie between one and two election timeouts).
   */
  private leasePause(): void {
    const master = this.cluster.master();
    if (master === null || master.status !== 'running') return;
    // Others must be able to elect a master without it: three voters or more, all running.
    const voters = master.core!.softState().configuration.current;
    if (voters.size < 3 || this.cluster.nodes.some((n) => n.status !== 'running')) return;
    const e = this.cluster.electionTimeoutUnits;
    const duration = this.random.between(e, Math.floor(2.5 * e));
    this.quietUntil = this.cluster.now + duration + 2 * e;
    this.cluster.trace(`fault: pause master ${master.id} for ${duration} units`);
    master.pause();
    // Meanwhile, what the others say to each other straggles: each message, with even odds, is held back between a
    // fifth of an election timeout and one and a half. The election they hold (pre-votes, vote requests, the
    // refusals carrying the new term) then reaches some nodes after they heard from the resumed master, in any
    // order: the schedule of issue 13, item 2.
    const ids = this.cluster.nodes.map((n) => n.id);
    const straggling: Straggling = {
      description: `everywhere while ${master.id} is paused, 0.5 held back 0.2-1.5 election timeouts`,
      links: linksBetween(ids, ids),
      probability: 0.5,
      delayUnitsMin: Math.floor(e / 5),
      delayUnitsMax: Math.floor(1.5 * e),
    };
    this.cluster.straggle(straggling);
    this.cluster.scheduler.after(duration, () => {
      if (!this.active) return;
      if (master.status === 'paused') {
        this.cluster.trace(`fault over: resume ${master.id}`);
        master.resume();
      }
    });
    // It goes on for an election timeout after the resume, so that the master too may hear of the new term late.
    this.cluster.scheduler.after(duration + e, () => {
      if (this.active && this.cluster.network.straggling === straggling) this.cluster.straggle(null);
    });
  }

  /**
   * Stragglers (see SimNetwork): for a while, messages out of one node, into one node, between two nodes or on
   * every link are held back, each with some probability, for one to four election timeouts.
   */
  private straggle(): void {
    const ids = this.cluster.nodes.map((n) => n.id);
    const [a, b] = this.random.shuffled(ids) as [string, string];
    const shape = this.random.weighted<'from' | 'to' | 'pair' | 'all'>([
      [2, 'from'],
      [2, 'to'],
      [3, 'pair'],
      [1, 'all'],
    ]);
    const links =
      shape === 'from' ? linksBetween([a], ids) : shape === 'to' ? linksBetween(ids, [a]) : shape === 'pair' ? linksBetween([a, b], [a, b]) : linksBetween(ids, ids);
    const e = this.cluster.electionTimeoutUnits;
    const probability = this.random.pick([0.2, 0.5, 0.9]);
    const description = `${shape === 'from' ? `out of ${a}` : shape === 'to' ? `into ${a}` : shape === 'pair' ? `between ${a} and ${b}` : 'everywhere'}, ${probability} held back 1-4 election timeouts`;
    const straggling: Straggling = { description, links, probability, delayUnitsMin: e, delayUnitsMax: 4 * e };
    this.cluster.straggle(straggling);
    this.later(() => {
      if (this.cluster.network.straggling === straggling) this.cluster.straggle(null);
    });
  }

  private partition(): void {
    const ids = this.random.shuffled(this.cluster.nodes.map((n) => n.id));
    const master = this.cluster.master();
    const shape = this.random.weighted<'symmetric' | 'oneWay' | 'bridge' | 'isolateMaster'>([
      [3, 'symmetric'],
      [2, 'oneWay'],
      [2, 'bridge'],
      [master !== null ? 2 : 0, 'isolateMaster'],
    ]);
    let partition: Partition;
    if (shape === 'isolateMaster') {
      const others = ids.filter((id) => id !== master!.id);
      partition = this.random.chance(0.5) ? symmetricPartition([master!.id], others) : oneWayPartition(others, [master!.id]);
    } else if (shape === 'bridge') {
      const [bridge, ...rest] = ids;
      const cut = this.random.between(1, rest.length - 1);
      partition = bridgePartition(rest.slice(0, cut), rest.slice(cut), bridge!);
    } else {
      const cut = this.random.between(1, ids.length - 1);
      const sideA = ids.slice(0, cut);
      const sideB = ids.slice(cut);
      partition = shape === 'symmetric' ? symmetricPartition(sideA, sideB) : oneWayPartition(sideA, sideB);
    }
    this.cluster.partition(partition);
    this.later(() => {
      if (this.cluster.network.partition === partition) this.cluster.heal();
    });
  }

  private lossy(): void {
    const network = this.cluster.network;
    const dropRate = this.random.pick([0.1, 0.2, 0.4, 0.7]);
    const duplicateRate = this.random.pick([0, 0.05, 0.2]);
    this.cluster.trace(`fault: drop rate ${dropRate}, duplicate rate ${duplicateRate}`);
    network.setDropRate(dropRate);
    network.setDuplicateRate(duplicateRate);
    this.later(() => {
      if (network.currentDropRate !== dropRate) return; // another change since
      this.cluster.trace('fault over: base drop and duplicate rates');
      network.setDropRate(network.baseDropRate);
      network.setDuplicateRate(network.baseDuplicateRate);
    });
  }

  /**
   * A cluster-exclusive job's step, as the job runner takes it on the master (src/jobs/clusterJobs.ts): claim the job
   * in this term, or commit the next step (its number in the progress) based on the version seen. Sometimes the step
   * is proposed as a deposed master would — under an earlier term, or based on an earlier version — which the apply
   * rules must leave without effect (the invariants check every committed step is the next one, once).
   */
  private jobSteps(master: string, term: number, job: JobState | undefined): ClusterChange[] {
    // Claimed and steps at once: they commit in this order, so the steps find the claim applied (or all fail together).
    const steps: ClusterChange[] = job?.claim?.owner === master && job.claim.term === term ? [] : [{ type: 'jobClaimed', job: 'sim.job', owner: master, term }];
    const count = this.random.between(1, 4);
    for (let i = 0, version = job?.version ?? 0; i < count; i++, version++) {
      const stale = this.random.chance(0.2);
      const basedOn = stale && version > 0 && this.random.chance(0.5) ? version - 1 : version;
      const proposedIn = stale && basedOn === version ? term - 1 : term;
      steps.push({ type: 'jobProgress', job: 'sim.job', owner: master, term: proposedIn, version: basedOn, progress: { step: basedOn + 1 } });
    }
    return steps;
  }

  /**
   * An operator's cluster-state change, asked of the master: exclude a master-eligible node from voting (at most
   * two at a time, so that a quorum of eligible nodes can remain), clear the exclusions, update a setting, or
   * remove a member (which rejoins by itself if it is alive). The master applies the voting rules by itself.
   */
  private operate(): void {
    const master = this.cluster.master();
    if (master === null || !master.canBeMaster) return;
    const state = master.coordinator!.clusterState();
    const eligible = state.nodes.filter((n) => n.roles.masterEligible).map((n) => n.id);
    const kind = this.random.weighted<'exclude' | 'clear' | 'setting' | 'remove' | 'job'>([
      [state.votingExclusions.length < 2 && eligible.length > 0 ? 3 : 0, 'exclude'],
      [state.votingExclusions.length > 0 ? 3 : 0, 'clear'],
      [1, 'setting'],
      [state.nodes.length > 1 ? 1 : 0, 'remove'],
      [2, 'job'],
    ]);
    let change: ClusterChange;
    switch (kind) {
      case 'exclude':
        change = { type: 'votingExclusionsAdded', ids: [this.random.pick(eligible)] };
        break;
      case 'clear':
        change = { type: 'votingExclusionsCleared' };
        break;
      case 'setting':
        change = { type: 'settingsUpdated', settings: { [`s${this.random.between(1, 3)}`]: this.random.chance(0.2) ? null : this.random.between(1, 100) } };
        break;
      case 'remove':
        change = { type: 'nodeLeft', id: this.random.pick(state.nodes.filter((n) => n.id !== master.id)).id };
        break;
      case 'job': {
        // Several steps at once, as a runner that pipelines its commits: each based on the one before it.
        const steps = this.jobSteps(master.id, master.coordinator!.softState().term, state.jobs['sim.job']);
        const queued = steps.filter((step) => master.proposeClusterChange(step)).length;
        this.cluster.trace(`fault: job runner on ${master.id} proposes ${JSON.stringify(steps)}: ${queued} queued`);
        return;
      }
    }
    const accepted = master.proposeClusterChange(change);
    this.cluster.trace(`fault: operator asks ${master.id} for ${JSON.stringify(change)}: ${accepted ? 'queued' : 'refused'}`);
  }
}
