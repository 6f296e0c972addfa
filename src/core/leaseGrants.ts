/** A follower lease the master granted: the tick its master lease ended then (see lease.ts), and what it applied. */
interface LeaseGrantRecord {
  until: number;
  appliedIndex: number;
}

/**
 * The follower leases a master granted in its reign (lease.ts, point 3), by member: until when each may run, and
 * the applied index the member last reported. A write is acknowledged only once every member whose lease may
 * still run has applied it (point 4), so the records outlive nothing but their own `until`.
 */
export class LeaseGrants {
  private readonly grants = new Map<string, LeaseGrantRecord>();

  /** A grant to `id` under a master lease that ends at `until`; a later grant never shortens an earlier one. */
  record(id: string, until: number, appliedIndex: number): void {
    const previous = this.grants.get(id);
    this.grants.set(id, { until: Math.max(previous?.until ?? 0, until), appliedIndex });
  }

  /** The member reported applying through `appliedIndex`. */
  noteApplied(id: string, appliedIndex: number): void {
    const grant = this.grants.get(id);
    if (grant !== undefined) grant.appliedIndex = appliedIndex;
  }

  /** The grants that may still run at `nowTick`, with the applied index each member last reported. */
  inForce(nowTick: number): ReadonlyMap<string, { readonly appliedIndex: number }> {
    for (const [id, grant] of this.grants) if (grant.until <= nowTick) this.grants.delete(id);
    return this.grants;
  }

  /**
   * Forgets every grant: on stepping down (they run out by themselves, and no write is acknowledged any more) and
   * at the start of a reign.
   */
  clear(): void {
    this.grants.clear();
  }
}
