import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

import { readClusterSecretFile } from './clusterSecret.js';
import { envNameOf, envNonSettings, settingSpecs, type Config, type SettingSpec } from './settings.js';

/** A configuration that cannot start a node. The message names the setting, where it came from, and the fix. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  /** Path of a YAML file, if any. */
  readonly file?: string;
  /** Environment variables (only CONCLAVE_* are read). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Settings given as command-line flags, by setting key. */
  readonly flags: Readonly<Record<string, string | number | boolean | readonly string[] | undefined>>;
  /** The flag that set each key, so an error can name what the user typed. */
  readonly flagNames?: Readonly<Record<string, string>>;
}

const specsByKey = new Map(settingSpecs.map((s) => [s.key, s]));

function buildSchema() {
  const sections = new Map<string, Record<string, z.ZodType>>();
  for (const spec of settingSpecs) {
    const [section, name] = spec.key.split('.') as [string, string];
    const shape = sections.get(section) ?? {};
    shape[name] = spec.schema;
    sections.set(section, shape);
  }
  const shape: Record<string, z.ZodType> = {};
  for (const [section, fields] of sections) shape[section] = z.strictObject(fields).prefault({});
  return z.strictObject(shape);
}

const schema = buildSchema();

/** Reads a string from the environment or a flag as the setting's type, leaving bad text for the schema to name. */
function fromText(spec: SettingSpec, text: string | number | boolean | readonly string[]): unknown {
  if (typeof text !== 'string') return text;
  if (spec.kind === 'list') return text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  if (spec.kind === 'int') return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
  if (spec.kind === 'bool') return text === 'true' ? true : text === 'false' ? false : text;
  return text;
}

function setAt(target: Record<string, Record<string, unknown>>, key: string, value: unknown): void {
  const [section, name] = key.split('.') as [string, string];
  target[section] = { ...(target[section] ?? {}), [name]: value };
}

/** Merges defaults < file < environment < flags and validates the result. */
export function loadConfig(sources: ConfigSources): Config {
  const raw: Record<string, Record<string, unknown>> = {};
  const origin = new Map<string, string>();

  if (sources.file !== undefined) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(sources.file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`Cannot read the configuration file ${sources.file}: ${(err as Error).message}`);
    }
    if (parsed !== null && parsed !== undefined) {
      if (typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new ConfigError(`The configuration file ${sources.file} must hold a YAML mapping of sections.`);
      }
      for (const [section, fields] of Object.entries(parsed as Record<string, unknown>)) {
        if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) {
          throw new ConfigError(`In ${sources.file}, "${section}" must be a mapping of settings (for example http: {port: 7400}).`);
        }
        for (const [name, value] of Object.entries(fields as Record<string, unknown>)) {
          setAt(raw, `${section}.${name}`, value);
          origin.set(`${section}.${name}`, `file ${sources.file}`);
        }
      }
    }
  }

  const settingEnv = new Map(settingSpecs.map((s) => [envNameOf(s.key), s]));
  for (const [name, value] of Object.entries(sources.env)) {
    if (!name.startsWith('CONCLAVE_') || value === undefined) continue;
    if ((envNonSettings as readonly string[]).includes(name)) continue;
    const spec = settingEnv.get(name);
    if (spec === undefined) {
      throw new ConfigError(
        `Unknown environment variable ${name}. Settings are ${[...settingEnv.keys()].join(', ')}; unset it or fix the name.`,
      );
    }
    setAt(raw, spec.key, fromText(spec, value));
    origin.set(spec.key, `environment variable ${name}`);
  }

  for (const [key, value] of Object.entries(sources.flags)) {
    if (value === undefined) continue;
    const spec = specsByKey.get(key);
    if (spec === undefined) throw new ConfigError(`Unknown setting "${key}".`);
    setAt(raw, key, fromText(spec, value));
    origin.set(key, sources.flagNames?.[key] !== undefined ? `flag ${sources.flagNames[key]}` : 'the command line');
  }

  const result = schema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = issue.path.join('.');
      const spec = specsByKey.get(key);
      if (issue.code === 'unrecognized_keys') {
        // Only the file can hold unknown keys: environment variables and flags are matched against the table.
        const where = key === '' ? '' : ` in section "${key}"`;
        return (
          `Unknown setting${where} of ${sources.file ? `file ${sources.file}` : 'the configuration'}: ${issue.keys.join(', ')}. ` +
          `Known settings: ${settingSpecs.map((s) => s.key).join(', ')}.`
        );
      }
      const from = origin.get(key) ?? 'the defaults';
      const [section, name] = key.split('.') as [string, string];
      const given = raw[section]?.[name];
      // A secret's value is never repeated: error messages reach terminals and logs.
      const value = given === undefined || spec?.secret === true ? '' : `, value ${JSON.stringify(given)}`;
      return `Setting ${key} (from ${from}${value}) is invalid: ${issue.message}.${spec ? ` ${spec.doc}` : ''}`;
    });
    throw new ConfigError(lines.join('\n'));
  }
  const config = result.data as unknown as Config;
  if (config.content.pageSizeDefault > config.content.pageSizeMax) {
    throw new ConfigError('Setting content.pageSizeDefault is larger than content.pageSizeMax; lower it or raise the maximum.');
  }
  if (config.cluster.initialMasterNodes.length > 0 && config.cluster.bootstrapExpect > 0) {
    throw new ConfigError('Settings cluster.initialMasterNodes and cluster.bootstrapExpect are both set; bootstrap one way: keep one of them.');
  }
  if (config.node.votingOnly && !config.node.masterEligible) {
    throw new ConfigError('Setting node.votingOnly needs node.masterEligible: a node that may not vote cannot be voting-only.');
  }
  if (config.cluster.heartbeatIntervalTicks >= config.cluster.electionTimeoutTicks) {
    throw new ConfigError('Setting cluster.heartbeatIntervalTicks must be below cluster.electionTimeoutTicks, or followers time out between heartbeats.');
  }
  // A member is taken for down, or out of the in-sync set, no sooner than an election times out: sooner, a master
  // would drop members for silences its own followers tolerate (the runtime used to raise such values silently).
  const electionTimeoutMs = config.cluster.electionTimeoutTicks * config.cluster.tickMs;
  for (const [key, value] of [
    ['cluster.nodeFailureTimeoutMs', config.cluster.nodeFailureTimeoutMs],
    ['replication.inSyncTimeoutMs', config.replication.inSyncTimeoutMs],
  ] as const) {
    if (value < electionTimeoutMs) {
      throw new ConfigError(
        `Setting ${key} (${value} ms) is below the election timeout (cluster.electionTimeoutTicks × cluster.tickMs = ${electionTimeoutMs} ms); raise it to at least that.`,
      );
    }
  }
  // An append at the bound, plus one entry past it (an append always carries one), must fit into a frame, which the
  // transport would otherwise drop for good (the runtime used to lower the bound silently).
  if (config.replication.appendBytesMax > config.transport.frameBytesMax / 2) {
    throw new ConfigError(
      `Setting replication.appendBytesMax (${config.replication.appendBytesMax}) is above half of transport.frameBytesMax (${config.transport.frameBytesMax}); lower it or raise the frame bound.`,
    );
  }
  // A batch is one journal entry: it must fit into a frame beside an append's other entries (see above), with room
  // for what its encoding adds to the JSON it was measured as (ids of new nodes, field names).
  if (config.content.batchBytesMax > config.transport.frameBytesMax / 4) {
    throw new ConfigError(
      `Setting content.batchBytesMax (${config.content.batchBytesMax}) is above a quarter of transport.frameBytesMax (${config.transport.frameBytesMax}); lower it or raise the frame bound.`,
    );
  }
  if (config.transport.publishHost !== '' && config.transport.port === 0) {
    throw new ConfigError('Setting transport.publishHost needs a fixed transport.port: peers cannot reach a port picked at random.');
  }
  const tls = [config.transport.tlsCertFile, config.transport.tlsKeyFile, config.transport.tlsCaFile];
  if (tls.some((f) => f !== '') && tls.some((f) => f === '')) {
    throw new ConfigError('TLS between nodes needs transport.tlsCertFile, transport.tlsKeyFile and transport.tlsCaFile together; set all three or none.');
  }
  if ((config.http.tlsCertFile === '') !== (config.http.tlsKeyFile === '')) {
    throw new ConfigError('TLS for the HTTP API needs http.tlsCertFile and http.tlsKeyFile together; set both or neither.');
  }
  if (config.http.tlsClientCaFile !== '' && config.http.tlsCertFile === '') {
    throw new ConfigError('Setting http.tlsClientCaFile asks clients for certificates over TLS: set http.tlsCertFile and http.tlsKeyFile too.');
  }
  if (config.metrics.access === 'open' && config.metrics.port === 0) {
    throw new ConfigError('Setting metrics.access "open" serves /metrics without credentials on a listener of its own only: set metrics.port too (the API\'s port always asks for credentials).');
  }
  if (config.auth.tokenTtlSeconds > config.auth.tokenLifetimeSecondsMax) {
    throw new ConfigError(
      `Setting auth.tokenTtlSeconds (${config.auth.tokenTtlSeconds}) is above auth.tokenLifetimeSecondsMax (${config.auth.tokenLifetimeSecondsMax}); lower it or raise the maximum.`,
    );
  }
  if (config.cluster.secretFile !== '') {
    if (config.cluster.secret !== '') {
      throw new ConfigError('Settings cluster.secret and cluster.secretFile are both set; give the secret one way: keep one of them.');
    }
    const read = readClusterSecretFile(config.cluster.secretFile);
    if ('problem' in read) throw new ConfigError(`Setting cluster.secretFile (from ${origin.get('cluster.secretFile') ?? 'the defaults'}) is invalid: ${read.problem}.`);
    config.cluster.secret = read.secret;
  }
  return config;
}
