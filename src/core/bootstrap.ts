import type { DiscoveryInfo } from './clusterMessages.js';
import type { NodeDescriptor } from './clusterState.js';

/**
 * Bootstrapping: the one moment in a cluster's life when its first voting configuration is chosen without a
 * master to choose it. Every node that bootstraps writes the same first journal entry (the configuration, at
 * index 1 in term 0), so the nodes of one bootstrap agree whoever of them writes it; a node with a journal never
 * bootstraps again, and a node that finds a peer with a journal joins that cluster instead.
 *
 * Two methods, as in CrateDB and Elasticsearch:
 * - initial master nodes, by name: bootstrap once every named node has been found (with no journal). Every
 *   node must be given the same list; a node that is not on it never bootstraps, it joins.
 * - expect N: bootstrap once at least N master-eligible nodes without a journal see each other and every one of
 *   them reports exactly the same set. Each node's view (the eligible nodes without a journal it has ever seen)
 *   only grows and is made durable before it is reported, so a node's reports form a chain; then two different
 *   agreed sets cannot both be written: were S1 ⊊ S2 (a shared member's reports make them comparable), the node
 *   that bootstrapped S1 saw exactly S1 when it did and reports nothing after, so it never reported S2, which
 *   S2 needed. A view that holds a node which then never comes back never agrees: start that node again, or
 *   bootstrap by names. N must exceed half of the eligible nodes that may ever be unformed at once (so that
 *   two disjoint groups cannot both reach N and form two clusters).
 */
export type BootstrapMethod =
  | { readonly kind: 'initialMasterNodes'; readonly names: readonly string[] }
  | { readonly kind: 'expect'; readonly count: number }
  /** Never bootstraps: joins an existing cluster only. */
  | { readonly kind: 'none' };

/**
 * Initial master nodes: the voters to bootstrap with now, or null to keep waiting (or join). `peers`: fresh
 * infos of the same cluster name. (Expect N: see `expectedVoters`.)
 */
export function bootstrapVoters(self: NodeDescriptor, method: BootstrapMethod, peers: readonly DiscoveryInfo[]): string[] | null {
  if (!self.roles.masterEligible || method.kind !== 'initialMasterNodes') return null;
  if (peers.some((p) => p.hasJournal)) return null;
  const unformedEligible = peers.filter((p) => p.node.roles.masterEligible);
  {
    if (!method.names.includes(self.name)) return null;
    const ids: string[] = [];
    for (const name of new Set(method.names)) {
      if (name === self.name) {
        // Another node answering to our own name: one of us is misconfigured, so neither may bootstrap.
        if (unformedEligible.some((p) => p.node.name === name)) return null;
        ids.push(self.id);
        continue;
      }
      const found = unformedEligible.filter((p) => p.node.name === name);
      // Two nodes answering to one name: a configuration mistake; refuse to guess which is meant.
      if (found.length !== 1) return null;
      ids.push(found[0]!.node.id);
    }
    return ids.sort();
  }
}

/**
 * Expect N: `view` is this node's durable view (itself included); `reports` the latest view each peer reported.
 * The set to bootstrap with, or null to keep waiting.
 */
export function expectedVoters(self: NodeDescriptor, count: number, view: readonly string[], reports: ReadonlyMap<string, readonly string[]>, anyPeerHasJournal: boolean): string[] | null {
  if (!self.roles.masterEligible || anyPeerHasJournal) return null;
  if (view.length < count || !view.includes(self.id)) return null;
  const key = view.join(',');
  for (const id of view) {
    if (id === self.id) continue;
    if (reports.get(id)?.join(',') !== key) return null;
  }
  return [...view];
}
