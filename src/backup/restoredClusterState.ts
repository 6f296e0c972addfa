import { checkSettingsUpdate, type DynamicValue } from '../config/dynamicSettings.js';
import { jobChangeProblem, jobsMax, type JobState } from '../core/clusterJobs.js';
import type { ClusterState } from '../core/clusterState.js';
import { webhookProblem, webhooksLimit } from '../core/clusterWebhooks.js';
import { ConclaveError, isConclaveError } from '../errors/catalogue.js';

/**
 * The cluster state a restored data directory starts from. The backup's manifest carries the source's cluster state,
 * and nothing protects the manifest (the content digest covers the state's content only): whoever can write the
 * file can edit it. So a restore never installs it as it stands:
 *
 * - a new cluster is built fresh: no jobs (their records name the source's nodes and paths, and would drive the
 *   restored node's pruner), and only the dynamic settings that pass today's rules — minus every
 *   `backup.schedule.*`, host paths and a schedule of the source that an operator sets again for the new cluster;
 * - a clone's state is checked as strictly as the core would take it (jobsMax, jobProgressCharsMax, settings that
 *   pass their rules) and refused whole otherwise: it joins its cluster, whose own state soon replaces it.
 */

/** Settings that never carry over to a new cluster: they name places on the source's hosts. */
const sourceOnlyPrefix = 'backup.schedule.';

export interface NewClusterState {
  readonly state: ClusterState;
  /** The settings of the backup left out, by name, sorted. */
  readonly droppedSettings: readonly string[];
}

export function newClusterState(from: ClusterState, to: { readonly clusterUuid: string; readonly nodeId: string }): NewClusterState {
  const settings: Record<string, DynamicValue> = {};
  const dropped: string[] = [];
  for (const [name, value] of Object.entries(from.settings)) {
    const kept = name.startsWith(sourceOnlyPrefix) ? undefined : checkedSetting(name, value);
    if (kept === undefined) dropped.push(name);
    else settings[name] = kept;
  }
  return {
    state: {
      version: from.version + 1,
      clusterName: from.clusterName,
      clusterUuid: to.clusterUuid,
      // The node adds itself when elected; the voting configuration is it alone from the first tick.
      nodes: [],
      votingConfiguration: { current: [to.nodeId] },
      votingExclusions: [],
      settings,
      inSync: [to.nodeId],
      jobs: {},
      // Webhooks carry secrets sealed with the source's cluster secret and marks of the source's feed: a new cluster
      // registers its own.
      webhooks: {},
    },
    droppedSettings: dropped.sort(),
  };
}

/** The clone's cluster state as the backup holds it, or BACKUP_CORRUPT naming what the core would not take. */
export function checkedCloneClusterState(state: ClusterState): ClusterState {
  for (const [name, value] of Object.entries(state.settings)) {
    if (checkedSetting(name, value) === undefined) throw corrupt(`its cluster state holds the setting ${JSON.stringify(name.slice(0, 100))} with a value its rule refuses`);
  }
  const jobs = state.jobs as unknown;
  if (typeof jobs !== 'object' || jobs === null || Array.isArray(jobs)) throw corrupt('its cluster state holds jobs that are not a map of jobs');
  const entries = Object.entries(jobs as Record<string, unknown>);
  if (entries.length > jobsMax) throw corrupt(`its cluster state holds ${entries.length} jobs, more than the ${jobsMax} a cluster may`);
  for (const [name, job] of entries) {
    const problem = jobProblem(name, job);
    if (problem !== null) throw corrupt(`its cluster state's job ${JSON.stringify(name.slice(0, 100))} ${problem}`);
  }
  const webhooks = (state.webhooks as unknown) ?? {};
  if (typeof webhooks !== 'object' || webhooks === null || Array.isArray(webhooks)) throw corrupt('its cluster state holds webhooks that are not a map of webhooks');
  const hooks = Object.entries(webhooks as Record<string, unknown>);
  if (hooks.length > webhooksLimit) throw corrupt(`its cluster state holds ${hooks.length} webhooks, more than the ${webhooksLimit} a cluster may`);
  for (const [id, hook] of hooks) {
    const problem = webhookProblem(hook) ?? ((hook as { id?: unknown }).id === id ? null : 'is filed under another id');
    if (problem !== null) throw corrupt(`its cluster state's webhook ${JSON.stringify(id.slice(0, 100))}: ${problem}`);
  }
  return state;
}

function jobProblem(name: string, raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'is not a job';
  const job = raw as Partial<Record<keyof JobState, unknown>>;
  const term = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
  const claim = job.claim as { owner?: unknown; term?: unknown } | null | undefined;
  if (claim !== null && (typeof claim !== 'object' || typeof claim.owner !== 'string' || claim.owner.length === 0 || claim.owner.length > 1024 || !term(claim.term))) {
    return 'has a malformed claim';
  }
  if (!term(job.claimTerm) || !term(job.version)) return 'has a malformed claim term or version';
  if (!('progress' in job)) return 'has no progress';
  return jobChangeProblem({}, { type: 'jobProgress', job: name, owner: '', term: 0, version: 0, progress: job.progress as JobState['progress'] });
}

/** The value the dynamic settings' rules store for it, or undefined when they refuse it (or the name is unknown). */
function checkedSetting(name: string, value: unknown): DynamicValue | undefined {
  try {
    const checked = checkSettingsUpdate({ [name]: value })[name];
    return checked === null ? undefined : checked;
  } catch (err) {
    if (isConclaveError(err) && err.code === 'INVALID_REQUEST') return undefined;
    throw err;
  }
}

function corrupt(message: string): ConclaveError {
  return new ConclaveError('BACKUP_CORRUPT', `The backup is not valid: ${message}; a clone is not built from it.`);
}
