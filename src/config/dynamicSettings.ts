import { isAbsolute } from 'node:path';

import { parseScheduleInterval } from '../backup/scheduleSlots.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';

/**
 * Dynamic cluster settings: kept in the cluster state (a `settingsUpdated` change through the journal), so every
 * node reads the same value at the same applied index — what a cluster-exclusive job needs when the master running
 * it changes. Changed at run time with `PUT /api/v1/cluster/settings`; a node's own settings (settings.ts) are
 * something else and stay per node. Only names listed here may be set, each checked by its own rule.
 * docs/configuration.md "Dynamic cluster settings" lists them (a test keeps both in step).
 */
export type DynamicValue = string | number | boolean;

export interface DynamicSettingSpec {
  readonly key: string;
  readonly default: DynamicValue;
  readonly doc: string;
  /** The value to store, or what is wrong with it. */
  readonly check: (value: unknown) => { readonly value: DynamicValue } | { readonly problem: string };
}

/**
 * Most records of scheduled backups kept, and the longest directory: the job's progress holds `keep` records (each
 * about 600 characters plus its path) and the pruned list, and the cluster state refuses a progress over
 * jobProgressCharsMax — every commit, retention included, would then fail. test/unit/dynamicSettings.test.ts
 * computes the worst case of these bounds against that limit.
 */
export const backupKeepMax = 40;
export const backupDirectoryCharsMax = 200;

export const dynamicSettingSpecs: readonly DynamicSettingSpec[] = [
  {
    key: 'backup.schedule.directory',
    default: '',
    doc: 'Absolute path of the directory scheduled backups are written to, on the master of the time; empty: no scheduled backups.',
    check: (value) => {
      if (typeof value !== 'string') return { problem: 'must be a string: an absolute path, or "" for off' };
      if (value !== '' && !isAbsolute(value)) return { problem: `must be an absolute path (or "" for off), not ${JSON.stringify(value)}` };
      // Control characters would count six times over in the progress as JSON (\u0000), and belong in no path.
      if (value.length > backupDirectoryCharsMax || [...value].some((c) => c < ' ' || c === '\u007f')) return { problem: `must be a path of at most ${backupDirectoryCharsMax} characters, none of them a control character` };
      return { value };
    },
  },
  {
    key: 'backup.schedule.interval',
    default: '1d',
    doc: 'When scheduled backups are due: a duration (30s, 15m, 1h, 1d: every multiple of it since the epoch, UTC) or a five-field cron expression (UTC).',
    check: (value) => {
      if (typeof value !== 'string') return { problem: 'must be a string: a duration such as "1h" or a cron expression such as "0 3 * * *"' };
      const parsed = parseScheduleInterval(value);
      return typeof parsed === 'string' ? { problem: parsed } : { value: parsed.source };
    },
  },
  {
    key: 'backup.schedule.keep',
    default: 7,
    doc: `How many scheduled backups to keep (1-${backupKeepMax}); older ones are deleted once a newer one has verified.`,
    check: (value) => {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > backupKeepMax) return { problem: `must be an integer from 1 to ${backupKeepMax}` };
      return { value };
    },
  },
];

const specs = new Map(dynamicSettingSpecs.map((spec) => [spec.key, spec]));

/**
 * Checks a settings update from a client (`{"name": value, ...}`, null removing one): INVALID_REQUEST naming the first
 * unknown setting or bad value. Returns the update to propose, values normalised.
 */
export function checkSettingsUpdate(update: unknown): Record<string, DynamicValue | null> {
  if (typeof update !== 'object' || update === null || Array.isArray(update) || Object.keys(update).length === 0) {
    throw new ConclaveError('INVALID_REQUEST', 'Send {"settings": {"name": value, ...}} with at least one setting (null removes one).');
  }
  const checked: Record<string, DynamicValue | null> = {};
  for (const [key, value] of Object.entries(update as Record<string, unknown>)) {
    const spec = specs.get(key);
    if (spec === undefined) {
      throw new ConclaveError('INVALID_REQUEST', `${key} is not a dynamic cluster setting; known: ${[...specs.keys()].join(', ')}.`, { setting: key });
    }
    if (value === null) {
      checked[key] = null;
      continue;
    }
    const outcome = spec.check(value);
    if ('problem' in outcome) throw new ConclaveError('INVALID_REQUEST', `The setting ${key} ${outcome.problem}.`, { setting: key });
    checked[key] = outcome.value;
  }
  return checked;
}

/** Every known setting's value in force: the cluster state's when it holds a valid one, else the default. */
export function effectiveSettings(settings: Readonly<Record<string, DynamicValue>>): Record<string, DynamicValue> {
  const effective: Record<string, DynamicValue> = {};
  for (const spec of dynamicSettingSpecs) effective[spec.key] = dynamicSetting(settings, spec.key);
  return effective;
}

/**
 * One setting's value in force. A stored value its rule refuses (written by a release with another rule) counts as
 * unset rather than stopping whatever reads it.
 */
export function dynamicSetting(settings: Readonly<Record<string, DynamicValue>>, key: string): DynamicValue {
  const spec = specs.get(key);
  invariant(spec !== undefined, `unknown dynamic setting ${key}`);
  const stored = settings[key];
  if (stored === undefined) return spec.default;
  const outcome = spec.check(stored);
  return 'problem' in outcome ? spec.default : outcome.value;
}
