/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), for tests: it refuses what a Prometheus
 * server would refuse or misread (a sample outside a declared family, a bad name or escape, a duplicate series, a
 * histogram without its +Inf bucket, _count or _sum), so a test that parses GET /metrics proves the text is valid.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  help: string | null;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly samples: Sample[];
}

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const types = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export class ExpositionError extends Error {}

export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, help: null, type: 'untyped', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new ExpositionError('the text must end with a line feed');
  lines.pop();
  lines.forEach((line, i) => {
    const where = `line ${i + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (match === null) return; // a plain comment
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      if (!metricName.test(name)) throw new ExpositionError(`${where}: bad metric name ${name}`);
      const f = family(name);
      if (keyword === 'HELP') {
        if (f.help !== null) throw new ExpositionError(`${where}: a second HELP for ${name}`);
        f.help = unescape(rest, false, where);
      } else {
        if (!types.has(rest)) throw new ExpositionError(`${where}: unknown type ${rest}`);
        if (f.samples.length > 0) throw new ExpositionError(`${where}: TYPE of ${name} after its samples`);
        f.type = rest as Family['type'];
      }
      return;
    }
    const sample = parseSample(line, where);
    const owner = ownerOf(families, sample.name);
    if (owner === undefined) throw new ExpositionError(`${where}: ${sample.name} belongs to no declared family`);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new ExpositionError(`${where}: a second sample of one series ${key}`);
    seen.add(key);
    owner.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

/** The family a sample belongs to: a histogram's or summary's with a suffix, or its own name. */
function ownerOf(families: Map<string, Family>, name: string): Family | undefined {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const f = families.get(name.slice(0, -suffix.length));
    if (f !== undefined && (f.type === 'histogram' || (f.type === 'summary' && suffix !== '_bucket'))) return f;
  }
  const own = families.get(name);
  return own?.type === 'histogram' ? undefined : own;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { infinite: number | null; count: number | null; sum: boolean; last: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { infinite: null, count: null, sum: false, last: 0 };
    series.set(key, entry);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new ExpositionError(`${f.name}: a bucket without le`);
      if (s.value < entry.last) throw new ExpositionError(`${f.name}: buckets must not decrease`);
      entry.last = s.value;
      if (le === '+Inf') entry.infinite = s.value;
    } else if (s.name === `${f.name}_count`) entry.count = s.value;
    else if (s.name === `${f.name}_sum`) entry.sum = true;
  }
  for (const [key, entry] of series) {
    if (entry.infinite === null || entry.count === null || !entry.sum) throw new ExpositionError(`${f.name}${key}: needs a +Inf bucket, _count and _sum`);
    if (entry.infinite !== entry.count) throw new ExpositionError(`${f.name}${key}: the +Inf bucket must equal _count`);
  }
}

function parseSample(line: string, where: string): Sample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i]!)) i++;
  const name = line.slice(0, i);
  if (!metricName.test(name)) throw new ExpositionError(`${where}: bad metric name in ${line}`);
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const start = i;
      while (i < line.length && line[i] !== '=') i++;
      const label = line.slice(start, i);
      if (!labelName.test(label)) throw new ExpositionError(`${where}: bad label name ${label}`);
      if (line[i + 1] !== '"') throw new ExpositionError(`${where}: a label value must be quoted`);
      i += 2;
      let raw = '';
      while (i < line.length && line[i] !== '"') {
        if (line[i] === '\\') {
          raw += line.slice(i, i + 2);
          i += 2;
        } else raw += line[i++];
      }
      if (i >= line.length) throw new ExpositionError(`${where}: an unterminated label value`);
      i++;
      if (Object.hasOwn(labels, label)) throw new ExpositionError(`${where}: label ${label} twice`);
      labels[label] = unescape(raw, true, where);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new ExpositionError(`${where}: expected , or } after a label`);
    }
    i++;
  }
  const rest = line.slice(i).split(' ');
  if (rest[0] !== '' || rest.length < 2 || rest.length > 3) throw new ExpositionError(`${where}: expected one space, a value and an optional timestamp: ${line}`);
  const value = parseValue(rest[1]!, where);
  if (rest.length === 3 && !/^-?\d+$/.test(rest[2]!)) throw new ExpositionError(`${where}: bad timestamp ${rest[2]}`);
  return { name, labels, value };
}

function parseValue(text: string, where: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new ExpositionError(`${where}: bad value ${text}`);
  return Number(text);
}

/** Undoes the format's escapes: \\ and \n everywhere, \" in label values. */
function unescape(text: string, quoted: boolean, where: string): string {
  return text.replace(/\\(.?)/g, (_all, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quoted) return '"';
    throw new ExpositionError(`${where}: bad escape \\${c}`);
  });
}

/** The value of the one sample of `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
