// Lint rules that hold the project's architecture, not only its style.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-*/**', 'node_modules/**', 'data/**', 'bench-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // Layering: http → forwarding → node, and node-to-node authentication (src/auth) below all three. A folder that
  // imports one above it is refused, each with the rule it breaks. (Each block names different files: a later block
  // for the same file would replace a rule's options, not add to them.)
  {
    files: ['src/node/**/*.ts'],
    // The composition root wires every layer together, and is the one file of src/node allowed to.
    ignores: ['src/node/conclaveNode.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['**/forwarding/**', '**/forwarding'], message: 'src/node is below src/forwarding (http → forwarding → node): only the composition root, src/node/conclaveNode.ts, imports it. Take what you need as an injected function or an interface declared in src/node.' },
          { group: ['**/http/**', '**/http'], message: 'src/node is below src/http (http → forwarding → node): only the composition root, src/node/conclaveNode.ts, imports it.' },
        ],
      }],
    },
  },
  {
    files: ['src/forwarding/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['**/http/**', '**/http'], message: 'src/forwarding is below src/http (http → forwarding → node): src/http imports forwarding, never the reverse. Shared helpers live below both (src/auth).' }],
      }],
    },
  },
  {
    files: ['src/replication/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['**/http/**', '**/http'], message: 'src/replication never imports src/http: node-to-node authentication and header helpers live in src/auth.' }],
      }],
    },
  },
  {
    // The deciding code must be replayable from a seed: no I/O, no clock, no ambient randomness. The simulator is
    // held to the same rule, except its drivers (CLI, worker batches) and test files.
    files: ['src/core/**/*.ts', 'src/content/**/*.ts', 'test/sim/**/*.ts'],
    ignores: ['test/sim/cli.ts', 'test/sim/batch.ts', 'test/sim/testSeed.ts', 'test/sim/**/*.test.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['node:*'], message: 'Pure code (src/core, src/content, the simulator) imports no node:* module.' }],
      }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Pure code takes time as an input.' },
        { object: 'Math', property: 'random', message: 'Pure code uses an injected seeded generator.' },
        { object: 'performance', property: 'now', message: 'Pure code takes time as an input.' },
      ],
      'no-restricted-globals': ['error',
        { name: 'setTimeout', message: 'Pure code has no timers.' },
        { name: 'setInterval', message: 'Pure code has no timers.' },
        { name: 'setImmediate', message: 'Pure code has no timers.' },
        { name: 'process', message: 'Pure code has no process access.' },
      ],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Pure code takes time as an input.' },
      ],
    },
  },
);
