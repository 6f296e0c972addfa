import assert from 'node:assert/strict';
import { test } from 'node:test';

import { compare, type DigestAnswer } from '../../src/cli/digestCommand.js';
import { httpUrlOf } from '../../src/cli/statusCommand.js';

const answer = (node: string, appliedIndex: number, digest: string): { name: string; answer: DigestAnswer } => ({
  name: node,
  answer: { node, nodeId: node, appliedIndex, digest, counts: { nodes: 1, users: 1, binaryReferences: 0, blobs: 0, versions: 0 }, blobsMissing: 0 },
});

test('conclave digest --all: agreement, disagreement at one index, and what cannot be compared', () => {
  assert.deepEqual(compare([answer('a', 7, 'x'), answer('b', 7, 'x'), answer('c', 7, 'x')]), { code: 0, text: 'All 3 members agree at applied index 7.' });

  const split = compare([answer('a', 7, 'x'), answer('b', 7, 'y'), answer('c', 7, 'x')]);
  assert.equal(split.code, 1);
  assert.match(split.text, /DISAGREE[\s\S]*at applied index 7: a, c \| b/);

  // A disagreement is reported even when another member is behind or did not answer.
  assert.equal(compare([answer('a', 7, 'x'), answer('b', 7, 'y'), answer('c', 5, 'z'), { name: 'd', failure: 'refused' }]).code, 1);

  const apart = compare([answer('a', 7, 'x'), answer('b', 8, 'y')]);
  assert.equal(apart.code, 2, 'different indexes cannot be compared');
  assert.match(apart.text, /different applied indexes \(7, 8\)/);

  const down = compare([answer('a', 7, 'x'), { name: 'b', failure: 'cannot connect' }]);
  assert.equal(down.code, 2);
  assert.match(down.text, /b \(cannot connect\)/);
});

test('conclave status and digest --all dial members with the scheme of the URL they were given', () => {
  const member = { httpAddress: '10.0.0.5:7400', transportAddress: '10.0.0.5:7500' } as Parameters<typeof httpUrlOf>[0];
  assert.equal(httpUrlOf(member, 'https://10.0.0.4:7400'), 'https://10.0.0.5:7400');
  assert.equal(httpUrlOf(member, 'http://10.0.0.4:7400'), 'http://10.0.0.5:7400');
  const wildcard = { httpAddress: '0.0.0.0:7400', transportAddress: '10.0.0.5:7500' } as Parameters<typeof httpUrlOf>[0];
  assert.equal(httpUrlOf(wildcard, 'https://10.0.0.4:7400'), 'https://10.0.0.5:7400');
});
