/**
 * Cluster-exclusive jobs in the cluster state: work that one node at a time does for the whole cluster (scheduled
 * backups, webhook delivery, schema migrations), run by the master, with what it has done committed through the
 * journal so that the next master resumes from there.
 *
 * Per job name the state holds the current claim (the owner and the master term it claimed the job in), the job's
 * committed progress (a JSON value the job kind defines) and a version that counts the progress commits. The rules
 * fence a deposed master: progress is applied only when its owner and term are the current claim's and it is based
 * on the current version, so a late proposal of a master that has since been replaced — or a second proposal based
 * on the same progress — changes nothing, deterministically on every node.
 */

/** A JSON value: what a job's progress may be. */
export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

export interface JobClaim {
  /** The node id of the master running the job. */
  readonly owner: string;
  /** The master term the owner claimed it in: a claim of a later term replaces it. */
  readonly term: number;
}

export interface JobState {
  /** Null once released (the progress stays). */
  readonly claim: JobClaim | null;
  /** The term of the latest claim, kept after a release: no claim of an earlier term is taken after it. */
  readonly claimTerm: number;
  /** Null until the first progress commit. */
  readonly progress: JsonValue;
  /** Progress commits applied so far; the next progress must be based on it. */
  readonly version: number;
}

export type JobChange =
  /**
   * The master of `term` takes the job; applied when the job holds no claim of this term or a later one (one master
   * per term: a released job may be claimed again in the term of its last claim, by the same master).
   */
  | { readonly type: 'jobClaimed'; readonly job: string; readonly owner: string; readonly term: number }
  /**
   * The owner's progress, based on the progress of version `version`: applied only when (owner, term) is the current
   * claim and `version` the current version. The version then grows by one.
   */
  | { readonly type: 'jobProgress'; readonly job: string; readonly owner: string; readonly term: number; readonly version: number; readonly progress: JsonValue }
  /** The owner lets go (it stopped running the job); applied only when (owner, term) is the current claim. */
  | { readonly type: 'jobReleased'; readonly job: string; readonly owner: string; readonly term: number }
  /** An operator forgets a job and its progress (a job kind that no longer exists). */
  | { readonly type: 'jobRemoved'; readonly job: string };

/**
 * Most jobs in the cluster state, and most characters of one job's progress as JSON. Fixed here, not configured: every
 * node must apply the same rule to the same entry. The master refuses to propose beyond them (jobChangeProblem), and a
 * change that would exceed them changes nothing when applied.
 */
export const jobsMax = 64;
export const jobProgressCharsMax = 64 * 1024;
const jobNamePattern = /^[a-z][a-zA-Z0-9_.:-]{0,99}$/;

export type Jobs = Readonly<Record<string, JobState>>;

export function isJobChange(change: { readonly type: string }): change is JobChange {
  return change.type === 'jobClaimed' || change.type === 'jobProgress' || change.type === 'jobReleased' || change.type === 'jobRemoved';
}

/** What is wrong with a job change the master is asked to propose, or null. Says what the apply rules would do. */
export function jobChangeProblem(jobs: Jobs, change: JobChange): string | null {
  if (!jobNamePattern.test(change.job)) return `the job name ${JSON.stringify(change.job.slice(0, 120))} is not a lower-case letter followed by at most 99 letters, digits, "_", ".", ":" or "-"`;
  if (change.type === 'jobClaimed' && jobs[change.job] === undefined && Object.keys(jobs).length >= jobsMax) {
    return `the cluster state already holds ${jobsMax} jobs, the most it may`;
  }
  if (change.type === 'jobProgress') {
    const chars = progressChars(change.progress);
    if (chars === null) return 'the progress is not a JSON value';
    if (chars > jobProgressCharsMax) return `the progress takes ${chars} characters as JSON, more than the ${jobProgressCharsMax} a job may commit`;
  }
  return null;
}

/** Deterministic and total, like every cluster-state rule: a change that does not fit changes nothing. */
export function applyJobChange(jobs: Jobs, change: JobChange): Jobs {
  const current = jobs[change.job];
  switch (change.type) {
    case 'jobClaimed': {
      if (!jobNamePattern.test(change.job)) return jobs;
      if (current === undefined) {
        if (Object.keys(jobs).length >= jobsMax) return jobs;
        return withJob(jobs, change.job, { claim: { owner: change.owner, term: change.term }, claimTerm: change.term, progress: null, version: 0 });
      }
      if (current.claim !== null ? current.claim.term >= change.term : current.claimTerm > change.term) return jobs;
      return withJob(jobs, change.job, { ...current, claim: { owner: change.owner, term: change.term }, claimTerm: change.term });
    }
    case 'jobProgress': {
      if (current === undefined || !holds(current, change) || current.version !== change.version) return jobs;
      const chars = progressChars(change.progress);
      if (chars === null || chars > jobProgressCharsMax) return jobs;
      return withJob(jobs, change.job, { ...current, progress: change.progress, version: current.version + 1 });
    }
    case 'jobReleased':
      if (current === undefined || !holds(current, change)) return jobs;
      return withJob(jobs, change.job, { ...current, claim: null });
    case 'jobRemoved': {
      if (current === undefined) return jobs;
      const rest: Record<string, JobState> = {};
      for (const [name, job] of Object.entries(jobs)) if (name !== change.job) rest[name] = job;
      return rest;
    }
  }
}

function holds(job: JobState, by: { readonly owner: string; readonly term: number }): boolean {
  return job.claim !== null && job.claim.owner === by.owner && job.claim.term === by.term;
}

/** Jobs by name order, so that two nodes' states compare equal as JSON whatever order the jobs came in. */
function withJob(jobs: Jobs, name: string, job: JobState): Jobs {
  const next: Record<string, JobState> = {};
  for (const key of [...new Set([...Object.keys(jobs), name])].sort()) next[key] = key === name ? job : jobs[key]!;
  return next;
}

/** The length of a progress value as JSON, or null when it is not JSON (undefined, a function, a cycle). */
function progressChars(progress: JsonValue): number | null {
  try {
    const text = JSON.stringify(progress) as string | undefined;
    return text === undefined ? null : text.length;
  } catch {
    return null;
  }
}
