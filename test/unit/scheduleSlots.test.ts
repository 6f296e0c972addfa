import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';

import { dueSlot, latestSlotAtOrBefore, nextSlotAfter, parseScheduleInterval, scheduledBackupFileName, slotsBetween, type ScheduleInterval } from '../../src/backup/scheduleSlots.js';
import { firesAt, lastFireAtOrBefore, nextFireAfter, parseCron, type CronExpression } from '../../src/jobs/cronExpression.js';

const minute = 60_000;
const interval = (text: string): ScheduleInterval => {
  const parsed = parseScheduleInterval(text);
  assert.ok(typeof parsed !== 'string', `${text}: ${String(parsed)}`);
  return parsed;
};
const cron = (text: string): CronExpression => {
  const parsed = parseCron(text);
  assert.ok(typeof parsed !== 'string', `${text}: ${String(parsed)}`);
  return parsed;
};
const at = (iso: string) => Date.parse(iso);

/** 2000-01-01 to 2100-01-01, in milliseconds. */
const times = fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) });

/** A field of a cron expression: *, a number, a range, a step or a list of them, within the field's bounds. */
function field(min: number, max: number): fc.Arbitrary<string> {
  const value = fc.integer({ min, max });
  const item = fc.oneof(
    value.map(String),
    fc.tuple(value, value).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
    fc.integer({ min: 1, max: max - min + 1 }).map((step) => `*/${step}`),
    fc.tuple(value, value, fc.integer({ min: 1, max: 10 })).map(([a, b, s]) => `${Math.min(a, b)}-${Math.max(a, b)}/${s}`),
  );
  return fc.oneof({ weight: 2, arbitrary: fc.constant('*') }, { weight: 3, arbitrary: fc.array(item, { minLength: 1, maxLength: 3 }).map((items) => items.join(',')) });
}
const expressions = fc
  .tuple(field(0, 59), field(0, 23), fc.oneof(fc.constant('*'), field(1, 28)), fc.oneof({ weight: 3, arbitrary: fc.constant('*') }, { weight: 1, arbitrary: field(1, 12) }), field(0, 7))
  .map((parts) => parts.join(' '));

test('durations and cron expressions parse; anything else is refused with what is wrong', () => {
  assert.deepEqual(interval('15m'), { kind: 'every', ms: 15 * minute, source: '15m' });
  assert.equal((interval('1d') as { ms: number }).ms, 86_400_000);
  assert.equal(interval('*/5 * * * *').kind, 'cron');
  for (const [text, problem] of [
    ['0s', /between 1s and 366d/],
    ['367d', /between 1s and 366d/],
    ['15 minutes', /number followed by one of s, m, h, d/],
    ['1.5h', /neither a duration/],
    ['* * * *', /5 fields/],
    ['* * * * * *', /5 fields/],
    ['60 * * * *', /minute field "60" is outside 0-59/],
    ['* * * JAN *', /month field/],
    ['*/0 * * * *', /step of 0/],
    ['5-1 * * * *', /outside/],
    ['0 0 30 2 *', /never fires/],
    ['0 0 31 4,6,9,11 *', /never fires/],
  ] as const) {
    const parsed = parseScheduleInterval(text);
    assert.equal(typeof parsed, 'string', `${text} is refused`);
    assert.match(parsed as string, problem);
  }
  assert.equal(typeof parseScheduleInterval('0 0 29 2 *'), 'object', '29 February comes every four years');
});

test('property: the parser never throws and accepts every well-formed expression', () => {
  fc.assert(fc.property(fc.string({ maxLength: 40 }), (text) => void parseScheduleInterval(text)));
  fc.assert(fc.property(expressions, (text) => assert.equal(typeof parseCron(text), 'object', text)));
});

test('cron fire times in UTC, with the Vixie rule for the two day fields', () => {
  assert.equal(nextFireAfter(cron('30 2 * * *'), at('2024-05-01T02:30:00Z')), at('2024-05-02T02:30:00Z'), 'strictly after');
  assert.equal(lastFireAtOrBefore(cron('30 2 * * *'), at('2024-05-01T02:30:00Z')), at('2024-05-01T02:30:00Z'), 'at or before');
  assert.equal(nextFireAfter(cron('0 0 29 2 *'), at('2024-03-01T00:00:00Z')), at('2028-02-29T00:00:00Z'));
  // 1st of the month or a Monday: 2024-05-06 is a Monday, 2024-06-01 a Saturday.
  const either = cron('0 12 1 * 1');
  assert.equal(nextFireAfter(either, at('2024-05-01T13:00:00Z')), at('2024-05-06T12:00:00Z'));
  assert.equal(nextFireAfter(either, at('2024-05-27T13:00:00Z')), at('2024-06-01T12:00:00Z'));
  assert.equal(nextFireAfter(cron('0 0 * * 7'), at('2024-05-01T00:00:00Z')), at('2024-05-05T00:00:00Z'), '7 is Sunday as 0 is');
});

test('property: the next fire time is the first minute after that fires; the last one the latest at or before', () => {
  fc.assert(
    fc.property(expressions, times, (text, time) => {
      const expression = cron(text);
      const next = nextFireAfter(expression, time);
      assert.ok(next !== null && next > time && firesAt(expression, next), `${text} after ${new Date(time).toISOString()}`);
      const last = lastFireAtOrBefore(expression, time);
      assert.ok(last !== null && last <= time && firesAt(expression, last));
      assert.equal(nextFireAfter(expression, last), next, 'nothing fires between the last and the next');
      // Minute by minute over the next two days: nothing fires before `next`.
      for (let t = Math.floor(time / minute) * minute + minute; t < Math.min(next, time + 2 * 1440 * minute); t += minute) {
        assert.ok(!firesAt(expression, t), `${text} fires at ${new Date(t).toISOString()}, before ${new Date(next).toISOString()}`);
      }
    }),
    { numRuns: 300 },
  );
});

const intervals = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 90 }), fc.constantFrom('s', 'm', 'h', 'd')).map(([n, unit]) => `${n}${unit}`),
  expressions,
);

test('property: slots increase with time; the due slot is the latest boundary at or before now and never one committed', () => {
  fc.assert(
    fc.property(intervals, times, fc.integer({ min: 0, max: 40 * 86_400_000 }), fc.option(fc.integer({ min: -5 * 86_400_000, max: 5 * 86_400_000 })), (text, now, later, lastOffset) => {
      const schedule = interval(text);
      const slot = latestSlotAtOrBefore(schedule, now)!;
      assert.ok(slot <= now, 'a slot has come');
      assert.ok(nextSlotAfter(schedule, slot)! > now, 'and it is the latest that has');
      assert.equal(latestSlotAtOrBefore(schedule, slot), slot, 'a slot is a boundary');
      assert.ok(latestSlotAtOrBefore(schedule, now + later)! >= slot, 'slots never go back as time goes on');
      const lastSlot = lastOffset === null ? null : latestSlotAtOrBefore(schedule, now + lastOffset)!;
      const due = dueSlot(schedule, lastSlot, now);
      if (lastSlot !== null && lastSlot >= slot) assert.equal(due, null, 'nothing committed is due again');
      else {
        assert.equal(due?.slot, slot);
        assert.equal(due.skipped, lastSlot === null ? 0 : slotsBetween(schedule, lastSlot, slot));
      }
    }),
    { numRuns: 300 },
  );
});

test('skipped slots are counted: a fixed interval by arithmetic, a cron expression by walking it', () => {
  const hourly = interval('1h');
  assert.deepEqual(dueSlot(hourly, at('2024-05-01T10:00:00Z'), at('2024-05-01T15:20:00Z')), { slot: at('2024-05-01T15:00:00Z'), skipped: 4 });
  assert.deepEqual(dueSlot(hourly, at('2024-05-01T14:00:00Z'), at('2024-05-01T15:00:00Z')), { slot: at('2024-05-01T15:00:00Z'), skipped: 0 });
  assert.equal(dueSlot(hourly, at('2024-05-01T15:00:00Z'), at('2024-05-01T15:59:59Z')), null);
  const weekdays = interval('0 9 * * 1-5');
  // Friday 3 May 09:00 to Wednesday 8 May 10:00: Monday and Tuesday were skipped, Wednesday is due.
  assert.deepEqual(dueSlot(weekdays, at('2024-05-03T09:00:00Z'), at('2024-05-08T10:00:00Z')), { slot: at('2024-05-08T09:00:00Z'), skipped: 2 });
  assert.equal(scheduledBackupFileName('prod', '6f163547-8764-8851-e2ea-2870ccbd11ae', at('2024-05-08T09:00:00Z')), 'conclave-prod-6f163547-20240508T090000Z.backup.tar');
});
