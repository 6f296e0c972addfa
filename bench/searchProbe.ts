import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import { BenchCluster } from './benchCluster.js';
import { LatencyHistogram } from './histogram.js';
import { callJson } from './operations.js';

/**
 * Full-text search under load (issue 19): a 3-node cluster holding `--documents` documents of about 1 KB of text
 * (words drawn from a Zipf distribution over a vocabulary of made-up words, as natural text is), then searches —
 * one word, two words, a prefix, a phrase — one at a time, round-robin over the nodes, for `--duration-ms` while
 * `--writes-per-sec` replaces of documents go on, also spread over the nodes. Reports the searches' latency
 * (p50, p99, max) and what the writes achieved. Target: p50 under 10 ms and p99 under 50 ms on 100,000 documents
 * with 100 writes/s.
 *
 *   node dist/bench/searchProbe.js [--documents 100000] [--duration-ms 30000] [--writes-per-sec 100] [--cpu-prof DIR]
 */

const { values } = parseArgs({ options: { documents: { type: 'string' }, 'duration-ms': { type: 'string' }, 'writes-per-sec': { type: 'string' }, 'cpu-prof': { type: 'string' } } });
const documents = Number(values.documents ?? 100_000);
const durationMs = Number(values['duration-ms'] ?? 30_000);
const writesPerSec = Number(values['writes-per-sec'] ?? 100);
const vocabularySize = 20_000;
const batchDocuments = 200;

// A deterministic generator (mulberry32): the same documents and queries every run.
let state = 20261207;
function random(): number {
  state = (state + 0x6d2b79f5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const syllables = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ze', 'po', 'qui', 'dra', 'fel', 'gor', 'hin', 'jas'];
const vocabulary = Array.from({ length: vocabularySize }, (_, rank) => {
  let word = '';
  let n = rank + 17;
  while (n > 0) {
    word += syllables[n % syllables.length];
    n = Math.floor(n / syllables.length);
  }
  return word;
});
// Zipf (s = 1): the cumulative weights, searched by bisection.
const cumulative: number[] = [];
let sum = 0;
for (let r = 1; r <= vocabularySize; r++) cumulative.push((sum += 1 / r));
function zipfRank(): number {
  const x = random() * sum;
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
function text(chars: number): string {
  const words: string[] = [];
  let length = 0;
  while (length < chars) {
    const word = vocabulary[zipfRank()]!;
    words.push(word);
    length += word.length + 1;
  }
  return words.join(' ');
}
/** A word of middling frequency: what people search for (the commonest are refused as too broad, as designed). */
const middling = () => vocabulary[200 + Math.floor(random() * 10_000)]!;

const call = (url: string, method: string, body?: unknown) => callJson(url, method, body);

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'conclave-search-probe-'));
  const cluster = await BenchCluster.start({
    size: 3,
    root,
    env: { CONCLAVE_CONTENT_BATCH_OPERATIONS_MAX: String(batchDocuments), CONCLAVE_CONTENT_BATCH_BYTES_MAX: String(8 * 1024 * 1024), CONCLAVE_AUTH_USER_WRITES_PER_SECOND_MAX: '1000000' },
    cpuProfDir: values['cpu-prof'] ?? null,
  });
  try {
    const master = await cluster.master();
    const at = (path: string) => `${cluster.url(master)}${path}`;
    if ((await call(at('/api/v1/content/docs'), 'PUT', { properties: {} })).status !== 201) throw new Error('the parent');
    const loadStarted = performance.now();
    for (let from = 0; from < documents; from += batchDocuments) {
      const count = Math.min(batchDocuments, documents - from);
      const operations = Array.from({ length: count }, (_, i) => ({ op: 'put', path: `/docs/d${from + i}`, properties: { title: text(40), body: text(1000) } }));
      // A failover while loading (the batches keep two shared cores busy) is answered and the batch sent again; one
      // known committed is not.
      for (let attempt = 1; ; attempt++) {
        const answer = await call(`${cluster.url(await cluster.master())}/api/v1/batch`, 'POST', { operations });
        if (answer.status === 200 || (answer.json['error'] as { committed?: boolean } | undefined)?.committed === true) break;
        if (attempt === 5) throw new Error(`a batch answered ${answer.status}: ${JSON.stringify(answer.json)}`);
        process.stderr.write(`a batch answered ${answer.status}; sending it again\n`);
      }
      if ((from / batchDocuments) % 50 === 0) process.stderr.write(`loaded ${from + count} documents\n`);
    }
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    // Every node has applied the load before the searches start.
    const appliedOf = async (name: string) => ((await call(`${cluster.url(name)}/api/v1/cluster/status`, 'GET')).json['nodes'] as Array<{ name: string; appliedIndex: number }>).find((n) => n.name === name)!.appliedIndex;
    const target = await appliedOf(master);
    for (const name of cluster.names) while ((await appliedOf(name)) < target) await new Promise((resolve) => setTimeout(resolve, 100));

    let writesSent = 0;
    let writesAcknowledged = 0;
    let writeErrors = 0;
    const inflight = new Set<Promise<void>>();
    const started = performance.now();
    const timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * writesPerSec) - writesSent;
      for (let i = 0; i < due; i++) {
        const n = writesSent++;
        const node = cluster.names[n % cluster.names.length]!;
        const request = call(`${cluster.url(node)}/api/v1/content/docs/d${Math.floor(random() * documents)}`, 'PUT', { properties: { title: text(40), body: text(1000) } })
          .then((answer) => void (answer.status === 200 || answer.status === 201 ? writesAcknowledged++ : writeErrors++))
          .catch(() => void writeErrors++)
          .finally(() => inflight.delete(request));
        inflight.add(request);
      }
    }, 10);

    const kinds = {
      'one word': () => middling(),
      'two words': () => `${middling()} ${vocabulary[Math.floor(random() * 200)]}`,
      prefix: () => `${middling().slice(0, 5)}*`,
      phrase: () => `"${vocabulary[Math.floor(random() * 100)]} ${vocabulary[Math.floor(random() * 100)]}"`,
    };
    const latency = new Map(Object.keys(kinds).map((k) => [k, new LatencyHistogram()]));
    // The floor: a read of one node by path, between the searches, through the same client and nodes.
    const reads = new LatencyHistogram();
    const all = new LatencyHistogram();
    let tooBroad = 0;
    let errors = 0;
    let results = 0;
    let n = 0;
    while (performance.now() - started < durationMs) {
      const [kind, make] = Object.entries(kinds)[n % 4]!;
      const node = cluster.names[n++ % cluster.names.length]!;
      const r0 = performance.now();
      const read = await call(`${cluster.url(node)}/api/v1/content/docs/d${Math.floor(random() * documents)}`, 'GET');
      if (read.status === 200) reads.record(performance.now() - r0);
      const t0 = performance.now();
      const answer = await call(`${cluster.url(node)}/api/v1/search?q=${encodeURIComponent(make())}&limit=10`, 'GET');
      const ms = performance.now() - t0;
      if (answer.status === 200) {
        latency.get(kind)!.record(ms);
        all.record(ms);
        results += (answer.json['items'] as unknown[]).length;
      } else if ((answer.json['error'] as { code?: string } | undefined)?.code === 'SEARCH_TOO_BROAD') tooBroad++;
      else errors++;
    }
    const seconds = (performance.now() - started) / 1000;
    clearInterval(timer);
    await Promise.allSettled([...inflight]);
    const s = all.summary();
    console.log(`${documents} documents of ~1 KB loaded in ${loadSeconds.toFixed(1)} s (${Math.round(documents / loadSeconds)} documents/s, batches of ${batchDocuments})`);
    console.log(`writes: ${(writesAcknowledged / seconds).toFixed(1)}/s acknowledged (target ${writesPerSec}), ${writeErrors} errors`);
    console.log(`searches: ${s.count} in ${seconds.toFixed(1)} s, ${(results / Math.max(1, s.count)).toFixed(1)} results each, ${tooBroad} refused as too broad, ${errors} errors`);
    console.log('| query | searches | p50 ms | p99 ms | max ms |');
    console.log('|---|--:|--:|--:|--:|');
    for (const [kind, h] of [...latency, ['all searches', all] as const, ['a read of one node (not a search)', reads] as const]) {
      const k = h.summary();
      console.log(`| ${kind} | ${k.count} | ${k.p50Ms.toFixed(2)} | ${k.p99Ms.toFixed(2)} | ${k.maxMs.toFixed(2)} |`);
    }
  } finally {
    await cluster.stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
