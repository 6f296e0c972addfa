import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Issue 16: one Ready loop in the codebase. The runtime (src/node/clusterRuntime.ts) and the simulator
// (test/sim/simNode.ts) run the same parts; a second loop — code that takes a Ready and advances a coordinator or a
// core after carrying it out — would be code the seeds never reach.

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Where a Ready may be advanced past: the loop itself, the coordinator over its core, and unit tests of one core. */
const advancing = new Set(['src/node/readyLoop.ts', 'src/core/clusterCoordinator.ts', 'test/unit/coreEcho.test.ts', 'test/unit/oneReadyLoop.test.ts']);

test('only the Ready loop takes Readys and advances past them', () => {
  const offenders = [...sources('src'), ...sources('test'), ...sources('bench')]
    .filter((path) => {
      const text = readFileSync(join(root, path), 'utf8');
      return /\.ready\(\)/.test(text) && /\.advance\(/.test(text);
    })
    .filter((path) => !advancing.has(path));
  assert.deepEqual(offenders, []);
});

test('the simulator runs the runtime parts: the Ready loop, the write path, read batching, compaction', () => {
  const simNode = readFileSync(join(root, 'test/sim/simNode.ts'), 'utf8');
  for (const part of ['readyLoop', 'writeTracker', 'writeQueue', 'readIndexBatcher', 'compaction']) {
    assert.match(simNode, new RegExp(`from '\\.\\./\\.\\./src/node/${part}\\.js'`), `test/sim/simNode.ts does not import src/node/${part}.ts`);
  }
  const runtime = readFileSync(join(root, 'src/node/clusterRuntime.ts'), 'utf8');
  for (const part of ['readyLoop', 'writeTracker', 'writeQueue', 'readIndexBatcher', 'compaction']) {
    assert.match(runtime, new RegExp(`from '\\./${part}\\.js'`), `src/node/clusterRuntime.ts does not import ${part}.ts`);
  }
});
