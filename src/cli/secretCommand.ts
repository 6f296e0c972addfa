import { Command } from 'commander';

import { generateClusterSecret } from '../config/clusterSecret.js';

/**
 * `conclave secret generate`: prints a cluster secret of 256 random bits, to put in CONCLAVE_CLUSTER_SECRET or a
 * file named by cluster.secretFile.
 */
export function secretCommand(): Command {
  const command = new Command('secret').description('Cluster secrets.');
  command
    .command('generate')
    .description('Print a new cluster secret (256 random bits, base64url) on standard output.')
    .action(() => {
      process.stdout.write(`${generateClusterSecret()}\n`);
    });
  return command;
}
