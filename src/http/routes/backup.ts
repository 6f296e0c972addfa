import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';

import type { OpenBackup, SinceBackup } from '../../backup/backupService.js';
import { ConclaveError } from '../../errors/catalogue.js';

/**
 *   GET  /api/v1/admin/backup   (admin) a full backup of this node, streamed as a tar archive (manifest.ts)
 *   POST /api/v1/admin/backup   (admin) {"since": {id, index, createdAt, file, blobsReferenced}}: an incremental one,
 *                               holding only the blobs the named backup (from its manifest) does not reference
 *
 * Served by the node asked, never forwarded: which node a backup comes from is the operator's choice (a replica
 * keeps the master's disk and CPU free). `?consistency=linearizable` first confirms with the master that this node
 * has applied every acknowledged write (the read gate in app.ts); the default `sequential` guarantees the same
 * while the node holds a read lease. Errors found before streaming (BACKUP_BLOB_MISSING, BACKUPS_BUSY) are answered
 * as JSON; a failure while streaming cuts the connection, and the reader sees a truncated archive.
 */
const sinceSchema = z
  .object({
    since: z
      .object({
        id: z.uuid(),
        index: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
        createdAt: z.iso.datetime(),
        file: z.string().min(1).max(255).regex(/^[^/\\\0]+$/, 'a file name, no directory'),
        blobsReferenced: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
      })
      .strict(),
  })
  .strict();

/** Served by the node asked, whatever the method (src/forwarding/decision.ts leaves it alone). */
export const backupPath = '/api/v1/admin/backup';

export async function backupRoutes(app: FastifyInstance): Promise<void> {
  const { backups, config } = app.conclave;

  const send = async (reply: FastifyReply, since: SinceBackup | null, log: FastifyReply['log']) => {
    if (backups === null) throw new ConclaveError('INVALID_REQUEST', 'This node takes no backups.');
    const backup: OpenBackup = await backups.open(since);
    const body = backup.stream();
    body.once('error', (err) => log.error({ err, backup: backup.manifest.id }, 'a backup failed while streaming; the client gets a truncated archive'));
    void reply
      .header('content-type', 'application/x-tar')
      .header('content-length', String(backup.bytes))
      .header('content-disposition', `attachment; filename="${backup.fileName}"`)
      .header('cache-control', 'no-store')
      .header('x-conclave-index', String(backup.manifest.index))
      .header('x-conclave-backup-id', backup.manifest.id);
    return reply.send(body);
  };

  app.get(backupPath, { config: { permission: 'admin' } }, async (request, reply) => send(reply, null, request.log));

  app.post(backupPath, { config: { permission: 'admin' }, bodyLimit: config.backup.requestBytesMax }, async (request, reply) => {
    const parsed = sinceSchema.safeParse(request.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ConclaveError('INVALID_REQUEST', `Send {"since": {id, index, createdAt, file, blobsReferenced}} from the base backup's manifest; ${issue.path.join('.') || 'the body'}: ${issue.message}.`);
    }
    return send(reply, parsed.data.since, request.log);
  });
}
