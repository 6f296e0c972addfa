import type { Logger } from 'pino';

import { generatePassword, hashPassword, passwordLengthMax, passwordLengthMin, verifyPassword } from '../auth/passwords.js';
import type { User } from '../content/model.js';
import { rootPath } from '../content/paths.js';
import { ConclaveError, isConclaveError } from '../errors/catalogue.js';
import { ContentTables } from '../storage/contentTables.js';
import { getMeta, openDatabase, setMeta, type Db } from '../storage/database.js';
import type { Repository, WriteAuthor } from './repository.js';

/**
 * The admin password where the operator needs it, kept in the node's database (the data directory's file) until
 * it has served:
 *
 *   unshown  the password generated at a repository's first start, kept until the node listens and prints it: a
 *            first start that failed after creating the repository (its port in use) lost it before.
 *   reset    a new admin password hash recorded by `conclave node reset-admin-password` on a stopped node. The
 *            node proposes it as an ordinary user change once it has its repository and knows a master (a replica
 *            forwards it), so it reaches every node through the journal; the users table is never edited aside.
 */
const unshownKey = 'admin_password_unshown';
const resetKey = 'admin_password_reset';

function deleteMeta(db: Db, key: string): void {
  db.prepare('DELETE FROM meta WHERE key = ?').run(key);
}

export interface AdminPasswordDeps<O extends WriteAuthor> {
  readonly db: Db;
  readonly repository: Repository<O>;
  /**
   * The origin the reset is proposed under: the node's own (no user vouches for it), which a replica may forward to
   * the master (src/forwarding/writeRouter.ts, adminResetOrigin).
   */
  readonly resetOrigin: O;
  /** Whether a master is known now (a reset is proposed only then, here or forwarded). */
  readonly masterKnown: () => boolean;
  readonly announce: (text: string) => void;
  readonly log: Logger;
  /** Between attempts to propose a reset that failed for a reason that may pass (no master, overloaded). */
  readonly retryMs: number;
}

export class AdminPasswordKeeper<O extends WriteAuthor> {
  private listening = false;
  private showing = false;
  private resetting = false;
  private resetGivenUp = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** In memory, so that poke() — called at every change — reads the database only while something waits. */
  private unshownWaiting: boolean;
  private resetWaiting: boolean;

  constructor(private readonly deps: AdminPasswordDeps<O>) {
    this.unshownWaiting = getMeta<string>(deps.db, unshownKey) !== undefined;
    this.resetWaiting = getMeta<string>(deps.db, resetKey) !== undefined;
  }

  /** Keeps a generated first admin password until it is printed (called before the bootstrap entry is proposed). */
  rememberUnshown(password: string): void {
    setMeta(this.deps.db, unshownKey, password);
    this.unshownWaiting = true;
  }

  /** The HTTP API listens: what was kept may be used now. Resolves once a kept password is printed. */
  async onListening(): Promise<void> {
    this.listening = true;
    if (this.resetWaiting) this.proposeReset();
    if (this.unshownWaiting) await this.showUnshown();
  }

  /** Something changed (an entry applied, a master elected): try again what waits for it. */
  poke(): void {
    if (!this.listening || this.closed) return;
    if (this.unshownWaiting) void this.showUnshown();
    if (this.resetWaiting) this.proposeReset();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
  }

  private admin(): User | undefined {
    return this.deps.repository.content.userByName('admin');
  }

  private async showUnshown(): Promise<void> {
    const { db, repository } = this.deps;
    if (this.showing || !repository.isBootstrapped) return;
    const password = getMeta<string>(db, unshownKey);
    if (password === undefined) return;
    this.showing = true;
    try {
      const admin = this.admin();
      // Another master's bootstrap may have won, or the password changed since: then this one opens nothing.
      if (admin !== undefined && (await verifyPassword(password, admin.passwordHash)) && !this.closed) {
        this.deps.announce(
          `\n  A new repository was created. Log in as\n\n    user:     admin\n    password: ${password}\n\n` +
            '  This password is shown only now; it is stored hashed. Change it with PUT /api/v1/users/admin\n' +
            '  (or, on a stopped node, `conclave node reset-admin-password --data DIR`).\n\n',
        );
      }
      if (!this.closed && getMeta<string>(db, unshownKey) === password) {
        deleteMeta(db, unshownKey);
        this.unshownWaiting = false;
      }
    } finally {
      this.showing = false;
    }
  }

  private proposeReset(): void {
    const { db, repository, log } = this.deps;
    if (this.resetting || this.resetGivenUp || this.retryTimer !== null || !repository.isBootstrapped || !this.deps.masterKnown()) return;
    const passwordHash = getMeta<string>(db, resetKey);
    if (passwordHash === undefined) return;
    this.resetting = true;
    // The admin role too: a reset is how an operator gets back in, whatever became of the user meanwhile.
    repository.putUser('admin', { passwordHash, roles: ['admin'] }, false, this.deps.resetOrigin).then(
      (committed) => {
        this.resetting = false;
        if (this.closed) return;
        deleteMeta(db, resetKey);
        this.resetWaiting = false;
        log.warn({ index: committed.index }, 'the admin password was reset as recorded by `conclave node reset-admin-password`');
      },
      (err: unknown) => {
        this.resetting = false;
        if (this.closed) return;
        if (isConclaveError(err) && err.retryable) {
          log.info({ err }, 'the recorded admin password reset could not be proposed yet; retrying');
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.poke();
          }, this.deps.retryMs);
          this.retryTimer.unref();
          return;
        }
        this.resetGivenUp = true;
        log.error(
          { err },
          'the recorded admin password reset was refused; it stays recorded and is tried again at the next start. ' +
            'Run `conclave node reset-admin-password` on the master\'s data directory instead if this persists.',
        );
      },
    );
  }
}

/**
 * `conclave node reset-admin-password`: records a new admin password hash in a stopped node's database (its
 * exclusive lock proves the node is stopped). Returns the password when it was generated (to print once).
 */
export async function recordAdminPasswordReset(dataDir: string, given: string | undefined): Promise<{ generated: string | undefined }> {
  if (given !== undefined && (given.length < passwordLengthMin || given.length > passwordLengthMax)) {
    throw new ConclaveError('INVALID_REQUEST', `CONCLAVE_ADMIN_PASSWORD must have ${passwordLengthMin} to ${passwordLengthMax} characters.`);
  }
  const db = openDatabase(dataDir);
  try {
    if (getMeta<string>(db, 'node_id') === undefined) {
      throw new ConclaveError('INVALID_REQUEST', 'This data directory has never started a node: set CONCLAVE_ADMIN_PASSWORD at its first start instead.');
    }
    if (new ContentTables(db).nodeByPath(rootPath) === undefined) {
      throw new ConclaveError('INVALID_REQUEST', 'This node holds no repository yet: reset the password on a node that has one (or set CONCLAVE_ADMIN_PASSWORD at the first start).');
    }
    const password = given ?? generatePassword();
    setMeta(db, resetKey, await hashPassword(password));
    // The first start's password, if never shown, is replaced by this one.
    deleteMeta(db, unshownKey);
    return { generated: given === undefined ? password : undefined };
  } finally {
    db.close();
  }
}
