import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FormerMasters, type FormerMasterScan } from '../../src/forwarding/formerMasters.js';

/** A FormerMasters of named items, recording what it gave up and under which former master. */
function tracked(scan: FormerMasterScan) {
  const givenUp: [string, string][] = [];
  const sent = new FormerMasters<string>(scan, (item, formerMaster) => givenUp.push([item, formerMaster]));
  return { sent, givenUp };
}

for (const scan of ['everyReport', 'whenMasterChanges'] as const) {
  describe(`former masters (${scan})`, () => {
    test('another master known: everything sent to any other master is given up, once, and forgotten', () => {
      const { sent, givenUp } = tracked(scan);
      sent.add('m1', 'a');
      sent.add('m1', 'b');
      sent.add('m2', 'c');
      sent.add('m3', 'd');
      sent.masterReported('m2');
      assert.deepEqual(givenUp.sort(), [['a', 'm1'], ['b', 'm1'], ['d', 'm3']]);
      assert.equal(sent.size, 1, 'what went to the master stays');
      sent.masterReported('m1');
      assert.deepEqual(givenUp.slice(3), [['c', 'm2']]);
      assert.equal(sent.size, 0);
      sent.masterReported('m3');
      assert.equal(givenUp.length, 4, 'nothing is given up twice');
    });

    test('losing sight of the master gives up nothing: an election may confirm it again', () => {
      const { sent, givenUp } = tracked(scan);
      sent.add('m1', 'a');
      sent.masterReported(null);
      assert.deepEqual(givenUp, []);
      sent.masterReported('m1');
      assert.deepEqual(givenUp, []);
      assert.equal(sent.size, 1);
    });

    test('an item removed before the master changes is not given up', () => {
      const { sent, givenUp } = tracked(scan);
      sent.add('m1', 'a');
      sent.add('m1', 'b');
      sent.delete('m1', 'a');
      sent.delete('m1', 'never-added');
      sent.delete('m9', 'b');
      assert.equal(sent.size, 1);
      sent.masterReported('m2');
      assert.deepEqual(givenUp, [['b', 'm1']]);
    });

    test('the give-up callback may remove the item again (as the callers settle it)', () => {
      const givenUp: string[] = [];
      const sent: FormerMasters<string> = new FormerMasters<string>(scan, (item, formerMaster) => {
        sent.delete(formerMaster, item);
        givenUp.push(item);
      });
      sent.add('m1', 'a');
      sent.add('m1', 'b');
      sent.masterReported('m2');
      assert.deepEqual(givenUp, ['a', 'b']);
      assert.equal(sent.size, 0);
    });
  });
}

test('whenMasterChanges looks only when the reported master differs from the last one looked at; everyReport at every report', () => {
  const changes = tracked('whenMasterChanges');
  const every = tracked('everyReport');
  for (const { sent } of [changes, every]) {
    sent.masterReported('m2');
    // Registered under a master the last look already left behind (the relay reads the master before an await).
    sent.add('m1', 'late');
    sent.masterReported('m2');
  }
  assert.deepEqual(changes.givenUp, [], 'the same master again: no look');
  assert.deepEqual(every.givenUp, [['late', 'm1']]);
  changes.sent.masterReported(null);
  changes.sent.masterReported('m2');
  assert.deepEqual(changes.givenUp, [], 'no master, then the same one: still no change');
  changes.sent.masterReported('m3');
  assert.deepEqual(changes.givenUp, [['late', 'm1']]);
});
