import type { ClusterState } from '../core/clusterState.js';
import { ConclaveError } from '../errors/catalogue.js';

/**
 * Waits until the applied cluster state satisfies `done` — a cluster-state change a route proposed has taken
 * effect here — or times out with WRITE_OUTCOME_UNKNOWN, naming `checkWith` as where to look.
 */
export function awaitClusterState(
  runtime: { clusterState(): ClusterState; onChange(listener: () => void): () => void },
  done: (state: ClusterState) => boolean,
  timeoutMs: number,
  checkWith: string,
): Promise<void> {
  if (done(runtime.clusterState())) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new ConclaveError('WRITE_OUTCOME_UNKNOWN', `The change was not applied within ${timeoutMs} ms; it may still be. Check ${checkWith}.`));
    }, timeoutMs);
    const unsubscribe = runtime.onChange(() => {
      if (!done(runtime.clusterState())) return;
      clearTimeout(timer);
      unsubscribe();
      resolve();
    });
  });
}
