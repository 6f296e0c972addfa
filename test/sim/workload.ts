import type { HistoryEvent, OperationName } from './linearizability.js';
import { SimulationViolation } from './invariants.js';
import type { KvCommand, KvValue, ReadMode } from './kvStateMachine.js';
import type { ClientReply } from './simNode.js';
import type { SimRandom } from './simRandom.js';
import type { SimScheduler } from './simScheduler.js';

/**
 * Clients of the simulated cluster. Each client runs one operation at a time — write, compare-and-set or read
 * of one of a few keys — and records it in the linearizability checker's history format:
 *
 * - the request goes to a random node; a non-master (or a crashed node) refuses, and the client retries
 *   elsewhere (at the master the refusal names, if any) after a short back-off;
 * - a master proposes the command; the client's answer comes when that node applies the entry;
 * - "ok" when applied (a cas whose comparison failed is a "fail": it had no effect); "fail" when every attempt
 *   was certainly refused and the deadline passed; "info" (unknown) when the proposing node crashed, the entry
 *   was replaced by another, or the deadline passed while an attempt was unanswered.
 *
 * Clients are outside the cluster: their requests are not subject to partitions, only to latency.
 *
 * Reads come in the four modes of KvCommand. Writes, compare-and-sets and `log` and `linearizable` reads make up
 * the history checked for linearizability; `sequential` and `stale` reads are not linearizable by design and stay
 * out of it. Every `sequential` and `linearizable` read is checked as it is served: it must have been served from
 * a state at least as far as every operation acknowledged before the read began (read your writes, the CRX promise)
 * — every one, by any client, acknowledged by any node before the read reached its node (see onAnswered).
 */
export interface WorkloadOptions {
  readonly clients: number;
  readonly keys: number;
  /** Time units from invoke after which an operation is given up (info or fail). */
  readonly operationTimeoutUnits: number;
  /** Pause between a client's operations, uniform in [0, max]. */
  readonly thinkUnitsMax: number;
  /** Client-to-node latency, uniform in [1, max], each way. */
  readonly latencyUnitsMax: number;
}

export interface ClientGateway {
  readonly nodeIds: readonly string[];
  request(nodeId: string, command: KvCommand, reply: (r: ClientReply) => void): void;
}

export interface WorkloadStats {
  invoked: number;
  ok: number;
  fail: number;
  info: number;
  attempts: number;
  /** Reads served in each direct mode (ok outcomes). */
  reads: Record<Exclude<ReadMode, 'log'>, number>;
}

interface Operation {
  readonly id: number;
  readonly f: OperationName;
  readonly command: KvCommand;
  readonly deadline: number;
  readonly invokedAt: number;
  /** Incremented per attempt; replies to an older attempt are ignored. */
  attempt: number;
  /** An attempt is out and unanswered: if the deadline comes now, the outcome is unknown. */
  awaiting: boolean;
}

interface Client {
  readonly id: number;
  operation: Operation | null;
  /** Where to send the next attempt (a refusal's master hint), else random. */
  nextNode: string | null;
  /** Values this client saw for each key: the expected values of its cas operations. */
  readonly seen: Map<string, KvValue>;
}

export class Workload {
  readonly history: HistoryEvent[] = [];
  readonly stats: WorkloadStats = { invoked: 0, ok: 0, fail: 0, info: 0, attempts: 0, reads: { linearizable: 0, sequential: 0, stale: 0 } };
  /** Acknowledgements in time order, each with the highest journal index acknowledged up to then. */
  private readonly acknowledged: Array<{ readonly time: number; readonly indexMax: number }> = [];
  private readonly clients: Client[] = [];
  private issuing = false;
  private operationIds = 0;
  private valueIds = 0;

  constructor(
    private readonly scheduler: SimScheduler,
    private readonly random: SimRandom,
    private readonly gateway: ClientGateway,
    private readonly options: WorkloadOptions,
  ) {
    for (let id = 0; id < options.clients; id++) this.clients.push({ id, operation: null, nextNode: null, seen: new Map() });
  }

  start(): void {
    this.issuing = true;
    for (const client of this.clients) this.scheduler.after(this.random.between(0, this.options.thinkUnitsMax), () => this.next(client));
  }

  /** No new operations from now on; those under way run to their outcome. */
  stopIssuing(): void {
    this.issuing = false;
  }

  /** Operations invoked and not yet completed. */
  get outstanding(): number {
    return this.clients.filter((c) => c.operation !== null).length;
  }

  private next(client: Client): void {
    if (!this.issuing || client.operation !== null) return;
    const key = `k${this.random.nextInt(this.options.keys)}`;
    const command = this.randomCommand(client, key);
    const operation: Operation = {
      id: ++this.operationIds,
      f: command.op,
      command,
      deadline: this.scheduler.now + this.options.operationTimeoutUnits,
      invokedAt: this.scheduler.now,
      attempt: 0,
      awaiting: false,
    };
    client.operation = operation;
    this.stats.invoked++;
    if (checkedForLinearizability(command)) this.record(client, 'invoke', command.op, key, invokeValue(command));
    this.scheduler.at(operation.deadline, () => this.onDeadline(client, operation));
    this.send(client, operation);
  }

  private randomCommand(client: Client, key: string): KvCommand {
    const kind = this.random.weighted<OperationName>([[4, 'write'], [3, 'cas'], [3, 'read']]);
    if (kind === 'read') {
      const mode = this.random.weighted<ReadMode>([[1, 'log'], [3, 'linearizable'], [3, 'sequential'], [1, 'stale']]);
      return { op: 'read', key, mode };
    }
    // Unique values keep the checker's search small: a read says exactly which write it saw.
    const value = ++this.valueIds;
    if (kind === 'write') return { op: 'write', key, value };
    const expected = this.random.chance(0.8) ? (client.seen.get(key) ?? null) : this.random.between(0, this.valueIds);
    return { op: 'cas', key, expected, value };
  }

  private send(client: Client, operation: Operation): void {
    const nodeId = client.nextNode ?? this.random.pick(this.gateway.nodeIds);
    client.nextNode = null;
    const attempt = ++operation.attempt;
    operation.awaiting = true;
    this.stats.attempts++;
    this.scheduler.after(this.latency(), () => {
      const arrivedAt = this.scheduler.now;
      this.gateway.request(nodeId, operation.command, (reply) => {
        this.onAnswered(operation, arrivedAt, reply);
        this.scheduler.after(this.latency(), () => this.onReply(client, operation, attempt, reply));
      });
    });
  }

  private onReply(client: Client, operation: Operation, attempt: number, reply: ClientReply): void {
    if (client.operation !== operation || attempt !== operation.attempt) return; // given up on, or superseded
    operation.awaiting = false;
    const { command } = operation;
    switch (reply.kind) {
      case 'rejected': {
        if (this.scheduler.now >= operation.deadline) return this.complete(client, 'fail');
        client.nextNode = reply.master !== null && reply.master !== undefined ? reply.master : null;
        this.scheduler.after(this.random.between(1, 20), () => {
          if (client.operation === operation) this.send(client, operation);
        });
        return;
      }
      case 'unknown':
        return this.complete(client, 'info');
      case 'applied': {
        const result = reply.result;
        if (result.op === 'read') {
          client.seen.set(command.key, result.value);
          if (command.op === 'read' && command.mode !== 'log') this.stats.reads[command.mode]++;
          return this.complete(client, 'ok', result.value);
        }
        if (result.op === 'cas' && !result.swapped) return this.complete(client, 'fail');
        if (command.op !== 'read') client.seen.set(command.key, command.value);
        return this.complete(client, 'ok');
      }
    }
  }

  private onDeadline(client: Client, operation: Operation): void {
    if (client.operation !== operation) return;
    // An unanswered attempt may still take effect; attempts that were all refused certainly did not.
    this.complete(client, operation.awaiting ? 'info' : 'fail');
  }

  /**
   * A node answered an attempt, at the time it answered (whether or not the client still waits for it). Reads are
   * checked against what the cluster acknowledged before the request reached the node, and acknowledgements count
   * from when the node gave them: the tightest times a client could tell apart, so a stale read is caught even when
   * the acknowledgement and the read were a few units apart.
   */
  private onAnswered(operation: Operation, arrivedAt: number, reply: ClientReply): void {
    if (reply.kind !== 'applied') return;
    const { command } = operation;
    if (command.op === 'read' && command.mode !== 'log') this.checkReadFreshness(operation, command.mode, reply.index, arrivedAt);
    else this.noteAcknowledged(reply.index);
  }

  /** A journal operation was acknowledged: from now on, every sequential read must reflect `index`. */
  private noteAcknowledged(index: number): void {
    const previous = this.acknowledged[this.acknowledged.length - 1]?.indexMax ?? 0;
    this.acknowledged.push({ time: this.scheduler.now, indexMax: Math.max(previous, index) });
  }

  /** The highest index acknowledged strictly before `time` (0 if none). */
  private acknowledgedBefore(time: number): number {
    let low = 0;
    let high = this.acknowledged.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.acknowledged[middle]!.time < time) low = middle + 1;
      else high = middle;
    }
    return low === 0 ? 0 : this.acknowledged[low - 1]!.indexMax;
  }

  private checkReadFreshness(operation: Operation, mode: Exclude<ReadMode, 'log'>, servedAt: number, arrivedAt: number): void {
    if (mode === 'stale') return;
    const required = this.acknowledgedBefore(arrivedAt);
    if (servedAt < required) {
      throw new SimulationViolation(
        `a ${mode} read of ${operation.command.key} that reached its node at ${arrivedAt} was served at index ${servedAt} (at ${this.scheduler.now}), ` +
          `missing the write acknowledged at index ${required} before it began`,
      );
    }
  }

  private complete(client: Client, type: 'ok' | 'fail' | 'info', readValue?: KvValue): void {
    const operation = client.operation!;
    client.operation = null;
    this.stats[type]++;
    if (checkedForLinearizability(operation.command)) {
      this.record(client, type, operation.f, operation.command.key, type === 'ok' && operation.f === 'read' ? readValue : undefined);
    }
    this.scheduler.after(this.random.between(0, this.options.thinkUnitsMax), () => this.next(client));
  }

  private record(client: Client, type: HistoryEvent['type'], f: OperationName, key: string, value: unknown): void {
    this.history.push({ process: client.id, type, f, key, ...(value !== undefined ? { value } : {}), time: this.scheduler.now });
  }

  private latency(): number {
    return this.random.between(1, this.options.latencyUnitsMax);
  }
}

function checkedForLinearizability(command: KvCommand): boolean {
  return command.op !== 'read' || command.mode === 'log' || command.mode === 'linearizable';
}

function invokeValue(command: KvCommand): unknown {
  switch (command.op) {
    case 'read':
      return undefined;
    case 'write':
      return command.value;
    case 'cas':
      return [command.expected, command.value];
  }
}
