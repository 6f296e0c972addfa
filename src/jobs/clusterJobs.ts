import type { Logger } from 'pino';

import type { JobClaim, JobState, JsonValue } from '../core/clusterJobs.js';
import type { ClusterChange, ClusterState, NodeDescriptor } from '../core/clusterState.js';
import type { SoftState } from '../core/types.js';
import { ConclaveError } from '../errors/catalogue.js';

/**
 * Runs cluster-exclusive jobs (src/core/clusterJobs.ts) on the master, and only there. Every `checkIntervalMs` the
 * master asks each registered job kind whether it has work, given the job's committed progress and the time; when
 * it has, the master claims the job through the journal (in its term), waits until the claim is applied with itself
 * as owner, and runs it. The run commits its progress through the journal as it goes, and is aborted at once when
 * the node stops being master (its signal). A new master finds the claim of the previous one (another node, an
 * earlier term), claims the job anew and resumes from the progress committed; whatever the old master proposes
 * late is fenced off by the apply rules, so two masters never both commit a step.
 *
 * A job kind (scheduled backups; later the change feed's webhooks, schema migrations) is a name, a `due` test and a
 * `run`: nothing here knows what the jobs do.
 */
export interface JobKind {
  /** The job's name in the cluster state (clusterJobs.ts names: lower-case first, then letters, digits, _ . : -). */
  readonly name: string;
  /** Whether there is work at `now` (epoch ms), given the committed progress (null: none yet) and the cluster state. */
  due(input: { readonly progress: JsonValue; readonly state: ClusterState; readonly now: number }): boolean;
  /** Does the work, committing progress through `run.commit`; rejects (with the cause) when the work failed. */
  run(run: JobRun): Promise<void>;
}

export interface JobRun {
  readonly job: string;
  readonly owner: string;
  readonly term: number;
  /** Aborted when this node stops being master (or stops): stop at once, commit nothing more. */
  readonly signal: AbortSignal;
  /** The progress committed when the run started, and after each commit of this run. */
  progress(): JsonValue;
  /** The cluster state as applied here now (settings are read from it). */
  clusterState(): ClusterState;
  now(): number;
  /**
   * Commits `progress` as the job's next step, based on the last one committed; resolves once applied here with this
   * node's claim. Rejects with MASTER_CHANGED when the claim was lost first (the step is not committed: a new master
   * does it again from the committed progress), WRITE_OUTCOME_UNKNOWN when not applied in time.
   */
  commit(progress: JsonValue): Promise<void>;
}

/** What the jobs need of the cluster runtime. */
export interface JobsRuntime {
  softState(): SoftState;
  clusterState(): ClusterState;
  self(): NodeDescriptor;
  proposeClusterChange(change: ClusterChange): void;
  /** Called after every drain in which the role, term or cluster state may have changed; returns the unsubscriber. */
  onChange(listener: () => void): () => void;
}

export interface ClusterJobsOptions {
  /** How often the master asks the job kinds whether they have work. */
  readonly checkIntervalMs: number;
  /** How long a claim or a commit may take to be applied before the run gives up (WRITE_OUTCOME_UNKNOWN). */
  readonly commitTimeoutMs: number;
  /** After a failed run, the kind waits checkIntervalMs doubled per failure in a row, up to this. */
  readonly retryDelayMsMax: number;
  readonly now: () => number;
}

interface Running {
  readonly term: number;
  readonly abort: AbortController;
}

export class ClusterJobs {
  private readonly kinds = new Map<string, JobKind>();
  private readonly running = new Map<string, Running>();
  /** Failed runs in a row per kind, and when it may run again. */
  private readonly failures = new Map<string, { count: number; notBeforeMs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;

  constructor(
    private readonly runtime: JobsRuntime,
    private readonly options: ClusterJobsOptions,
    private readonly log: Logger,
  ) {}

  register(kind: JobKind): void {
    if (this.kinds.has(kind.name)) throw new ConclaveError('INVALID_REQUEST', `A job kind named ${kind.name} is registered already.`);
    this.kinds.set(kind.name, kind);
  }

  start(): void {
    if (this.timer !== null || this.stopped) return;
    this.unsubscribe = this.runtime.onChange(() => this.abortDeposed());
    const loop = () => {
      this.check();
      this.timer = setTimeout(loop, this.options.checkIntervalMs);
    };
    this.timer = setTimeout(loop, this.options.checkIntervalMs);
  }

  /** Stops checking and aborts every run; resolves at once (a run's own cleanup follows its signal). */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const run of this.running.values()) run.abort.abort(new ConclaveError('SHUTTING_DOWN', 'The node is stopping.'));
  }

  /** The kinds running on this node now, for status. */
  runningJobs(): string[] {
    return [...this.running.keys()].sort();
  }

  /** One round: on the master, start every kind that has work and is not running already. */
  check(): void {
    if (this.stopped) return;
    const soft = this.runtime.softState();
    if (soft.role !== 'master') return;
    const now = this.options.now();
    const state = this.runtime.clusterState();
    for (const kind of this.kinds.values()) {
      if (this.running.has(kind.name)) continue;
      const failure = this.failures.get(kind.name);
      if (failure !== undefined && now < failure.notBeforeMs) continue;
      let due: boolean;
      try {
        due = kind.due({ progress: state.jobs[kind.name]?.progress ?? null, state, now });
      } catch (err) {
        this.log.error({ err, job: kind.name }, 'a job kind failed to say whether it is due');
        continue;
      }
      if (due) this.launch(kind, soft.term);
    }
  }

  private launch(kind: JobKind, term: number): void {
    const abort = new AbortController();
    this.running.set(kind.name, { term, abort });
    void this.runOnce(kind, term, abort.signal).then(
      () => this.failures.delete(kind.name),
      (err: unknown) => {
        const count = (this.failures.get(kind.name)?.count ?? 0) + 1;
        const delay = Math.min(this.options.retryDelayMsMax, this.options.checkIntervalMs * 2 ** Math.min(count, 20));
        this.failures.set(kind.name, { count, notBeforeMs: this.options.now() + delay });
        if (abort.signal.aborted) this.log.info({ job: kind.name, term, reason: String(abort.signal.reason) }, 'a cluster job stopped: this node is no longer master');
        else this.log.error({ err, job: kind.name, term, failuresInARow: count, retryInMs: delay }, 'a cluster job failed');
      },
    ).finally(() => {
      if (this.running.get(kind.name)?.abort === abort) this.running.delete(kind.name);
    });
  }

  private async runOnce(kind: JobKind, term: number, signal: AbortSignal): Promise<void> {
    const self = this.runtime.self().id;
    const holds = (claim: JobClaim | null | undefined) => claim?.owner === self && claim.term === term;
    const job = () => this.runtime.clusterState().jobs[kind.name];
    if (!holds(job()?.claim)) {
      const previous = job()?.claim ?? null;
      this.runtime.proposeClusterChange({ type: 'jobClaimed', job: kind.name, owner: self, term });
      await this.awaitJob(kind.name, signal, (j) => holds(j?.claim), 'its claim');
      if (previous !== null) this.log.info({ job: kind.name, term, previousOwner: previous.owner, previousTerm: previous.term }, 'took over a cluster job from the previous master');
    }
    // Claimed and applied: every earlier entry is applied too, so the progress read now is the last committed.
    let committed = job()!;
    if (!kind.due({ progress: committed.progress, state: this.runtime.clusterState(), now: this.options.now() })) return;
    const run: JobRun = {
      job: kind.name,
      owner: self,
      term,
      signal,
      progress: () => committed.progress,
      clusterState: () => this.runtime.clusterState(),
      now: () => this.options.now(),
      commit: async (progress) => {
        signal.throwIfAborted();
        const base = committed.version;
        this.runtime.proposeClusterChange({ type: 'jobProgress', job: kind.name, owner: self, term, version: base, progress });
        committed = await this.awaitJob(kind.name, signal, (j) => {
          if (!holds(j?.claim)) throw new ConclaveError('MASTER_CHANGED', `Another master took job ${kind.name} over; this step was not committed.`);
          return j!.version > base;
        }, 'its progress');
      },
    };
    await kind.run(run);
  }

  /** Waits until the applied job state satisfies `done` (which may throw to fail), bounded and abortable. */
  private awaitJob(name: string, signal: AbortSignal, done: (job: JobState | undefined) => boolean, what: string): Promise<JobState> {
    const current = () => this.runtime.clusterState().jobs[name];
    return new Promise<JobState>((resolve, reject) => {
      let unsubscribe = () => {};
      const finish = (error: unknown, job?: JobState) => {
        clearTimeout(timer);
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
        if (error !== undefined) reject(error);
        else resolve(job!);
      };
      const test = () => {
        try {
          const job = current();
          if (done(job)) finish(undefined, job);
        } catch (err) {
          finish(err);
        }
      };
      const onAbort = () => finish(signal.reason);
      const timer = setTimeout(
        () => finish(new ConclaveError('WRITE_OUTCOME_UNKNOWN', `Job ${name}: ${what} was not applied within ${this.options.commitTimeoutMs} ms; it may still be.`)),
        this.options.commitTimeoutMs,
      );
      if (signal.aborted) return finish(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      unsubscribe = this.runtime.onChange(test);
      test();
    });
  }

  /** Runs of an earlier term, or on a node no longer master, stop at once. */
  private abortDeposed(): void {
    const soft = this.runtime.softState();
    for (const [name, run] of this.running) {
      if (soft.role !== 'master' || soft.term !== run.term) {
        run.abort.abort(new ConclaveError('MASTER_CHANGED', `This node is no longer the master of term ${run.term}; job ${name} stops here.`));
      }
    }
  }
}
