// Links this package's own CLI into node_modules/.bin, so that `npx conclave` in a checkout runs it at once.
// Without the link, npx treats the checkout as a package to install into its cache (and rebuilds it) on every call.
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binDir = join(root, 'node_modules', '.bin');
const link = join(binDir, 'conclave');
mkdirSync(binDir, { recursive: true });
rmSync(link, { force: true });
symlinkSync(relative(binDir, join(root, 'bin', 'conclave.js')), link);
