import { setFlagsFromString } from 'node:v8';

/**
 * Switches on V8's linear-time regular expression engine (the `l` flag) for this process, before any schema pattern
 * is compiled (src/content/schema.ts compilePattern): a pattern of a schema runs over values clients send, on the
 * node that receives them and in apply() on every node, so it must never backtrack. V8 reads the flag when a
 * pattern is compiled, so setting it at start-up is enough; a process that did not import this module fails loudly
 * at its first pattern instead of running one that could backtrack.
 */
setFlagsFromString('--enable-experimental-regexp-engine');
