import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { noop } from 'cockatiel';
import { Etcd3, type IStatusResponse } from 'etcd3';

import { freePort } from '../test/helpers/ports.js';
import { sleep } from './nodeProcess.js';

/**
 * A real etcd cluster on loopback for the bench to compare Conclave with: members e1..eN of Debian's etcd-server
 * (3.4), default settings apart from names, ports and data directories, started and stopped by the bench. Clients
 * are the `etcd3` package's, one per member, with no retries and no circuit breaker: the bench counts every failed
 * call, as it does for Conclave's HTTP.
 */

export const etcdPath = '/usr/bin/etcd';
export const etcdctlPath = '/usr/bin/etcdctl';
const startTimeoutMs = 30_000;
const termTimeoutMs = 10_000;
/** etcd logs at info (elections, snapshots); keep the end of it for a failure message. */
const outputTailChars = 64 * 1024;

/**
 * Whether etcd can run here; when it is missing, tries Debian's package (as root only), and otherwise says why the
 * etcd figures will be missing.
 */
export function ensureEtcd(progress: (text: string) => void): { available: true; version: string } | { available: false; reason: string } {
  if (!existsSync(etcdPath)) {
    if (process.getuid?.() !== 0) {
      return { available: false, reason: `${etcdPath} is missing and the bench is not root, so it cannot install it: run \`sudo apt-get install -y etcd-server\`` };
    }
    progress(`${etcdPath} is missing: apt-get install -y etcd-server`);
    try {
      execFileSync('apt-get', ['install', '-y', '-q', 'etcd-server'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
    } catch (err) {
      return { available: false, reason: `${etcdPath} is missing and \`apt-get install -y etcd-server\` failed: ${(err as Error).message.split('\n')[0]}` };
    }
    if (!existsSync(etcdPath)) return { available: false, reason: `\`apt-get install -y etcd-server\` did not install ${etcdPath}` };
  }
  try {
    const version = /etcd Version: (\S+)/.exec(execFileSync(etcdPath, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
    return { available: true, version };
  } catch (err) {
    return { available: false, reason: `${etcdPath} --version failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

/**
 * Whether etcdctl (Debian's etcd-client, for `snapshot save` and `snapshot restore`) can run here; when it is
 * missing, tries Debian's package (as root only), and otherwise says why the figures that need it will be missing.
 */
export function ensureEtcdctl(progress: (text: string) => void): { available: true; version: string } | { available: false; reason: string } {
  if (!existsSync(etcdctlPath)) {
    if (process.getuid?.() !== 0) {
      return { available: false, reason: `${etcdctlPath} is missing and the bench is not root, so it cannot install it: run \`sudo apt-get install -y etcd-client\`` };
    }
    progress(`${etcdctlPath} is missing: apt-get install -y etcd-client`);
    try {
      execFileSync('apt-get', ['install', '-y', '-q', 'etcd-client'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
    } catch (err) {
      return { available: false, reason: `${etcdctlPath} is missing and \`apt-get install -y etcd-client\` failed: ${(err as Error).message.split('\n')[0]}` };
    }
    if (!existsSync(etcdctlPath)) return { available: false, reason: `\`apt-get install -y etcd-client\` did not install ${etcdctlPath}` };
  }
  try {
    const version = /etcdctl version: (\S+)/.exec(execFileSync(etcdctlPath, ['version'], { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '', ETCDCTL_API: '3' } }))?.[1] ?? 'unknown';
    return { available: true, version };
  } catch (err) {
    return { available: false, reason: `${etcdctlPath} version failed: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** A client of one member only, with a deadline on every unary call and no retries. */
export function etcdClient(url: string, callTimeoutMs = 60_000): Etcd3 {
  return new Etcd3({
    hosts: [url],
    dialTimeout: callTimeoutMs,
    faultHandling: { host: () => noop, global: noop },
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
  });
}

interface Member {
  readonly name: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  child: ChildProcess | null;
  exited: Promise<number | string> | null;
  output: string;
}

export class EtcdCluster {
  private readonly members = new Map<string, Member>();
  private readonly initialCluster: string;

  private constructor(
    members: Member[],
    private readonly extraArgs: readonly string[],
  ) {
    for (const member of members) this.members.set(member.name, member);
    this.initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  }

  /**
   * Starts every member and resolves once each answers its status with a leader. `extraArgs` go to every member
   * after the bench's own (a part that needs a limit raised says which and why).
   */
  static async start(size: number, root: string, extraArgs: readonly string[] = []): Promise<EtcdCluster> {
    const members: Member[] = [];
    for (let i = 1; i <= size; i++) {
      members.push({ name: `e${i}`, dataDir: join(root, `e${i}`), clientPort: await freePort(), peerPort: await freePort(), child: null, exited: null, output: '' });
    }
    const cluster = new EtcdCluster(members, extraArgs);
    try {
      for (const member of members) cluster.spawnMember(member);
      await Promise.all(members.map((m) => cluster.waitForLeader(m.name)));
    } catch (err) {
      await cluster.stopAll();
      throw err;
    }
    return cluster;
  }

  get names(): string[] {
    return [...this.members.keys()];
  }

  url(name: string): string {
    return `http://127.0.0.1:${this.member(name).clientPort}`;
  }

  /** The process id of a running member. */
  pid(name: string): number {
    const child = this.member(name).child;
    if (child === null || child.pid === undefined) throw new Error(`${name} is not running`);
    return child.pid;
  }

  isRunning(name: string): boolean {
    return this.member(name).child !== null;
  }

  /** The member's own status (maintenance API), within `timeoutMs`. */
  async status(name: string, timeoutMs = 2_000): Promise<IStatusResponse> {
    const client = etcdClient(this.url(name), timeoutMs);
    try {
      return await client.maintenance.status();
    } finally {
      client.close();
    }
  }

  /** The leader's name, as the running members' status reports agree on it. */
  async leader(timeoutMs = startTimeoutMs): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const byId = new Map<string, string>();
      let leaderId: string | null = null;
      for (const name of this.names.filter((n) => this.isRunning(n))) {
        const status = await this.status(name).catch(() => null);
        if (status === null) continue;
        byId.set(status.header.member_id, name);
        if (status.leader !== '0') leaderId = status.leader;
      }
      const leader = leaderId === null ? undefined : byId.get(leaderId);
      if (leader !== undefined) return leader;
      await sleep(20);
    }
    throw new Error(`no etcd member reported a leader within ${timeoutMs} ms`);
  }

  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT) to a member's process. */
  signal(name: string, signal: NodeJS.Signals): void {
    const child = this.member(name).child;
    if (child === null) throw new Error(`${name} is not running`);
    child.kill(signal);
  }

  /** kill -9 of a member; resolves once it has exited. */
  async kill(name: string): Promise<void> {
    const member = this.member(name);
    if (member.child === null) throw new Error(`${name} is not running`);
    member.child.kill('SIGKILL');
    await member.exited;
    member.child = null;
  }

  /** Graceful stop (SIGTERM, SIGKILL after termTimeoutMs) of a member. */
  async stop(name: string): Promise<number | string> {
    const member = this.member(name);
    if (member.child === null || member.exited === null) throw new Error(`${name} is not running`);
    const child = member.child;
    // A frozen member would never see the SIGTERM.
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([member.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), termTimeoutMs)))]).finally(() => clearTimeout(timer));
    if (exit === undefined) child.kill('SIGKILL');
    const outcome = exit ?? (await member.exited);
    member.child = null;
    return outcome;
  }

  /** Starts a stopped member again on its data directory; resolves once the process is spawned (not yet in sync). */
  restart(name: string): void {
    this.spawnMember(this.member(name));
  }

  /** kill -9 of every running member (a frozen one too): for a cluster whose data is thrown away. */
  async killAll(): Promise<void> {
    await Promise.allSettled(this.names.filter((n) => this.isRunning(n)).map((n) => this.kill(n)));
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled(this.names.filter((n) => this.isRunning(n)).map((n) => this.stop(n)));
  }

  /** The end of what each member logged (etcd logs at info: elections, snapshots, warnings). */
  output(): string {
    return [...this.members.values()].map((m) => `--- ${m.name} ---\n${m.output}`).join('\n');
  }

  private member(name: string): Member {
    const member = this.members.get(name);
    if (member === undefined) throw new Error(`no etcd member ${name}`);
    return member;
  }

  private spawnMember(member: Member): void {
    if (member.child !== null) throw new Error(`${member.name} is running`);
    mkdirSync(member.dataDir, { recursive: true });
    const peerUrl = `http://127.0.0.1:${member.peerPort}`;
    const clientUrl = `http://127.0.0.1:${member.clientPort}`;
    // Names, URLs, the data directory and a part's extraArgs only: every other setting is etcd's default (heartbeat 100 ms, election
    // timeout 1000 ms, snapshot every 100 000 entries, fsync on every commit).
    const child = spawn(
      etcdPath,
      [
        '--name', member.name,
        '--data-dir', member.dataDir,
        '--listen-client-urls', clientUrl,
        '--advertise-client-urls', clientUrl,
        '--listen-peer-urls', peerUrl,
        '--initial-advertise-peer-urls', peerUrl,
        '--initial-cluster', this.initialCluster,
        '--initial-cluster-token', 'conclave-bench',
        '--initial-cluster-state', 'new',
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } },
    );
    const keep = (chunk: Buffer) => {
      member.output = (member.output + chunk.toString()).slice(-outputTailChars);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    member.child = child;
    member.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  }

  private async waitForLeader(name: string): Promise<void> {
    const deadline = Date.now() + startTimeoutMs;
    while (Date.now() < deadline) {
      const member = this.member(name);
      if (member.child !== null && member.child.exitCode !== null) throw new Error(`etcd ${name} exited (${member.child.exitCode}) before it was ready:\n${member.output}`);
      const status = await this.status(name).catch(() => null);
      if (status !== null && status.leader !== '0') return;
      await sleep(50);
    }
    throw new Error(`etcd ${name} reported no leader within ${startTimeoutMs} ms:\n${this.member(name).output}`);
  }
}
