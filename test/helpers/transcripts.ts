import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the transcripts (test/sim/transcript.ts) live: in the source tree, since the tests run from dist/. */
export const transcriptDirectory = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..', 'test', 'transcripts');
