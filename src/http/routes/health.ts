import type { FastifyInstance } from 'fastify';

/** Health checks need no authentication: load balancers and orchestrators call them. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  const context = app.conclave;
  app.get('/health/live', async () => ({ status: 'live' }));
  app.get('/health/ready', async (_request, reply) => {
    const ready = !context.closing && context.repository.isBootstrapped;
    return reply.status(ready ? 200 : 503).send({
      status: ready ? 'ready' : context.closing ? 'shutting-down' : 'starting',
      appliedIndex: context.repository.appliedIndex,
    });
  });
}
