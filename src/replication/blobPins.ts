/**
 * Blobs the collector must keep whatever the content says now: those of a backup being written, which references
 * the state at its own index — a blob deleted from the content since is still in that backup. Counted, so two
 * backups pinning one blob each release their own pin.
 */
export class BlobPins {
  private readonly counts = new Map<string, number>();
  private holds = 0;

  /**
   * Keeps every blob until released: for the moments before a backup knows its own blobs (its state is being copied),
   * when computing "every blob referenced now" would hold the event loop for a scan of the whole content.
   */
  holdAll(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
    };
  }

  /** Whether a holdAll is in force: the collector deletes nothing meanwhile. */
  get holdingAll(): boolean {
    return this.holds > 0;
  }

  /** Pins the blobs; the returned function releases exactly these pins (calling it twice does nothing). */
  pin(hashes: Iterable<string>): () => void {
    const pinned = [...new Set(hashes)];
    for (const sha256 of pinned) this.counts.set(sha256, (this.counts.get(sha256) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const sha256 of pinned) {
        const left = (this.counts.get(sha256) ?? 1) - 1;
        if (left > 0) this.counts.set(sha256, left);
        else this.counts.delete(sha256);
      }
    };
  }

  /** Adds every pinned blob to `referenced` (the collector's mark). */
  addTo(referenced: Set<string>): Set<string> {
    for (const sha256 of this.counts.keys()) referenced.add(sha256);
    return referenced;
  }

  get size(): number {
    return this.counts.size;
  }
}
