import { execFileSync } from 'node:child_process';

/**
 * A private network for the chaos harness: every node runs in a Linux network namespace of its own, with one
 * address on a bridge that this run creates, and the harness (in the root namespace, also on the bridge) reaches
 * them all. Faults are real kernel behaviour, not a simulation in our code:
 *
 * - a cut link is a blackhole route in the sending node's namespace: packets vanish silently, as on a broken
 *   network, and the sender learns of it only by timeouts. Cutting A→B alone is a one-way fault at the packet level
 *   (a TCP connection still needs both directions, so A and B lose their connections either way, but B's packets
 *   keep reaching A); a symmetric partition cuts both directions, a bridge partition leaves one node linked to both
 *   sides;
 * - a slow node is a token-bucket (tbf) limit on both ends of its link: its traffic in and out queues behind a
 *   small bandwidth. (This kernel has no netem, so there is no fixed-delay fault; the bandwidth limit delays every
 *   message by its queue.)
 *
 * Why namespaces and not a proxy on every link: nodes learn each other's addresses from the cluster itself
 * (handshakes, the cluster state, HTTP addresses for forwarding and blob copies), so a proxy would have to be
 * announced as the node's address, one proxy per directed pair, and every kind of link (transport, internal HTTP)
 * would need one. Namespaces cut every link a node has, whatever it is, with no code in the path. They need root
 * (CAP_NET_ADMIN), which CI on this project's machines has; `NamespaceNetwork.check()` says so clearly elsewhere.
 */
export interface NetworkHost {
  readonly name: string;
  readonly namespace: string;
  readonly ip: string;
  /** The veth end in the root namespace (on the bridge). */
  readonly rootLink: string;
}

const prefix = 'cvc';

export class NamespaceNetwork {
  readonly hosts = new Map<string, NetworkHost>();
  private readonly cut = new Set<string>();
  private readonly slowed = new Set<string>();
  private destroyed = false;

  private constructor(
    private readonly id: string,
    private readonly subnet: string,
    readonly bridge: string,
  ) {}

  /** Throws with the reason when this process cannot create namespaces (not root, no iproute2). */
  static check(): void {
    if (process.getuid?.() !== 0) throw new Error('the chaos harness needs root: it puts every node in a network namespace of its own (ip netns); run it as root');
    try {
      execFileSync('ip', ['-V'], { stdio: 'ignore' });
    } catch {
      throw new Error('the chaos harness needs iproute2 (the `ip` command): apt-get install iproute2');
    }
  }

  /** A new network with its own bridge and /24; namespaces left behind by chaos runs that died are removed first. */
  static create(): NamespaceNetwork {
    NamespaceNetwork.check();
    removeOrphans();
    const id = `${process.pid}${Math.floor(Math.random() * 10)}`;
    const used = run('ip', ['-4', '-o', 'addr', 'show']);
    let subnet = '';
    for (let attempt = 0; attempt < 100 && subnet === ''; attempt++) {
      const candidate = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 250)}`;
      if (!used.includes(` ${candidate}.`)) subnet = candidate;
    }
    if (subnet === '') throw new Error('no free 10.x.y.0/24 subnet for the chaos network');
    const network = new NamespaceNetwork(id, subnet, `${prefix}${id}b`);
    run('ip', ['link', 'add', network.bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', network.bridge]);
    run('ip', ['link', 'set', network.bridge, 'up']);
    return network;
  }

  /** The harness's own address on the bridge. */
  get rootIp(): string {
    return `${this.subnet}.1`;
  }

  addHost(name: string): NetworkHost {
    const k = this.hosts.size + 2;
    const host: NetworkHost = { name, namespace: `${prefix}${this.id}n${k}`, ip: `${this.subnet}.${k}`, rootLink: `${prefix}${this.id}v${k}` };
    const inner = `${prefix}${this.id}i${k}`;
    run('ip', ['netns', 'add', host.namespace]);
    run('ip', ['link', 'add', host.rootLink, 'type', 'veth', 'peer', 'name', inner]);
    run('ip', ['link', 'set', inner, 'netns', host.namespace]);
    run('ip', ['link', 'set', host.rootLink, 'master', this.bridge]);
    run('ip', ['link', 'set', host.rootLink, 'up']);
    run('ip', ['-n', host.namespace, 'link', 'set', inner, 'name', 'eth0']);
    run('ip', ['-n', host.namespace, 'addr', 'add', `${host.ip}/24`, 'dev', 'eth0']);
    run('ip', ['-n', host.namespace, 'link', 'set', 'eth0', 'up']);
    run('ip', ['-n', host.namespace, 'link', 'set', 'lo', 'up']);
    this.hosts.set(name, host);
    return host;
  }

  host(name: string): NetworkHost {
    const host = this.hosts.get(name);
    if (host === undefined) throw new Error(`no host ${name} on the chaos network`);
    return host;
  }

  /** Packets from `from` to `to` vanish (one direction). */
  cutLink(from: string, to: string): void {
    const key = `${from}>${to}`;
    if (this.cut.has(key)) return;
    run('ip', ['-n', this.host(from).namespace, 'route', 'add', 'blackhole', `${this.host(to).ip}/32`]);
    this.cut.add(key);
  }

  restoreLink(from: string, to: string): void {
    const key = `${from}>${to}`;
    if (!this.cut.has(key)) return;
    run('ip', ['-n', this.host(from).namespace, 'route', 'del', 'blackhole', `${this.host(to).ip}/32`]);
    this.cut.delete(key);
  }

  /** Every link between the two groups cut both ways; links inside each group untouched. */
  partition(sideA: readonly string[], sideB: readonly string[]): void {
    for (const a of sideA) {
      for (const b of sideB) {
        this.cutLink(a, b);
        this.cutLink(b, a);
      }
    }
  }

  /** Limits the node's traffic, both directions, to `rateKbit` kilobits per second. */
  slow(name: string, rateKbit: number): void {
    if (this.slowed.has(name)) return;
    const host = this.host(name);
    const tbf = ['root', 'tbf', 'rate', `${rateKbit}kbit`, 'burst', '16kb', 'latency', '2s'];
    run('ip', ['netns', 'exec', host.namespace, 'tc', 'qdisc', 'add', 'dev', 'eth0', ...tbf]);
    run('tc', ['qdisc', 'add', 'dev', host.rootLink, ...tbf]);
    this.slowed.add(name);
  }

  unslow(name: string): void {
    if (!this.slowed.has(name)) return;
    const host = this.host(name);
    run('ip', ['netns', 'exec', host.namespace, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root']);
    run('tc', ['qdisc', 'del', 'dev', host.rootLink, 'root']);
    this.slowed.delete(name);
  }

  /** Every link restored, every node at full speed. */
  heal(): void {
    for (const key of [...this.cut]) {
      const [from, to] = key.split('>') as [string, string];
      this.restoreLink(from, to);
    }
    for (const name of [...this.slowed]) this.unslow(name);
  }

  /** Links cut now, as "from>to". */
  cutLinks(): string[] {
    return [...this.cut];
  }

  /** The argv prefix that runs a command inside the node's namespace. */
  execPrefix(name: string): string[] {
    return ['ip', 'netns', 'exec', this.host(name).namespace];
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const host of this.hosts.values()) {
      runQuietly('ip', ['netns', 'del', host.namespace]);
      runQuietly('ip', ['link', 'del', host.rootLink]);
    }
    runQuietly('ip', ['link', 'del', this.bridge]);
  }
}

function run(command: string, args: readonly string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || String(err)}`);
  }
}

function runQuietly(command: string, args: readonly string[]): void {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
  } catch {
    // Already gone.
  }
}

/** Namespaces and bridges of chaos runs whose process is gone (killed before it could clean up). */
function removeOrphans(): void {
  const owner = new RegExp(`^${prefix}(\\d+)\\d[bnvi]\\d*$`);
  for (const line of run('ip', ['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const match = owner.exec(name);
    if (match === null || processAlive(Number(match[1]))) continue;
    // The dead run's nodes may still run in there, out of sight: stop them before the namespace goes.
    for (const pid of run('ip', ['netns', 'pids', name]).split('\n').filter((p) => p !== '')) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
    runQuietly('ip', ['netns', 'del', name]);
  }
  for (const line of run('ip', ['-o', 'link', 'show']).split('\n')) {
    const name = (line.split(': ')[1] ?? '').split('@')[0] ?? '';
    const match = owner.exec(name);
    if (match !== null && !processAlive(Number(match[1]))) runQuietly('ip', ['link', 'del', name]);
  }
}

/** Whether a process with this pid exists (the owner of a chaos run's namespaces or mounts). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
