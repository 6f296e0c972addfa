import type { FastifyRequest } from 'fastify';

import type { WriteAuthority } from '../forwarding/wire.js';
import type { WriteOrigin } from '../forwarding/writeRouter.js';

/**
 * The origin of a route's write, for Repository's write methods: the authenticated user, the permission the route
 * took it under, and whether the coordinator let the command go to the master (src/forwarding/writeRouter.ts
 * decides where it goes when it is proposed).
 */
export function writeOriginOf(request: FastifyRequest, needs: WriteAuthority['needs']): WriteOrigin {
  return { authority: { user: request.principal.name, needs }, mayForward: request.forwardsCommand };
}
