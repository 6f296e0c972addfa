import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { json, openTestNode } from '../helpers/app.js';
import { tempDir, WaitAborted, waitFor } from '../helpers/tmp.js';

// A real full disk: a small tmpfs this test mounts itself. Mounting needs root (CI runs as root); elsewhere the
// test says why it cannot run.
const isRoot = process.getuid?.() === 0;

test('a full disk refuses writes with DISK_FULL, keeps every acknowledged write, and recovers when space returns', { skip: isRoot ? false : 'mounting a tmpfs needs root' }, async () => {
  const mountPoint = tempDir('conclave-diskfull-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mountPoint.dir]);
  try {
    const dataDir = join(mountPoint.dir, 'data');
    mkdirSync(dataDir, { mode: 0o700 }); // a node refuses a data directory other users may enter
    // Leave a little room: the repository itself needs a few hundred KB.
    const filler = join(mountPoint.dir, 'filler');
    writeFileSync(filler, Buffer.alloc(4 * 1024 * 1024));
    const t = await openTestNode({}, dataDir);
    try {
      const text = 'x'.repeat(16 * 1024);
      const acknowledged: string[] = [];
      // A write whose entry was stored durably when the Ready that applies it met the full disk: its client hears
      // WRITE_OUTCOME_UNKNOWN with the index (the WAL's checkpoints grow the database file beside the journal, so
      // which of the two Readys meets the full disk first varies); it must be applied once space returns.
      const storedUnapplied: string[] = [];
      let refusal: { statusCode: number; body: string; json(): { error: { code: string } } } | undefined;
      for (let i = 0; i < 500 && refusal === undefined; i++) {
        const r = await t.request({ method: 'PUT', url: `/api/v1/content/doc${i}`, ...json({ properties: { i, text } }) });
        if (r.statusCode === 201) acknowledged.push(`doc${i}`);
        else if (r.statusCode === 504 && r.json().error.code === 'WRITE_OUTCOME_UNKNOWN' && storedUnapplied.length === 0) storedUnapplied.push(`doc${i}`);
        else refusal = r;
      }
      assert.ok(refusal !== undefined, 'the disk filled up');
      assert.equal(refusal.statusCode, 507, refusal.body);
      assert.equal(refusal.json().error.code, 'DISK_FULL');
      assert.ok(acknowledged.length > 0);

      const digest = t.node.repository.content.digest();
      const again = await t.request({ method: 'PUT', url: '/api/v1/content/again', ...json({ properties: { text } }) });
      assert.equal(again.statusCode, 507);
      assert.equal(t.node.repository.content.digest(), digest, 'a refused write changes nothing');
      for (const name of acknowledged) {
        const r = await t.request({ method: 'GET', url: `/api/v1/content/${name}` });
        assert.equal(r.statusCode, 200, `${name} survives the full disk`);
      }

      rmSync(filler);
      // The node finds the disk writable again at its next coordination tick (a retry of the journal write).
      const after = await waitFor('a write to succeed once space is freed, without a restart', async () => {
        const r = await t.request({ method: 'PUT', url: '/api/v1/content/after', ...json({ properties: { text } }) });
        // 503 while the node, its disk writable again, elects itself anew (it does not campaign on a failing disk).
        if (r.statusCode !== 201 && r.statusCode !== 507 && r.statusCode !== 503) throw new WaitAborted(`unexpected ${r.statusCode}: ${r.body}`);
        return r.statusCode === 201 ? r : undefined;
      });
      assert.equal(after.statusCode, 201);
      await t.close();
      const reopened = await openTestNode({}, dataDir);
      try {
        for (const name of [...acknowledged, ...storedUnapplied, 'after']) {
          assert.equal((await reopened.request({ method: 'GET', url: `/api/v1/content/${name}` })).statusCode, 200);
        }
      } finally {
        await reopened.close();
      }
    } catch (err) {
      await t.close().catch(() => undefined);
      throw err;
    }
  } finally {
    execFileSync('umount', ['-l', mountPoint.dir]);
    mountPoint.cleanup();
  }
});
