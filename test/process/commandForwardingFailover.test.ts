import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';

import { ProcessCluster } from '../helpers/cluster.js';
import { processAuth } from '../helpers/process.js';
import { waitFor } from '../helpers/tmp.js';

/**
 * Writes forwarded as commands by a replica while the master is killed (kill -9): every answer is a success that
 * the new master holds, WRITE_OUTCOME_UNKNOWN (the command may have been applied), or a retryable refusal of a
 * write that was not applied. Never a success for a write that is lost.
 */

const names = ['k1', 'k2', 'k3'];
const writersCount = 16;

/** Refusals that say the write was not applied (and may be retried as it is). */
const notAppliedCodes = new Set(['MASTER_UNREACHABLE', 'CLUSTER_NO_MASTER', 'NOT_MASTER', 'MASTER_CHANGED', 'OVERLOADED', 'NOT_READY']);

interface Outcome {
  readonly path: string;
  readonly status: number;
  readonly code: string | null;
  readonly afterKill: boolean;
}

let cluster: ProcessCluster;

describe('forwarded commands while the master is killed', () => {
  before(async () => {
    cluster = await ProcessCluster.create(names, (_name, seeds) => [...seeds.flatMap((s) => ['--seed', s]), '--initial-master-nodes', names.join(',')]);
    await cluster.start(...names);
    await cluster.write('/ready', {});
    await cluster.caughtUp();
  });

  after(async () => {
    await cluster?.stopAll();
  });

  test('each answer is a success the new master holds, WRITE_OUTCOME_UNKNOWN, or a refusal of a write not applied', async () => {
    const master = await cluster.master();
    const replica = names.find((n) => n !== master)!;
    const outcomes: Outcome[] = [];
    let killed = false;
    let stopping = false;
    const writer = async (w: number) => {
      for (let i = 0; !stopping; i++) {
        const path = `/w${w}-${i}`;
        const afterKill = killed;
        const res = await request(`${cluster.url(replica)}/api/v1/content${path}`, {
          method: 'PUT',
          headers: { authorization: processAuth, 'content-type': 'application/json' },
          body: JSON.stringify({ properties: { w, i } }),
          headersTimeout: 60_000,
        });
        const body = (await res.body.json()) as { error?: { code: string } };
        outcomes.push({ path, status: res.statusCode, code: body.error?.code ?? null, afterKill: afterKill && killed });
        // A refusal while no master is known comes back at once: do not spin on it.
        if (res.statusCode >= 400) await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    const writers = Array.from({ length: writersCount }, (_, w) => writer(w));
    await waitFor('writes through the replica to be acknowledged', async () => (outcomes.filter((o) => o.status === 201).length >= 50 ? true : undefined), 30_000);
    killed = true;
    await cluster.kill(master);
    await waitFor('a write through the replica sent after the kill to be acknowledged', async () => (outcomes.some((o) => o.afterKill && o.status === 201) ? true : undefined), 60_000);
    stopping = true;
    await Promise.all(writers);

    const { master: newMaster } = await cluster.caughtUp();
    const unexpected = outcomes.filter((o) => o.status !== 201 && o.code !== 'WRITE_OUTCOME_UNKNOWN' && !notAppliedCodes.has(o.code ?? ''));
    assert.deepEqual(unexpected, [], 'no other answer');
    for (const outcome of outcomes) {
      if (outcome.code === 'WRITE_OUTCOME_UNKNOWN') continue;
      // A read may be refused for a moment (a master just elected confirms its reads; a cold credential cache):
      // only its answer about the node counts.
      const read = await waitFor(
        `a read of ${outcome.path}`,
        async () => {
          const answer = await cluster.get(newMaster, `/api/v1/content${outcome.path}`);
          return answer.status === 200 || answer.status === 404 ? answer.status : undefined;
        },
        15_000,
      );
      assert.equal(read, outcome.status === 201 ? 200 : 404, `${outcome.path}: answered ${outcome.status} ${outcome.code ?? ''}, read ${read}`);
    }
    const counts = new Map<string, number>();
    for (const o of outcomes) counts.set(o.code ?? String(o.status), (counts.get(o.code ?? String(o.status)) ?? 0) + 1);
    console.log(`answers through the replica: ${[...counts].map(([k, n]) => `${k} ${n}`).join(', ')}`);
  });
});
