/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC so that every node
 * reads the same fire times from the same setting whatever its local time zone. Strict on purpose: numbers, `*`,
 * ranges `a-b`, steps `*\/n` and `a-b/n`, and lists `x,y`; no names (JAN, MON), no `?`, `L`, `W`, `#`, no sixth field
 * for seconds — an expression a reader cannot be sure of is refused rather than guessed at. Day of week 0-7, both 0
 * and 7 being Sunday. As in Vixie cron, when both day fields are restricted a day matching either fires.
 *
 * Pure: times are epoch milliseconds given by the caller.
 */
export interface CronExpression {
  readonly source: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly daysOfMonth: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  /** 0 (Sunday) to 6. */
  readonly daysOfWeek: ReadonlySet<number>;
  readonly daysOfMonthRestricted: boolean;
  readonly daysOfWeekRestricted: boolean;
}

const minuteMs = 60_000;
const hourMs = 60 * minuteMs;
const dayMs = 24 * hourMs;
/** A search gives up after this many steps (each skips a whole minute, hour, day or month that cannot match). */
const searchStepsMax = 100_000;
/** Long enough to see every calendar case (a 29 February comes within 8 years even across 2100). */
const firesWithinMs = 8 * 366 * dayMs;

const fields = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

/** Parses an expression; a string naming what is wrong when it is not one, or when it can never fire. */
export function parseCron(source: string): CronExpression | string {
  const parts = source.trim().split(/\s+/);
  if (parts.length !== 5) return `a cron expression has 5 fields (minute hour day-of-month month day-of-week), not ${parts.length}`;
  const sets: Set<number>[] = [];
  for (let i = 0; i < 5; i++) {
    const set = parseField(parts[i]!, fields[i]!);
    if (typeof set === 'string') return set;
    sets.push(set);
  }
  const daysOfWeek = new Set([...sets[4]!].map((d) => d % 7));
  const expression: CronExpression = {
    source: parts.join(' '),
    minutes: sets[0]!,
    hours: sets[1]!,
    daysOfMonth: sets[2]!,
    months: sets[3]!,
    daysOfWeek,
    daysOfMonthRestricted: parts[2] !== '*',
    daysOfWeekRestricted: parts[4] !== '*',
  };
  // 30 February and the like: refused now rather than found out at every check.
  const probe = Date.UTC(2000, 0, 1);
  const next = nextFireAfter(expression, probe);
  if (next === null || next - probe > firesWithinMs) return `the cron expression ${expression.source} never fires`;
  return expression;
}

function parseField(text: string, field: (typeof fields)[number]): Set<number> | string {
  const set = new Set<number>();
  for (const item of text.split(',')) {
    const match = /^(\*|(\d{1,2})(?:-(\d{1,2}))?)(?:\/(\d{1,2}))?$/.exec(item);
    if (match === null) return `the ${field.name} field ${JSON.stringify(text)} is not a number, *, a range a-b, a step /n or a list of them`;
    const low = match[1] === '*' ? field.min : Number(match[2]);
    const high = match[1] === '*' ? field.max : match[3] !== undefined ? Number(match[3]) : match[4] !== undefined ? field.max : low;
    const step = match[4] !== undefined ? Number(match[4]) : 1;
    if (low < field.min || high > field.max || low > high) return `the ${field.name} field ${JSON.stringify(text)} is outside ${field.min}-${field.max}`;
    if (step < 1) return `the ${field.name} field ${JSON.stringify(text)} has a step of 0`;
    for (let v = low; v <= high; v += step) set.add(v);
  }
  return set;
}

function dayMatches(expression: CronExpression, date: Date): boolean {
  const dom = expression.daysOfMonth.has(date.getUTCDate());
  const dow = expression.daysOfWeek.has(date.getUTCDay());
  if (expression.daysOfMonthRestricted && expression.daysOfWeekRestricted) return dom || dow;
  return dom && dow;
}

/** Whether the expression fires at the minute starting at `time` (which must be a whole minute). */
export function firesAt(expression: CronExpression, time: number): boolean {
  const date = new Date(time);
  return (
    time % minuteMs === 0 &&
    expression.months.has(date.getUTCMonth() + 1) &&
    dayMatches(expression, date) &&
    expression.hours.has(date.getUTCHours()) &&
    expression.minutes.has(date.getUTCMinutes())
  );
}

/** The first fire time strictly after `time`; null when none within the search bound. */
export function nextFireAfter(expression: CronExpression, time: number): number | null {
  let t = Math.floor(time / minuteMs) * minuteMs + minuteMs;
  for (let steps = 0; steps < searchStepsMax; steps++) {
    const date = new Date(t);
    if (!expression.months.has(date.getUTCMonth() + 1)) t = Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
    else if (!dayMatches(expression, date)) t = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate() + 1);
    else if (!expression.hours.has(date.getUTCHours())) t = Math.floor(t / hourMs) * hourMs + hourMs;
    else if (!expression.minutes.has(date.getUTCMinutes())) t += minuteMs;
    else return t;
  }
  return null;
}

/** The last fire time at or before `time`; null when none within the search bound. */
export function lastFireAtOrBefore(expression: CronExpression, time: number): number | null {
  let t = Math.floor(time / minuteMs) * minuteMs;
  for (let steps = 0; steps < searchStepsMax; steps++) {
    const date = new Date(t);
    // Each skip lands on the last minute of the previous month, day or hour.
    if (!expression.months.has(date.getUTCMonth() + 1)) t = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) - minuteMs;
    else if (!dayMatches(expression, date)) t = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()) - minuteMs;
    else if (!expression.hours.has(date.getUTCHours())) t = Math.floor(t / hourMs) * hourMs - minuteMs;
    else if (!expression.minutes.has(date.getUTCMinutes())) t -= minuteMs;
    else return t;
  }
  return null;
}
