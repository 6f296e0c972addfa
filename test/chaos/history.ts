import { closeSync, openSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import type { HistoryEvent } from '../sim/linearizability.js';

export type ReadMode = 'linearizable' | 'sequential' | 'stale';

/**
 * One line of a chaos history: the simulator's event format (`process`, `type`, `f`, `key`, `value`, `time` in ms
 * since the run began) plus what the checkers beyond linearizability need.
 */
export interface ChaosEvent extends HistoryEvent {
  readonly time: number;
  /** The node the request went to. */
  readonly node?: string;
  /** Reads: the consistency mode asked for. */
  readonly mode?: ReadMode;
  /** ok reads and writes: the content node's version (per key, it grows with every write in journal order; 0: absent). */
  readonly version?: number;
  /** ok answers: X-Conclave-Index. */
  readonly index?: number;
  /** ok reads: the node said the answer may be stale (X-Conclave-Stale: it knew no master). */
  readonly stale?: boolean;
  /** fail and info: the error code or what went wrong. */
  readonly error?: string;
}

/**
 * The history of a run: kept in memory for the checkers and appended to a JSON-lines file as it happens, so that a
 * run that dies still leaves what it saw. Events are recorded in the order they happen in this one process, which
 * is the real-time order the checkers rely on.
 */
export class HistoryRecorder {
  readonly events: ChaosEvent[] = [];
  private readonly fd: number;
  private readonly origin = performance.now();

  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
  }

  now(): number {
    return Math.round((performance.now() - this.origin) * 1000) / 1000;
  }

  record(event: Omit<ChaosEvent, 'time'>): ChaosEvent {
    const full = { ...event, time: this.now() } as ChaosEvent;
    this.events.push(full);
    writeSync(this.fd, `${JSON.stringify(full)}\n`);
    return full;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Appends JSON lines (the fault log beside the history). */
export class JsonLinesFile {
  private readonly fd: number;
  constructor(readonly file: string) {
    this.fd = openSync(file, 'w');
  }
  write(value: unknown): void {
    writeSync(this.fd, `${JSON.stringify(value)}\n`);
  }
  close(): void {
    closeSync(this.fd);
  }
}
