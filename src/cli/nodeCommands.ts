import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';

import { isConclaveError } from '../errors/catalogue.js';
import { recordAdminPasswordReset } from '../node/adminPassword.js';
import { detachCluster, inspectNode, unsafeBootstrap, type NodeOnDisk } from '../node/recovery.js';

/**
 * `conclave node unsafe-bootstrap` and `conclave node detach-cluster`: recovery of a STOPPED node when its
 * cluster cannot recover by itself. Each prints what the node holds, says what will be lost, and asks (or takes
 * --yes). Exit codes: 0 done, 1 refused or failed, 2 bad usage.
 */
function describe(node: NodeOnDisk): string {
  const state = node.clusterState;
  return [
    `  node id:               ${node.nodeId}`,
    `  cluster:               ${state.clusterName ?? '(not formed)'} ${state.clusterUuid ?? ''}`,
    `  term:                  ${node.term}`,
    `  cluster-state version: ${state.version}`,
    `  journal:               ${node.lastIndex} entries, ${node.commitIndex} known committed, ${node.appliedIndex} applied`,
    `  voting configuration:  ${state.votingConfiguration.current.join(', ') || '-'}`,
    `  members:               ${state.nodes.map((n) => n.name).join(', ') || '-'}`,
  ].join('\n');
}

async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (!process.stdin.isTTY) {
    process.stderr.write('conclave: not a terminal, so nobody can confirm; pass --yes to proceed.\n');
    return false;
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question(`${question} Type "yes" to proceed: `);
    return answer.trim() === 'yes';
  } finally {
    rl.close();
  }
}

function fail(err: unknown): never {
  const code = isConclaveError(err) ? err.code : ((err as NodeJS.ErrnoException).code ?? 'FAILED');
  process.stderr.write(`conclave: ${(err as Error).message} (${code})\n`);
  process.exit(1);
}

interface RecoveryCommand {
  readonly name: string;
  readonly description: string;
  readonly warning: string;
  readonly question: string;
  /** Does the work on the stopped node's directory; returns what to print when done. */
  readonly act: (dataDir: string) => string;
}

const recoveryCommands: readonly RecoveryCommand[] = [
  {
    name: 'unsafe-bootstrap',
    description: 'Make this stopped node a cluster of one, under a new cluster UUID, when a quorum of voters is lost for good.',
    warning:
      'WARNING: data loss. The node will commit everything in its journal, including writes the old cluster\n' +
      'never acknowledged, and it lacks whatever the old cluster committed without it. The other members of the\n' +
      'old cluster will be refused (another cluster UUID) until you run `conclave node detach-cluster` on them.\n' +
      'Prefer starting the lost nodes again if at all possible.',
    question: 'Bootstrap this node alone?',
    act: (dataDir) => {
      const { clusterUuid, term } = unsafeBootstrap(dataDir);
      return `Done: new cluster UUID ${clusterUuid}, term ${term}. Start the node; it elects itself.`;
    },
  },
  {
    name: 'detach-cluster',
    description: 'Make this stopped node forget its cluster (journal and content), so that it can join another.',
    warning:
      'WARNING: data loss on this node. Its journal and its content are erased (its id, secret and blobs stay);\n' +
      'it gets the content again from the cluster it joins next. Anything only this node held is gone.',
    question: 'Detach this node from its cluster?',
    act: (dataDir) => {
      detachCluster(dataDir);
      return 'Done: the node is detached. Start it with --seed pointing at the cluster it should join.';
    },
  },
];

export function registerNodeCommands(program: Command): void {
  const node = program.command('node').description('Recovery of a stopped node (unsafe-bootstrap and detach-cluster lose data; read what they print).');
  for (const recovery of recoveryCommands) {
    node
      .command(recovery.name)
      .description(recovery.description)
      .requiredOption('-d, --data <dir>', 'the data directory of the stopped node')
      .option('-y, --yes', 'do not ask for confirmation')
      .action(async (options: { data: string; yes?: boolean }) => {
        try {
          process.stdout.write(`This node holds:\n${describe(inspectNode(options.data))}\n\n${recovery.warning}\n\n`);
          if (!(await confirm(recovery.question, options.yes === true))) process.exit(1);
          process.stdout.write(`${recovery.act(options.data)}\n`);
        } catch (err) {
          fail(err);
        }
      });
  }
  node
    .command('reset-admin-password')
    .description(
      'Give the user admin a new password (and the admin role) from this stopped node: it is proposed through the journal, so it ' +
        'reaches every node, when this node next starts and finds a master. The password comes from CONCLAVE_ADMIN_PASSWORD, or is generated and printed once.',
    )
    .requiredOption('-d, --data <dir>', 'the data directory of the stopped node')
    .action(async (options: { data: string }) => {
      try {
        const given = process.env['CONCLAVE_ADMIN_PASSWORD'];
        const { generated } = await recordAdminPasswordReset(options.data, given === '' ? undefined : given);
        process.stdout.write(
          (generated === undefined
            ? 'Recorded the password from CONCLAVE_ADMIN_PASSWORD for the user admin.\n'
            : `Recorded a new password for the user admin:\n\n    password: ${generated}\n\nIt is shown only now; it is stored hashed.\n`) +
            'Start the node: once it has a master it proposes the change, which reaches every node through the journal\n' +
            '(the admin\'s tokens stop working then). Until then the old password still works.\n',
        );
      } catch (err) {
        fail(err);
      }
    });
}
