import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { transcriptDirectory as directory } from '../helpers/transcripts.js';
import { runTranscript } from './transcript.js';

/**
 * Runs every test/transcripts/*.txt (see transcript.ts for the language) and compares its output with the file.
 * CONCLAVE_REWRITE=1 writes the actual output back instead: review the diff, then commit it.
 */
const rewrite = process.env['CONCLAVE_REWRITE'] === '1';

for (const file of readdirSync(directory).filter((f) => f.endsWith('.txt')).sort()) {
  test(`transcript ${file}`, () => {
    const path = join(directory, file);
    const expected = readFileSync(path, 'utf8');
    const actual = runTranscript(expected);
    if (rewrite) writeFileSync(path, actual);
    else assert.equal(actual, expected, `${file} differs (CONCLAVE_REWRITE=1 npm test rewrites it; review the diff)`);
  });
}
