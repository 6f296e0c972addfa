/**
 * Read leases: how a node may serve a `sequential` read from its own state, without asking anyone, and still
 * reflect every write acknowledged before the read began. The safety argument rests on one assumption only: every
 * node's tick clock runs at a rate within a known bound of every other's — the real duration of one tick lies in
 * [τmin, τmax] with τmax / τmin ≤ ρ = (100 + p) / (100 - p), p = `clockDriftPercent`. (The runtime derives ticks
 * from the monotonic clock and catches up on ticks missed during a pause, so a paused process sees its leases run
 * out the moment it resumes. Those ticks are skipped ones: they move the clock but not the counter of point 1,
 * which then reaches E later than the real time allows — the bound below still holds.) Message delays are
 * unbounded; nothing depends on them.
 *
 * Ticks are counted: an event "at tick k" happens in real time in [T(k), T(k+1)), T(k) the real time of tick k.
 *
 * 1. Voters are sticky. A node that receives an append from a master at real time r (ticksSinceMasterContact is
 *    reset to 0) neither grants a vote or pre-vote nor campaigns until that counter reaches E
 *    (electionTimeoutTicks), which is no sooner than r + (E - 1)·τmin. A node counts as just contacted when it
 *    boots, so a crash cannot shorten this, and so does a master when it steps down. The rule holds in every term:
 *    a vote request of a term above ours is ignored while sticky, and one of our current term is refused — the node
 *    may have been moved into the candidate's term by something else since it last heard from the master (a
 *    delayed refusal or answer carrying that term, stepping down, a restart with the term persisted and no vote).
 *    Checking only the first case let a new master be elected while the old one held its lease (issue 13).
 *
 * 2. The master lease. Every append carries the master's tick `sentTick`; acknowledgements echo it — only those
 *    answered in the term of the append they echo: an answer sent in a later term (refusing a delayed append of an
 *    earlier one) echoes nothing, since the master of that later term would take another master's ticks, or its own
 *    from before a restart, for its own. Let s be the
 *    largest tick such that a quorum of voters (of each configuration in force) acknowledged an append sent at or
 *    after s (the master counts itself at its current tick). Each of those voters received it at real time ≥ T(s),
 *    so by (1) none of them votes before T(s) + (E - 1)·τmin, and any new master's quorum shares a voter with this
 *    one: no other master can exist before then. The master holds its lease while its tick is below
 *    s + L, L = masterLeaseTicks(E) = shrink(E - 1): it ends by T(s) + L·τmax ≤ T(s) + (E - 1)·τmin.
 *
 * 3. Follower leases. Each acknowledgement also carries the follower's own tick `recvTick` at which it received the
 *    append being acknowledged; the master received that acknowledgement at its tick a. It grants back, in a later
 *    append, { anchorTick: recvTick, ticks: d } with d = shrink(M - a - 1), M the master lease's end at the time
 *    of the grant. The follower holds the lease while its tick is below recvTick + d: in real time that ends by
 *    (receipt of the append) + d·τmax ≤ (master's receipt of the ack) + d·τmax < T(a + 1) + (M - a - 1)·τmin ≤
 *    T(M). So a follower lease never outlives the master lease it derives from, and by (2) it has ended before any
 *    other master exists. The master remembers M per grant (the `until` of its LeaseGrantRecord).
 *
 * 4. Acknowledgement. The master acknowledges a write only once it is applied by every in-sync member AND by every
 *    member whose lease may still run (its tick below the recorded M). It grants leases only to in-sync members
 *    that have applied everything it may have acknowledged (see ClusterCoordinator: the highest index it has
 *    acknowledged in its reign), as the member's current process reports it: a member's applies are not fsynced
 *    on their own, so a member that crashes may come back having applied less than it once reported, and its new
 *    report stands (the grant is anchored on an acknowledgement of that process, point 3). So whoever holds a lease
 *    has applied every acknowledged write: a sequential read under a lease sees them all. The master itself
 *    serves sequential reads while it holds the master lease and has applied the first entry of its term (the
 *    writes earlier masters acknowledged are below it).
 *
 * Nodes that are removed from the in-sync set stop getting grants; their last one runs out by its recorded M, and
 * the master waits for that before it acknowledges anything they have not applied.
 */

/** The most ticks of the fastest clock that surely fit in `ticks` of the slowest one: floor(ticks / ρ). */
export function shrinkTicks(ticks: number, clockDriftPercent: number): number {
  return Math.floor((ticks * (100 - clockDriftPercent)) / (100 + clockDriftPercent));
}

/** L in (2): how long after the send tick of a quorum-acknowledged append the master lease lasts. */
export function masterLeaseTicks(electionTimeoutTicks: number, clockDriftPercent: number): number {
  return shrinkTicks(electionTimeoutTicks - 1, clockDriftPercent);
}

/** d in (3): the follower lease for an acknowledgement the master received at `ackTick`, under a lease ending at `masterLeaseEndTick`. */
export function followerLeaseTicks(masterLeaseEndTick: number, ackTick: number, clockDriftPercent: number): number {
  return shrinkTicks(masterLeaseEndTick - ackTick - 1, clockDriftPercent);
}
