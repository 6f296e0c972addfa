import type { FastifyInstance } from 'fastify';
import { join } from 'node:path';
import type { Logger } from 'pino';

import { Authenticator } from '../auth/authenticator.js';
import { generatePassword, hashPassword, passwordLengthMin } from '../auth/passwords.js';
import { TokenSigner } from '../auth/tokens.js';
import type { Config } from '../config/settings.js';
import { ConclaveError, invariant } from '../errors/catalogue.js';
import { buildApp } from '../http/app.js';
import type { HttpContext } from '../http/context.js';
import { BlobStore } from '../storage/blobStore.js';
import { ContentTables } from '../storage/contentTables.js';
import { openDatabase, type Db } from '../storage/database.js';
import { Journal } from '../storage/journal.js';
import { Repository } from './repository.js';
import { WritePipeline } from './writePipeline.js';

export interface StartOptions {
  /** The first admin's password; generated and printed when absent. Ignored once the repository exists. */
  readonly adminPassword?: string;
  /** Where a generated admin password is printed (once, at the first start). */
  readonly announce?: (text: string) => void;
}

/**
 * One running node: storage, the write pipeline, the HTTP API, and an orderly stop. Everything that waits lives
 * here or below; the rules live in src/content (and later src/core).
 */
export class ConclaveNode {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: Config,
    readonly log: Logger,
    private readonly db: Db,
    private readonly pipeline: WritePipeline,
    readonly repository: Repository,
    readonly app: FastifyInstance,
    private readonly context: HttpContext,
  ) {}

  static async open(config: Config, log: Logger, options: StartOptions = {}): Promise<ConclaveNode> {
    const db = openDatabase(config.data.dir);
    try {
      const journal = new Journal(db);
      const content = new ContentTables(db);
      const blobs = await BlobStore.open(join(config.data.dir, 'blobs'));
      const pipeline = new WritePipeline(
        db,
        journal,
        content,
        {
          batchEntriesMax: config.storage.groupCommitEntriesMax,
          batchBytesMax: config.storage.groupCommitBytesMax,
          queueEntriesMax: config.storage.writeQueueEntriesMax,
          queueBytesMax: config.storage.writeQueueBytesMax,
        },
        log,
      );
      pipeline.recover();
      const repository = new Repository(pipeline, content, blobs);
      if (!repository.isBootstrapped) await bootstrap(repository, log, options);
      else if (options.adminPassword !== undefined) {
        log.info('the repository exists; CONCLAVE_ADMIN_PASSWORD is used only at the first start and was ignored');
      }
      const tokenKey = content.tokenKey();
      invariant(tokenKey !== undefined, 'a bootstrapped repository has a token key');
      const tokens = new TokenSigner(tokenKey, config.auth.tokenTtlSeconds);
      const authenticator = new Authenticator(content, tokens, {
        cacheEntriesMax: config.auth.credentialCacheEntriesMax,
        passwordChecksInFlightMax: config.auth.passwordChecksInFlightMax,
      });
      const context: HttpContext = { config, repository, authenticator, tokens, closing: false };
      const app = await buildApp(context, log);
      return new ConclaveNode(config, log, db, pipeline, repository, app, context);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Starts listening; resolves with the URL actually bound (the port may have been 0). */
  async listen(): Promise<string> {
    await this.app.listen({ host: this.config.http.host, port: this.config.http.port });
    const address = this.app.server.address();
    invariant(address !== null && typeof address === 'object', 'the server is bound to a TCP address');
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    this.log.info({ url, port: address.port, appliedIndex: this.repository.appliedIndex }, 'listening');
    return url;
  }

  /**
   * Graceful stop: refuse new requests, let in-flight ones finish (up to http.shutdownGraceMs), commit what the
   * write queue holds, then close the database cleanly (which checkpoints the WAL).
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.context.closing = true;
    this.log.info('stopping: finishing in-flight requests');
    const grace = setTimeout(() => {
      this.log.warn({ graceMs: this.config.http.shutdownGraceMs }, 'in-flight requests outlived the grace period; closing connections');
      this.app.server.closeAllConnections();
    }, this.config.http.shutdownGraceMs);
    try {
      await this.app.close();
    } finally {
      clearTimeout(grace);
    }
    await this.pipeline.close();
    this.db.close();
    this.log.info('stopped');
  }
}

async function bootstrap(repository: Repository, log: Logger, options: StartOptions): Promise<void> {
  let password = options.adminPassword;
  if (password !== undefined && password.length < passwordLengthMin) {
    throw new ConclaveError(
      'INVALID_REQUEST',
      `CONCLAVE_ADMIN_PASSWORD must have at least ${passwordLengthMin} characters; choose a longer one.`,
    );
  }
  const generated = password === undefined;
  password ??= generatePassword();
  // Shown before the commit: a crash right after it must not leave an admin whose password nobody saw.
  if (generated) {
    const announce = options.announce ?? ((text: string) => process.stdout.write(text));
    announce(
      `\n  A new repository was created. Log in as\n\n    user:     admin\n    password: ${password}\n\n` +
        '  This password is shown only now; it is stored hashed. Change it with PUT /api/v1/users/admin.\n\n',
    );
  }
  await repository.bootstrap(await hashPassword(password));
  log.info({ appliedIndex: repository.appliedIndex }, 'created a new repository with the user admin');
}
