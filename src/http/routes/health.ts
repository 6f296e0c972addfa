import type { FastifyInstance } from 'fastify';

/**
 * Health checks need no authentication: load balancers and orchestrators call them.
 *
 *   /health/live      200 while the process runs
 *   /health/ready     200 once the node is in a cluster with a master, holds the repository and is in sync, and
 *                     makes progress (503 "stalled", "refusing-appends" or "apply-failed" otherwise, with the problem)
 *   /health/writable  200 when this node takes writes now: the master, or a replica that knows the master and
 *                     forwards writes to it (cluster.coordinatorMode CUD or ALL)
 *   /health/master    200 only on the master: what a DNS or load-balancer failover checks
 */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const context = app.conclave;
  const { runtime, repository } = context;
  const describe = () => {
    const soft = runtime.softState();
    const state = runtime.clusterState();
    const self = runtime.self().id;
    return { soft, state, self };
  };
  app.get('/health/live', async () => ({ status: 'live' }));
  app.get('/health/ready', async (_request, reply) => {
    const { soft, state, self } = describe();
    let status = 'ready';
    if (context.closing) status = 'shutting-down';
    else if (state.clusterUuid === null || !state.nodes.some((n) => n.id === self)) status = 'joining';
    else if (soft.master === null) status = 'no-master';
    // A node that cannot make progress is not ready, whatever else holds: a stalled master would time out every
    // write, and a load balancer must take it out.
    const problem = status === 'shutting-down' ? null : runtime.writeProblem();
    if (problem !== null) status = problem.kind;
    else if (status === 'ready' && (!state.inSync.includes(self) || !repository.isBootstrapped)) status = 'catching-up';
    const joinRefusal = runtime.joinRefusal();
    return reply.status(status === 'ready' ? 200 : 503).send({
      status,
      appliedIndex: repository.appliedIndex,
      master: soft.master,
      ...(status === 'joining' && joinRefusal !== null ? { joinRefusal } : {}),
      ...(problem !== null ? { problem: { index: problem.index, forMs: Math.round(performance.now() - problem.sinceMs), detail: problem.detail } } : {}),
    });
  });
  // A voting-only node can be a caretaker master that takes no writes: it is not "the master" for clients.
  const isWritingMaster = () => {
    const roles = runtime.self().roles;
    return runtime.softState().role === 'master' && roles.masterEligible && !roles.votingOnly;
  };
  app.get('/health/writable', async (_request, reply) => {
    const master = isWritingMaster();
    const forwards = !master && runtime.softState().master !== null && context.config.cluster.coordinatorMode !== 'DISABLED';
    const writable = !context.closing && repository.isBootstrapped && (master ? !runtime.persistFailing && runtime.writeProblem() === null : forwards);
    return reply
      .status(writable ? 200 : 503)
      .send({ status: writable ? 'writable' : 'not-writable', ...(writable ? { via: master ? 'master' : 'forwarding' } : {}) });
  });
  app.get('/health/master', async (_request, reply) => {
    const master = isWritingMaster();
    return reply.status(master ? 200 : 503).send({ status: master ? 'master' : 'not-master' });
  });
}
