import type { SimRandom } from '../sim/simRandom.js';
import type { ChaosCluster } from './chaosCluster.js';
import type { JsonLinesFile } from './history.js';

/**
 * The nemesis: injects one fault at a time per lane, on a schedule drawn from the run's seed, holds it, undoes it,
 * lets the cluster recover a moment, and goes on. Runs with five nodes get two lanes, so two faults may overlap
 * (a partition while another node is paused, say); lanes never pick a node another lane holds, and only one
 * partition is in force at a time, so that undoing one never heals another's cuts.
 *
 * The seed fixes the sequence of choices; the moments they land on depend on how the processes run, so a seed
 * reproduces the schedule, not the exact interleaving.
 */
export const faultKinds = ['kill', 'pause', 'restart', 'partition', 'slow', 'disk'] as const;
export type FaultKind = (typeof faultKinds)[number];

export interface NemesisOptions {
  readonly faults: readonly FaultKind[];
  readonly lanes: number;
  /** How long a fault holds, and how long the cluster then runs without it. */
  readonly holdMs: readonly [number, number];
  readonly quietMs: readonly [number, number];
  /** The bandwidth of a slow node. */
  readonly slowRateKbit: number;
}

export interface FaultRecord {
  readonly kind: FaultKind;
  readonly detail: string;
  readonly startMs: number;
  endMs?: number;
  error?: string;
}

type PartitionShape = 'isolate-master' | 'majority-minority' | 'one-way-from-master' | 'one-way-to-master' | 'bridge';

export class Nemesis {
  readonly faults: FaultRecord[] = [];
  private readonly held = new Set<string>();
  private partitionInForce = false;
  private stopped = false;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly random: SimRandom,
    private readonly options: NemesisOptions,
    private readonly log: JsonLinesFile,
    private readonly now: () => number,
  ) {}

  /** Runs the lanes until `until()`; every fault is undone before this resolves. */
  async run(until: () => boolean): Promise<void> {
    const lanes = Array.from({ length: this.options.lanes }, (_, i) => this.lane(i, this.random.fork(), until));
    await Promise.all(lanes);
  }

  stop(): void {
    this.stopped = true;
  }

  private async lane(lane: number, random: SimRandom, until: () => boolean): Promise<void> {
    // Lanes start apart, so that their faults do not all begin at once.
    await sleep(lane * 1_500 + random.between(...this.options.quietMs));
    while (!until() && !this.stopped) {
      const kind = random.pick(this.options.faults);
      const hold = random.between(...this.options.holdMs);
      const undo = await this.inject(kind, random).catch((err: Error) => {
        this.note({ kind, detail: 'could not inject', startMs: this.now(), error: err.message });
        return null;
      });
      if (undo !== null) {
        await sleepUnless(hold, () => until() || this.stopped);
        await undo();
      }
      await sleepUnless(random.between(...this.options.quietMs), () => until() || this.stopped);
    }
  }

  private note(record: FaultRecord): FaultRecord {
    this.faults.push(record);
    this.log.write({ event: 'fault', ...record });
    return record;
  }

  private finish(record: FaultRecord): void {
    record.endMs = this.now();
    this.log.write({ event: 'healed', kind: record.kind, detail: record.detail, startMs: record.startMs, endMs: record.endMs });
  }

  /** Picks a node no other lane holds: the master half of the time (the faults that matter most hit it). */
  private async target(random: SimRandom): Promise<string | null> {
    const free = [...this.cluster.nodes.keys()].filter((n) => !this.held.has(n));
    if (free.length === 0) return null;
    const master = await this.cluster.master();
    const name = master !== undefined && free.includes(master) && random.chance(0.5) ? master : random.pick(free);
    this.held.add(name);
    return name;
  }

  private async inject(kind: FaultKind, random: SimRandom): Promise<(() => Promise<void>) | null> {
    const c = this.cluster;
    if (kind === 'partition') return this.partition(random);
    const name = await this.target(random);
    if (name === null) return null;
    const release = () => this.held.delete(name);
    const record = this.note({ kind, detail: name, startMs: this.now() });
    const guarded = (undo: () => Promise<void> | void) => async () => {
      try {
        await undo();
      } catch (err) {
        record.error = (err as Error).message;
      } finally {
        release();
        this.finish(record);
      }
    };
    switch (kind) {
      case 'kill':
        await c.kill(name);
        return guarded(() => c.start(name));
      case 'pause':
        await c.pause(name);
        return guarded(() => c.resume(name));
      case 'restart':
        await c.stop(name);
        return guarded(() => c.start(name));
      case 'slow':
        c.network.slow(name, this.options.slowRateKbit);
        return guarded(() => c.network.unslow(name));
      case 'disk':
        c.fillDisk(name);
        return guarded(() => c.freeDisk(name));
    }
  }

  private async partition(random: SimRandom): Promise<(() => Promise<void>) | null> {
    if (this.partitionInForce) return null;
    this.partitionInForce = true;
    const names = [...this.cluster.nodes.keys()];
    const master = (await this.cluster.master()) ?? random.pick(names);
    const others = names.filter((n) => n !== master);
    const shapes: PartitionShape[] = ['isolate-master', 'majority-minority', 'one-way-from-master', 'one-way-to-master', 'bridge'];
    const shape = random.pick(shapes);
    const cuts: [string, string][] = [];
    const cutBoth = (a: readonly string[], b: readonly string[]) => {
      for (const x of a) for (const y of b) cuts.push([x, y], [y, x]);
    };
    let detail: string;
    if (shape === 'isolate-master') {
      cutBoth([master], others);
      detail = `${master} | ${others.join(',')}`;
    } else if (shape === 'majority-minority') {
      const shuffled = random.shuffled(names);
      const minority = shuffled.slice(0, Math.floor((names.length - 1) / 2));
      const majority = shuffled.slice(minority.length);
      cutBoth(minority, majority);
      detail = `${minority.join(',')} | ${majority.join(',')}`;
    } else if (shape === 'one-way-from-master') {
      for (const o of others) cuts.push([master, o]);
      detail = `${master} -/-> ${others.join(',')}`;
    } else if (shape === 'one-way-to-master') {
      for (const o of others) cuts.push([o, master]);
      detail = `${others.join(',')} -/-> ${master}`;
    } else {
      // A bridge: two sides that cannot reach each other, and one node (not the master) that reaches both.
      const bridge = random.pick(others);
      const rest = random.shuffled(names.filter((n) => n !== bridge));
      const sideA = rest.slice(0, Math.ceil(rest.length / 2));
      const sideB = rest.slice(sideA.length);
      cutBoth(sideA, sideB);
      detail = `${sideA.join(',')} | ${sideB.join(',')} bridged by ${bridge}`;
    }
    const record = this.note({ kind: 'partition', detail: `${shape}: ${detail}`, startMs: this.now() });
    for (const [from, to] of cuts) this.cluster.network.cutLink(from, to);
    return async () => {
      try {
        for (const [from, to] of cuts) this.cluster.network.restoreLink(from, to);
      } catch (err) {
        record.error = (err as Error).message;
      } finally {
        this.partitionInForce = false;
        this.finish(record);
      }
    };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sleeps `ms`, cut short (checked every 100 ms) once `stop()` holds: the run's end never waits out a long hold. */
async function sleepUnless(ms: number, stop: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end && !stop()) await sleep(Math.min(100, end - Date.now()));
}
