import assert from 'node:assert/strict';

import { CoordinationCore, type CoreOptions, type RestoredState } from '../../src/core/coordinationCore.js';
import type { Entry, HardState, Message, Random, Ready, Snapshot } from '../../src/core/types.js';

/**
 * A tiny deterministic runtime for coordination cores in unit tests, following the Ready contract of types.ts:
 * install the snapshot, persist hard state and entries, send, apply, advance. Messages travel in order through one
 * queue; a node can be down (everything to or from it dropped) or held (everything to or from it kept back and
 * delivered when released, as a connection whose route is blackholed delivers its backlog once the route returns).
 * The simulator (test/sim) is where faults are random; this is for replaying one situation exactly.
 */

/** The members of the clusters most tests build. */
export const voters = ['a', 'b', 'c'];

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

export interface Disk {
  hardState: HardState;
  snapshot?: Snapshot;
  /** The journal after the snapshot. */
  entries: Entry[];
}

/** What a node's runtime saw in one Ready, for the checks: the snapshot installed and the indexes applied. */
export interface ReadyEvent {
  readonly snapshotIndex?: number;
  readonly committed: readonly number[];
}

export interface CoreNode {
  readonly id: string;
  core: CoordinationCore;
  readonly disk: Disk;
  /** The state machine: the data of the command entries applied, in order. */
  applied: unknown[];
  appliedIndex: number;
  readonly events: ReadyEvent[];
}

export class Driver {
  readonly nodes = new Map<string, CoreNode>();
  readonly queue: Message[] = [];
  /** Nodes that are down: not ticked, and every message to or from them is dropped. */
  readonly down = new Set<string>();
  /** Nodes cut off but alive: ticked, every message to or from them kept back in order until release(). */
  readonly held = new Set<string>();
  /**
   * Nodes whose runtime stores entries and hard state but applies nothing: each Ready's committed entries are left
   * unapplied (the core hands them out again), as a runtime whose apply fails for want of disk space.
   */
  readonly applyBlocked = new Set<string>();
  /** What the held nodes sent or were sent, in order. */
  readonly heldBack: Message[] = [];
  /**
   * Nodes that are paused (a stopped process): not ticked, and what they are sent waits in heldBack until resume();
   * they send nothing meanwhile.
   */
  readonly paused = new Set<string>();
  /**
   * Messages this picks are kept back one by one in `stashed` (a slow or blackholed route for just those), until
   * deliverStashed() hands them over, in whatever order the test chooses: how a schedule of delayed messages is
   * replayed exactly.
   */
  stashIf: ((m: Message) => boolean) | null = null;
  readonly stashed: Message[] = [];
  /** Every message handed to a core, in order. */
  readonly delivered: Message[] = [];
  private seed = 0;
  /** Driver ticks so far, and the tick each paused node stopped at. */
  private ticks = 0;
  private readonly pausedAt = new Map<string, number>();

  constructor(ids: readonly string[], private readonly overrides: Partial<CoreOptions> = {}) {
    for (const id of ids) {
      const core = new CoordinationCore(coreOptions(id, 7919 * ++this.seed, this.overrides), fresh());
      core.bootstrap(ids);
      this.nodes.set(id, { id, core, disk: { hardState: fresh().hardState, entries: [] }, applied: [], appliedIndex: 0, events: [] });
    }
    this.settle();
  }

  node(id: string): CoreNode {
    const n = this.nodes.get(id);
    assert.ok(n !== undefined, `no node ${id}`);
    return n;
  }

  /** Handles Ready records and delivers queued messages until nothing is left to do. */
  settle(): void {
    for (let steps = 0; ; steps++) {
      assert.ok(steps < 100_000, 'the cluster does not settle');
      for (const n of this.nodes.values()) {
        if (this.down.has(n.id)) continue;
        for (let i = 0; n.core.hasReady(); i++) {
          assert.ok(i < 1000, `${n.id} keeps reporting Ready`);
          if (!this.handleReady(n)) break;
        }
      }
      const message = this.queue.shift();
      if (message === undefined) return;
      if (this.down.has(message.to) || this.down.has(message.from)) continue;
      if (this.stashIf !== null && this.stashIf(message)) {
        this.stashed.push(message);
        continue;
      }
      if (this.held.has(message.to) || this.held.has(message.from) || this.paused.has(message.to)) {
        this.heldBack.push(message);
        continue;
      }
      this.delivered.push(message);
      this.node(message.to).core.step(message);
    }
  }

  /** Reconnects a held node: everything kept back is delivered first, in the order it was sent. */
  release(id: string): void {
    this.held.delete(id);
    const kept = this.heldBack.splice(0);
    this.queue.unshift(...kept);
    this.settle();
  }

  /** Delivers the stashed messages `pick` selects (oldest first), past stashIf, then settles. */
  deliverStashed(pick: (m: Message) => boolean): Message[] {
    const chosen = this.stashed.filter(pick);
    assert.ok(chosen.length > 0, 'no stashed message matches');
    for (const m of chosen) this.stashed.splice(this.stashed.indexOf(m), 1);
    for (const m of chosen) {
      if (this.down.has(m.to)) continue;
      this.delivered.push(m);
      this.node(m.to).core.step(m);
      this.settle();
    }
    return chosen;
  }

  /** Pauses a node (see `paused`); its clock is counted from here for resume(). */
  pause(id: string): void {
    this.paused.add(id);
    this.pausedAt.set(id, this.ticks);
  }

  /**
   * Resumes a paused node as the runtime would (ClusterCoordinator.catchUp): the ticks it missed are skipped (its
   * clock moves on, no timeout counts them), then what it was sent meanwhile is delivered, in order.
   */
  resume(id: string): void {
    this.paused.delete(id);
    const missed = this.ticks - (this.pausedAt.get(id) ?? this.ticks);
    this.node(id).core.skipTicks(missed);
    const kept = this.heldBack.filter((m) => m.to === id);
    for (const m of kept) this.heldBack.splice(this.heldBack.indexOf(m), 1);
    this.queue.unshift(...kept);
    this.settle();
  }

  tick(times = 1): void {
    for (let t = 0; t < times; t++) {
      this.ticks++;
      for (const n of this.nodes.values()) if (!this.down.has(n.id) && !this.paused.has(n.id)) n.core.tick();
      this.settle();
    }
  }

  /** Ticks until `done` holds, at most `max` ticks. */
  tickUntil(done: () => boolean, max: number, what: string): void {
    for (let t = 0; !done(); t++) {
      assert.ok(t < max, `${what}: not after ${max} ticks`);
      this.tick();
    }
  }

  /** Returns false when the Ready was only committed entries a node that cannot apply left alone. */
  private handleReady(n: CoreNode): boolean {
    const ready: Ready = n.core.ready();
    const disk = n.disk;
    // 1. Install, persist.
    if (ready.snapshot !== undefined) {
      assert.ok(Array.isArray(ready.snapshot.data), 'snapshot data is the command list of the state machine');
      disk.snapshot = ready.snapshot;
      disk.entries = [];
      n.applied = [...(ready.snapshot.data as unknown[])];
      n.appliedIndex = ready.snapshot.index;
    }
    if (ready.hardState !== undefined) disk.hardState = ready.hardState;
    if (ready.entries.length > 0) {
      const first = ready.entries[0]!.index;
      disk.entries = [...disk.entries.filter((e) => e.index < first), ...ready.entries];
    }
    const base = disk.snapshot?.index ?? 0;
    disk.entries.forEach((e, i) => assert.equal(e.index, base + i + 1, `${n.id}: the disk journal has a hole`));
    // 2. Send.
    this.queue.push(...ready.messages);
    // 3. Apply.
    if (this.applyBlocked.has(n.id)) {
      n.core.advance({ ...ready, committed: [] });
      return ready.snapshot !== undefined || ready.hardState !== undefined || ready.entries.length > 0 || ready.messages.length > 0 || ready.readStates.length > 0;
    }
    for (const entry of ready.committed) {
      assert.equal(entry.index, n.appliedIndex + 1, `${n.id}: applied out of order`);
      const durable = disk.entries.find((e) => e.index === entry.index);
      assert.ok(durable !== undefined && durable.term === entry.term, `${n.id}: committed entry ${entry.index} is not durable`);
      if (entry.payload.kind === 'command') n.applied.push(entry.payload.data);
      n.appliedIndex = entry.index;
    }
    if (ready.snapshot !== undefined || ready.committed.length > 0) {
      n.events.push({ ...(ready.snapshot !== undefined ? { snapshotIndex: ready.snapshot.index } : {}), committed: ready.committed.map((e) => e.index) });
    }
    // 4. Advance.
    n.core.advance(ready);
    return true;
  }

  masters(): CoreNode[] {
    return [...this.nodes.values()].filter((n) => !this.down.has(n.id) && n.core.softState().role === 'master');
  }

  /** Ticks until one master is known to every live node, and returns it. */
  elect(): CoreNode {
    this.tickUntil(() => {
      const masters = this.masters();
      if (masters.length !== 1) return false;
      const id = masters[0]!.id;
      return [...this.nodes.values()].every((n) => this.down.has(n.id) || (n.core.softState().master === id && n.appliedIndex === masters[0]!.appliedIndex));
    }, 300, 'no master elected');
    return this.masters()[0]!;
  }

  propose(master: CoreNode, data: unknown): void {
    const outcome = master.core.propose(data);
    assert.ok(outcome.ok, `proposal refused: ${JSON.stringify(outcome)}`);
    this.settle();
  }

  /** Compacts a node at its applied index, as its runtime would: snapshot made durable, journal trimmed. */
  compact(n: CoreNode): Snapshot {
    const snapshot = n.core.compact([...n.applied]);
    assert.equal(snapshot.index, n.appliedIndex);
    n.disk.snapshot = snapshot;
    n.disk.entries = n.disk.entries.filter((e) => e.index > snapshot.index);
    return snapshot;
  }

  /** Restarts a node from its disk; its state machine restarts from the snapshot. */
  restart(id: string): void {
    const n = this.node(id);
    const snapshot = n.disk.snapshot;
    n.core = new CoordinationCore(coreOptions(id, 7919 * ++this.seed, this.overrides), {
      hardState: n.disk.hardState,
      ...(snapshot !== undefined ? { snapshot } : {}),
      entries: [...n.disk.entries],
      appliedIndex: snapshot?.index ?? 0,
    });
    n.applied = snapshot !== undefined ? [...(snapshot.data as unknown[])] : [];
    n.appliedIndex = snapshot?.index ?? 0;
  }
}

export const commands = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `cmd-${from + i}`);

