import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/**
 * The cluster secret's strength. Every proof a node hands out (the transport handshake's, the internal HTTP
 * signatures) lets whoever holds it test guesses of the secret offline, as fast as they can compute HMACs; no
 * protocol step prevents that. So the secret must be beyond guessing: at least 128 bits of randomness.
 *
 * Randomness cannot be measured from one string; what is checked is an upper bound (the length times the bits per
 * character of the narrowest alphabet the text fits), and the obvious ways a human-made secret falls short: a
 * narrow alphabet, few distinct characters, a repeated pattern, words separated by spaces. A long memorable sentence
 * can still pass: generate secrets (`conclave secret generate`) rather than invent them.
 */

export const clusterSecretBitsMin = 128;
/** `conclave secret generate`: 32 random bytes, base64url (43 characters, 256 bits). */
const generatedSecretBytes = 32;
const distinctCharactersMin = 8;

export function generateClusterSecret(): string {
  return randomBytes(generatedSecretBytes).toString('base64url');
}

/** Bits per character of the narrowest alphabet `secret` fits. */
function bitsPerCharacter(secret: string): number {
  if (/^[0-9a-f]+$/.test(secret) || /^[0-9A-F]+$/.test(secret)) return 4;
  // Random base64 may well lack digits or a case in 22 characters, so its alphabet is not narrowed further (texts
  // of one case only are refused before this).
  if (/^[A-Za-z0-9_-]+$/.test(secret) || /^[A-Za-z0-9+/]+={0,2}$/.test(secret)) return 6;
  // Anything else: printable ASCII at best.
  let alphabet = 0;
  if (/[0-9]/.test(secret)) alphabet += 10;
  if (/[a-z]/.test(secret)) alphabet += 26;
  if (/[A-Z]/.test(secret)) alphabet += 26;
  if (/[^A-Za-z0-9]/.test(secret)) alphabet += 33;
  return Math.log2(alphabet);
}

function isPeriodic(secret: string): boolean {
  for (let period = 1; period <= secret.length / 2; period++) {
    if (secret.length % period !== 0) continue;
    if (secret.slice(period) === secret.slice(0, secret.length - period)) return true;
  }
  return false;
}

/**
 * Why `secret` is too weak to be a cluster secret, or null when it passes. The text never quotes the secret: it
 * ends up in logs and terminals.
 */
export function clusterSecretWeakness(secret: string): string | null {
  const fix = 'use a generated one: `conclave secret generate` prints one (43 characters, 256 bits)';
  if (secret.length === 0) return `the cluster secret is empty: ${fix}`;
  if (/\s/.test(secret)) return `the cluster secret contains white space (a passphrase of words is guessable): ${fix}`;
  if (new Set(secret).size < distinctCharactersMin) return `the cluster secret has fewer than ${distinctCharactersMin} distinct characters: ${fix}`;
  if (isPeriodic(secret)) return `the cluster secret repeats a pattern: ${fix}`;
  // Random text of this alphabet mixes cases and digits; letters of one case (and separators) are words.
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/].filter((kind) => kind.test(secret)).length;
  if (kinds < 2 && !/^[0-9a-fA-F]+$/.test(secret)) return `the cluster secret is made of letters of one case only (words are guessable): ${fix}`;
  const bits = Math.floor(secret.length * bitsPerCharacter(secret));
  if (bits < clusterSecretBitsMin) {
    return (
      `the cluster secret (${secret.length} characters) holds at most ${bits} bits, below the ${clusterSecretBitsMin} required ` +
      `(at least 22 base64url or 32 hex characters drawn at random): ${fix}`
    );
  }
  return null;
}

/**
 * Reads the secret from cluster.secretFile: the whole file less its final line break. Refused when anyone but the
 * owner and group may read it (group stays allowed: Kubernetes mounts Secrets group-readable with fsGroup). The
 * returned error text never quotes the file's content.
 */
export function readClusterSecretFile(path: string): { secret: string } | { problem: string } {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { problem: `cannot read the cluster secret file ${path}: ${(err as Error).message}` };
  }
  if ((mode & 0o007) !== 0) {
    return { problem: `the cluster secret file ${path} is readable or writable by every user of the machine: run \`chmod o-rwx ${path}\` (better: chmod 600)` };
  }
  const secret = text.replace(/\r?\n$/, '');
  const weakness = clusterSecretWeakness(secret);
  if (weakness !== null) return { problem: `${path}: ${weakness}` };
  return { secret };
}
