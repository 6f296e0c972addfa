import type { NodeDescriptor } from '../core/clusterState.js';
import type { BlobStore } from '../storage/blobStore.js';
import { describeRefusal, type InternalHttpClient } from './internalHttp.js';

export const internalBlobsPath = '/internal/v1/blobs';

/** Ways a blob copy between nodes can fail; the pusher and the fetcher try another peer or later. */
export class BlobTransferFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BlobTransferFailed';
  }
}

/**
 * Blob transfer between nodes over /internal/v1/blobs/{sha256} (routes/internal.ts): ask, push, fetch. Bytes
 * stream from file to socket and from socket to file; the receiver verifies every copy against its hash.
 */
export class BlobClient {
  constructor(
    private readonly http: InternalHttpClient,
    private readonly blobs: BlobStore,
  ) {}

  /** Whether the peer holds the blob (its answer also keeps the blob young there: see BlobStore.touch). */
  async has(peer: NodeDescriptor, sha256: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.http.send(peer, { method: 'HEAD', path: `${internalBlobsPath}/${sha256}`, ...(signal ? { signal } : {}) });
    if (response.statusCode === 200 || response.statusCode === 404) {
      await response.body.dump();
      return response.statusCode === 200;
    }
    throw new BlobTransferFailed(`${peer.name} answered a HEAD of blob ${sha256} with ${await describeRefusal(response)}`);
  }

  /** Streams the local blob to the peer, which verifies it against its hash before keeping it. */
  async push(peer: NodeDescriptor, sha256: string, size: number, signal?: AbortSignal): Promise<void> {
    const source = this.blobs.read(sha256);
    try {
      const response = await this.http.send(peer, {
        method: 'PUT',
        path: `${internalBlobsPath}/${sha256}`,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: source,
        ...(signal ? { signal } : {}),
      });
      if (response.statusCode !== 200) {
        throw new BlobTransferFailed(`${peer.name} refused blob ${sha256}: ${await describeRefusal(response)}`);
      }
      await response.body.dump();
    } finally {
      source.destroy();
    }
  }

  /**
   * Copies the blob from the peer into the local store (verified against its hash and size). False when the peer
   * does not hold it.
   */
  async fetch(peer: NodeDescriptor, sha256: string, size: number, signal?: AbortSignal): Promise<boolean> {
    const response = await this.http.send(peer, { method: 'GET', path: `${internalBlobsPath}/${sha256}`, ...(signal ? { signal } : {}) });
    if (response.statusCode === 404) {
      await response.body.dump();
      return false;
    }
    if (response.statusCode !== 200) {
      throw new BlobTransferFailed(`${peer.name} answered a GET of blob ${sha256} with ${await describeRefusal(response)}`);
    }
    try {
      await this.blobs.write(response.body, { bytesMax: size, expectedSha256: sha256 });
    } finally {
      response.body.destroy();
    }
    return true;
  }
}
