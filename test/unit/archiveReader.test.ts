import fc from 'fast-check';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { test } from 'node:test';

import { discardSink, readArchive, readManifest, type PartSink } from '../../src/backup/archiveReader.js';
import { archiveStream } from '../../src/backup/archiveWriter.js';
import { backupFormatName, backupFormatVersion, parseManifest, type BackupManifest } from '../../src/backup/manifest.js';
import { encodeTarHeader, tarPadding } from '../../src/backup/tarFormat.js';
import { isConclaveError } from '../../src/errors/catalogue.js';

async function* once(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const allowed = new Set(['BACKUP_CORRUPT', 'BACKUP_TRUNCATED', 'BACKUP_FORMAT_NEWER']);

/** A manifest of this format for these parts (state.db first, then blobs named by their hash). */
function manifestOf(state: Buffer, blobs: readonly Buffer[]): BackupManifest {
  const blobParts = [...new Map(blobs.map((b) => [sha(b), b])).values()].map((b) => ({ name: `blobs/${sha(b)}`, bytes: b.length, sha256: sha(b) }));
  return {
    format: backupFormatName,
    formatVersion: backupFormatVersion,
    id: randomUUID(),
    createdAt: '2025-01-02T03:04:05.678Z',
    conclaveVersion: '0.1.0',
    dataFormatVersion: 2,
    cluster: { name: 'c', uuid: 'u-1' },
    source: { nodeId: 'n-1', nodeName: 'n1' },
    index: 42,
    term: 3,
    configuration: { current: ['n-1'] },
    clusterState: {
      version: 3,
      clusterName: 'c',
      clusterUuid: 'u-1',
      nodes: [],
      votingConfiguration: { current: ['n-1'] },
      votingExclusions: [],
      settings: {},
      inSync: ['n-1'],
    },
    contentDigest: { version: 'v1', digest: sha(Buffer.from('x')), counts: { nodes: 1, users: 1, binaryReferences: 0, blobs: 0, versions: 0, schemaLines: 0 } },
    base: null,
    blobsReferenced: blobParts.map((p) => p.sha256).sort(),
    parts: [{ name: 'state.db', bytes: state.length, sha256: sha(state) }, ...blobParts],
  } as unknown as BackupManifest;
}

async function archiveOf(state: Buffer, blobs: readonly Buffer[]): Promise<{ bytes: Buffer; manifest: BackupManifest; parts: Map<string, Buffer> }> {
  const manifest = manifestOf(state, blobs);
  const parts = new Map<string, Buffer>([['state.db', state], ...blobs.map((b) => [`blobs/${sha(b)}`, b] as [string, Buffer])]);
  const sources = manifest.parts.map((p) => ({ ...p, open: () => once(parts.get(p.name)!) }));
  return { bytes: await buffer(archiveStream(manifest, sources)), manifest, parts };
}

/** Feeds `bytes` in chunks of the given sizes (cycled); collects each part only once the reader finished it. */
async function read(bytes: Buffer, chunkSizes: readonly number[] = [65536]): Promise<{ manifest: BackupManifest; parts: Map<string, Buffer> }> {
  const parts = new Map<string, Buffer>();
  async function* chunks() {
    for (let offset = 0, i = 0; offset < bytes.length; i++) {
      const size = Math.max(1, chunkSizes[i % chunkSizes.length]!);
      yield bytes.subarray(offset, offset + size);
      offset += size;
    }
  }
  const { manifest } = await readArchive(chunks(), {
    sinkFor: (part): PartSink => {
      const got: Buffer[] = [];
      return {
        write: (c) => void got.push(Buffer.from(c)),
        finish: () => void parts.set(part.name, Buffer.concat(got)),
        abort: () => undefined,
      };
    },
  });
  return { manifest, parts };
}

/** Reading either fails with one of the backup codes, or yields exactly the original parts. */
async function readsRightOrRefuses(bytes: Buffer, original: Map<string, Buffer>, chunkSizes?: readonly number[]): Promise<string> {
  try {
    const { parts } = await read(bytes, chunkSizes);
    assert.deepEqual([...parts.keys()].sort(), [...original.keys()].sort());
    for (const [name, data] of parts) assert.ok(data.equals(original.get(name)!), `part ${name} differs`);
    return 'ok';
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.ok(isConclaveError(err) && allowed.has(err.code), `unexpected failure: ${String(err)}`);
    return err.code;
  }
}

const blobArb = fc.uint8Array({ minLength: 0, maxLength: 1500 }).map((a) => Buffer.from(a));
const archiveArb = fc.tuple(blobArb, fc.array(blobArb, { maxLength: 4 }));

test('an archive reads back part for part, whatever the chunking', async () => {
  await fc.assert(
    fc.asyncProperty(archiveArb, fc.array(fc.integer({ min: 1, max: 1100 }), { minLength: 1, maxLength: 5 }), async ([state, blobs], chunking) => {
      const { bytes, manifest, parts } = await archiveOf(state, blobs);
      const got = await read(bytes, chunking);
      assert.deepEqual(got.manifest, manifest);
      assert.equal(got.parts.size, parts.size);
      for (const [name, data] of parts) assert.ok(got.parts.get(name)!.equals(data));
    }),
    { numRuns: 60 },
  );
});

test('arbitrary bytes are refused with a backup code, never another exception', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), async (raw) => {
      await assert.rejects(read(Buffer.from(raw), [700]), (err: unknown) => isConclaveError(err) && allowed.has(err.code));
    }),
    { numRuns: 300 },
  );
  // A valid header then garbage, and a header-like block of zeros first.
  await assert.rejects(read(Buffer.alloc(2048)), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CORRUPT');
  await assert.rejects(read(Buffer.alloc(0)), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_TRUNCATED');
});

test('a byte flipped anywhere is refused, or (outside the parts) changes nothing a restore reads', async () => {
  const outcomes = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(archiveArb, fc.nat(), fc.integer({ min: 1, max: 255 }), async ([state, blobs], at, xor) => {
      const { bytes, parts } = await archiveOf(state, blobs);
      const mutated = Buffer.from(bytes);
      const position = at % mutated.length;
      mutated[position] = mutated[position]! ^ xor;
      const outcome = await readsRightOrRefuses(mutated, parts, [513]);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }),
    { numRuns: 400 },
  );
  assert.ok((outcomes.get('BACKUP_CORRUPT') ?? 0) > 0, JSON.stringify([...outcomes]));
});

test('every flipped byte of a part, its header, its padding or the end blocks is refused', async () => {
  const state = Buffer.from('state bytes '.repeat(50));
  const { bytes, parts, manifest } = await archiveOf(state, [Buffer.from('blob one'), Buffer.alloc(600, 7)]);
  const manifestEnd = 512 + Math.ceil(Buffer.byteLength(`${JSON.stringify(manifest, null, 1)}\n`) / 512) * 512;
  for (let position = manifestEnd; position < bytes.length; position++) {
    const mutated = Buffer.from(bytes);
    mutated[position] = mutated[position]! ^ 0x01;
    const outcome = await readsRightOrRefuses(mutated, parts, [4096]);
    assert.notEqual(outcome, 'ok', `a flip at ${position} went unnoticed`);
  }
});

test('an archive cut at any length is BACKUP_TRUNCATED', async () => {
  const { bytes } = await archiveOf(Buffer.from('s'.repeat(700)), [Buffer.from('a'), Buffer.alloc(1024, 1), Buffer.alloc(0)]);
  for (let length = 0; length < bytes.length; length++) {
    await assert.rejects(
      read(bytes.subarray(0, length), [333]),
      (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_TRUNCATED',
      `cut at ${length} of ${bytes.length}`,
    );
  }
});

test('extra entries, data after the end and record padding', async () => {
  const { bytes, parts } = await archiveOf(Buffer.from('state'), [Buffer.from('blob')]);
  const end = bytes.subarray(bytes.length - 1024);
  const body = bytes.subarray(0, bytes.length - 1024);
  const extra = Buffer.concat([encodeTarHeader({ name: 'blobs/extra', size: 3, mtimeSeconds: 0 }), Buffer.from('abc'), tarPadding(3)]);
  for (const mutated of [Buffer.concat([body, extra, end]), Buffer.concat([bytes, extra, end]), Buffer.concat([bytes, Buffer.from([1])])]) {
    await assert.rejects(read(mutated), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CORRUPT');
  }
  // Zeros up to a whole tar record (what `tar` itself writes) are still the end.
  assert.equal(await readsRightOrRefuses(Buffer.concat([bytes, Buffer.alloc(8192)]), parts), 'ok');
  // Parts out of order: the second blob where the first is listed.
  const two = await archiveOf(Buffer.from('state'), [Buffer.from('one'), Buffer.from('two')]);
  const [, b1, b2] = two.manifest.parts;
  const swapped = { ...two.manifest, parts: [two.manifest.parts[0]!, b2!, b1!] };
  const sources = two.manifest.parts.map((p) => ({ ...p, open: () => once(two.parts.get(p.name)!) }));
  const misordered = await buffer(archiveStream(two.manifest, sources));
  // Same bytes with the manifest listing the other order: re-encode the first entry by hand.
  const manifestBytes = Buffer.from(`${JSON.stringify(swapped, null, 1)}\n`);
  const head = Buffer.concat([encodeTarHeader({ name: 'manifest.json', size: manifestBytes.length, mtimeSeconds: 0 }), manifestBytes, tarPadding(manifestBytes.length)]);
  const oldHead = 512 + Math.ceil(Buffer.byteLength(`${JSON.stringify(two.manifest, null, 1)}\n`) / 512) * 512;
  await assert.rejects(read(Buffer.concat([head, misordered.subarray(oldHead)])), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CORRUPT');
});

test('a manifest entry larger than the limit is refused before it is read', async () => {
  let pulled = 0;
  async function* source() {
    yield encodeTarHeader({ name: 'manifest.json', size: 10_000_000, mtimeSeconds: 0 });
    for (;;) {
      pulled++;
      yield Buffer.alloc(65536, 0x20);
    }
  }
  await assert.rejects(
    readArchive(source(), { sinkFor: () => discardSink, manifestBytesMax: 1_000_000 }),
    (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_CORRUPT' && /manifest/.test(err.message),
  );
  assert.equal(pulled, 0);
});

test('the reader pulls a chunk only once the sink took the previous one', async () => {
  const { bytes } = await archiveOf(Buffer.alloc(200_000, 3), []);
  let produced = 0;
  let written = 0;
  let aheadMax = 0;
  async function* source() {
    for (let offset = 0; offset < bytes.length; offset += 4096) {
      produced++;
      aheadMax = Math.max(aheadMax, produced - written);
      yield bytes.subarray(offset, offset + 4096);
    }
  }
  await readArchive(source(), {
    sinkFor: () => ({
      write: async () => {
        await new Promise((r) => setImmediate(r));
        written++;
      },
      finish: () => undefined,
      abort: () => undefined,
    }),
  });
  // Chunks holding only headers are not written to a sink: at most those run ahead.
  assert.ok(aheadMax <= 3, `the source ran ${aheadMax} chunks ahead`);
});

test('readManifest reads the first entry only', async () => {
  const { bytes, manifest } = await archiveOf(Buffer.from('s'), [Buffer.from('b')]);
  assert.deepEqual(await readManifest(once(bytes.subarray(0, 2048))), manifest);
});

test('manifest fuzzing: parseManifest accepts or refuses with a backup code', async () => {
  const valid = manifestOf(Buffer.from('s'), [Buffer.from('b')]);
  const text = JSON.stringify(valid);
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), fc.record({ format: fc.constant(backupFormatName), formatVersion: fc.integer() }, { requiredKeys: [] })), (value) => {
      refusedOrParsed(Buffer.from(JSON.stringify(value) ?? 'null'));
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.nat(), fc.integer({ min: 1, max: 255 }), (at, xor) => {
      const bytes = Buffer.from(text);
      bytes[at % bytes.length] = bytes[at % bytes.length]! ^ xor;
      refusedOrParsed(bytes);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.string(), fc.jsonValue(), (key, value) => {
      const object = JSON.parse(text) as Record<string, unknown>;
      const keys = Object.keys(object);
      object[keys[key.length % keys.length]!] = value;
      refusedOrParsed(Buffer.from(JSON.stringify(object)));
    }),
    { numRuns: 1000 },
  );
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify({ ...valid, formatVersion: backupFormatVersion + 1 }))), (err: unknown) => isConclaveError(err) && err.code === 'BACKUP_FORMAT_NEWER');
});

function refusedOrParsed(bytes: Buffer): void {
  try {
    parseManifest(bytes);
  } catch (err) {
    assert.ok(isConclaveError(err) && (err.code === 'BACKUP_CORRUPT' || err.code === 'BACKUP_FORMAT_NEWER'), `unexpected: ${String(err)}`);
  }
}
