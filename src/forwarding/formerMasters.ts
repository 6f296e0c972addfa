/**
 * What was sent to a master and is not answered yet, registered under the master it went to, so that it can be
 * given up once another node is master: the one implementation of "abandon former masters" the request relay
 * (requestRelay.ts, relayed HTTP requests) and the command client (commandClient.ts, forwarded commands) share.
 *
 * A master that was paused or cut off may never answer what it was sent: once another is known, waiting the whole
 * response timeout for it only holds the client and a forwarding slot (found by the SIGSTOP failover bench: every
 * slot was held by the stopped master and nothing reached the new one). Losing sight of the master is no such news
 * — an election may confirm it again — so a report of no master gives up nothing, and until another master is
 * known the callers' timeouts bound the wait.
 *
 * When to look: `everyReport` looks at every report of the view, `whenMasterChanges` only when the master reported
 * differs from the last one looked at (the runtime reports after every drain that may have changed something). The
 * command client registers a command under the master it reads at that moment, with nothing awaited in between, and
 * looks only when the master changed. The relay looks at every report: it reads the master before it authenticates
 * the client (an await) and registers the forward after, so a forward can be registered under a master a look has
 * already left behind; the next report gives it up.
 */
export type FormerMasterScan = 'everyReport' | 'whenMasterChanges';

export class FormerMasters<T> {
  private readonly byMaster = new Map<string, Set<T>>();
  /** The master the last look was for (whenMasterChanges). */
  private looked: string | null = null;

  /**
   * `giveUp` is called once for each item registered under a master that is no longer the master, after the item
   * is forgotten here.
   */
  constructor(
    private readonly scan: FormerMasterScan,
    private readonly giveUp: (item: T, formerMasterId: string) => void,
  ) {}

  /** Registers `item`, sent to `masterId`, until it is removed or given up. */
  add(masterId: string, item: T): void {
    const items = this.byMaster.get(masterId);
    if (items === undefined) this.byMaster.set(masterId, new Set([item]));
    else items.add(item);
  }

  /** The item was answered (or failed otherwise): it is no longer given up. */
  delete(masterId: string, item: T): void {
    const items = this.byMaster.get(masterId);
    if (items === undefined) return;
    items.delete(item);
    if (items.size === 0) this.byMaster.delete(masterId);
  }

  /** Items registered now (for tests). */
  get size(): number {
    let size = 0;
    for (const items of this.byMaster.values()) size += items.size;
    return size;
  }

  /** The view reports `master` (null: none known): what went to any other master is given up. */
  masterReported(master: string | null): void {
    if (master === null) return;
    if (this.scan === 'whenMasterChanges') {
      if (master === this.looked) return;
      this.looked = master;
    }
    for (const [masterId, items] of this.byMaster) {
      if (masterId === master) continue;
      this.byMaster.delete(masterId);
      for (const item of items) this.giveUp(item, masterId);
    }
  }
}
