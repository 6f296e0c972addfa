import '../node/linearRegExp.js';
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';

import { ConfigError, loadConfig } from '../config/load.js';
import { isConclaveError } from '../errors/catalogue.js';
import { ConclaveNode } from '../node/conclaveNode.js';
import { createLogger } from '../node/logger.js';
import { backupCommands } from './backupCommands.js';
import { demoCommand } from './demoCommand.js';
import { digestCommand } from './digestCommand.js';
import { registerNodeCommands } from './nodeCommands.js';
import { secretCommand } from './secretCommand.js';
import { statusCommand } from './statusCommand.js';

// Everything a conclave command creates (databases, blobs, snapshots, logs, secrets) is its user's alone; the data
// directory's own check (storage/database.ts) refuses one that others may enter.
process.umask(0o077);

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

interface StartFlags {
  config?: string;
  data?: string;
  host?: string;
  httpPort?: string;
  name?: string;
  transportPort?: string;
  transportHost?: string;
  transportPublishHost?: string;
  clusterName?: string;
  clusterSecret?: string;
  clusterSecretFile?: string;
  seed?: string[];
  initialMasterNodes?: string;
  bootstrapExpect?: string;
  masterEligible?: string;
  votingOnly?: boolean;
}

const program = new Command()
  .name('conclave')
  .description('Conclave: a self-clustering content repository.')
  .version(pkg.version);

program
  .command('start')
  .description('Start a node. Settings come from flags, then CONCLAVE_* variables, then --config, then defaults.')
  .option('-c, --config <file>', 'YAML configuration file (also CONCLAVE_CONFIG)')
  .option('-d, --data <dir>', 'data directory (default ./data)')
  .option('--host <address>', 'HTTP listen address (default 127.0.0.1)')
  // Values are validated with every other setting in loadConfig, so a bad flag exits 2 like a bad file.
  .option('-p, --http-port <port>', 'HTTP port (default 7400; 0 picks a free port)')
  .option('-n, --name <name>', 'node name (default: the host name)')
  .option('--transport-port <port>', 'cluster transport port (default 7500; 0 picks a free port)')
  .option('--transport-host <address>', 'cluster transport listen address (default: the HTTP address)')
  .option('--transport-publish-host <host>', 'the host or IP other nodes and clients use to reach this node (needed with 0.0.0.0)')
  .option('--cluster-name <name>', 'cluster name (default conclave)')
  .option('--cluster-secret-file <file>', 'file holding the cluster secret (or CONCLAVE_CLUSTER_SECRET; default: generated once)')
  // Removed, and kept only to say so: a secret on a command line shows in `ps` to every user of the machine.
  .addOption(new Option('--cluster-secret <secret>').hideHelp())
  .option('--seed <host:port>', 'where to find the cluster; repeat for several (none: a cluster of one)', (value: string, previous: string[] = []) => [...previous, value])
  .option('--initial-master-nodes <names>', 'first start: the master-eligible node names that form the cluster, comma-separated')
  .option('--bootstrap-expect <n>', 'first start: form once this many master-eligible nodes see each other')
  .option('--master-eligible <bool>', 'whether this node may vote and become master (default true)')
  .option('--voting-only', 'vote but never become master')
  .addHelpText(
    'after',
    '\nThe first start creates the repository and the user "admin" with the password in CONCLAVE_ADMIN_PASSWORD,\n' +
      'or a generated one that is printed once. See docs/configuration.md for every setting.',
  )
  .action(async (options: StartFlags) => {
    if (options.clusterSecret !== undefined) {
      // The value is not repeated: it is already in the shell's history, no need to put it in a log too.
      process.stderr.write(
        'conclave: --cluster-secret is no longer accepted: a command line shows in `ps` to every user of the machine.\n' +
          'Set the secret in the environment (CONCLAVE_CLUSTER_SECRET) or in a file only you can read (--cluster-secret-file);\n' +
          '`conclave secret generate` prints a new one.\n',
      );
      process.exit(2);
    }
    let config;
    try {
      config = loadConfig({
        file: options.config ?? process.env['CONCLAVE_CONFIG'],
        env: process.env,
        flags: {
          'data.dir': options.data,
          'http.host': options.host,
          'http.port': options.httpPort,
          'node.name': options.name,
          'transport.port': options.transportPort,
          'transport.host': options.transportHost,
          'transport.publishHost': options.transportPublishHost,
          'cluster.name': options.clusterName,
          'cluster.secretFile': options.clusterSecretFile,
          'cluster.seeds': options.seed,
          'cluster.initialMasterNodes': options.initialMasterNodes,
          'cluster.bootstrapExpect': options.bootstrapExpect,
          'node.masterEligible': options.masterEligible,
          'node.votingOnly': options.votingOnly,
        },
        flagNames: {
          'data.dir': '--data',
          'http.host': '--host',
          'http.port': '--http-port',
          'node.name': '--name',
          'transport.port': '--transport-port',
          'transport.host': '--transport-host',
          'transport.publishHost': '--transport-publish-host',
          'cluster.name': '--cluster-name',
          'cluster.secretFile': '--cluster-secret-file',
          'cluster.seeds': '--seed',
          'cluster.initialMasterNodes': '--initial-master-nodes',
          'cluster.bootstrapExpect': '--bootstrap-expect',
          'node.masterEligible': '--master-eligible',
          'node.votingOnly': '--voting-only',
        },
      });
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`conclave: the configuration is invalid (${err.code}):\n${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const log = createLogger(config.log, config.node.name);
    let node: ConclaveNode;
    try {
      node = await ConclaveNode.open(config, log, { adminPassword: process.env['CONCLAVE_ADMIN_PASSWORD'] });
      await node.listen();
    } catch (err) {
      const code = isConclaveError(err) ? err.code : ((err as NodeJS.ErrnoException).code ?? 'START_FAILED');
      log.fatal({ err, code }, `cannot start: ${(err as Error).message}`);
      process.stderr.write(`conclave: cannot start (${code}): ${(err as Error).message}\n`);
      log.flush();
      process.exit(1);
    }
    let signals = 0;
    if (config.cluster.joinTimeoutMs > 0) {
      node.awaitCluster(config.cluster.joinTimeoutMs).catch((err: unknown) => {
        const code = isConclaveError(err) ? err.code : 'CLUSTER_JOIN_TIMEOUT';
        log.fatal({ err, code }, (err as Error).message);
        process.stderr.write(`conclave: ${(err as Error).message}\n`);
        void node.stop().finally(() => process.exit(3));
      });
    }
    const shutdown = (signal: string) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, 'second signal: exiting at once');
        process.exit(130);
      }
      log.info({ signal }, 'shutting down');
      node.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          log.fatal({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
  });

program.addCommand(secretCommand());
program.addCommand(statusCommand());
program.addCommand(digestCommand());
program.addCommand(demoCommand());
registerNodeCommands(program);
backupCommands(program);

await program.parseAsync(process.argv);
