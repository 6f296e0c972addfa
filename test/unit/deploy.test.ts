import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';

/** The deployment files, read as what they are (a Dockerfile's instructions, Kubernetes documents), not run. */
const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; engines: { node: string }; dependencies: Record<string, string> };

/** The Dockerfile's stages, each a list of [instruction, arguments], continuation lines joined. */
function dockerStages(text: string): Array<Array<[string, string]>> {
  const stages: Array<Array<[string, string]>> = [];
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  for (const line of lines) {
    const [instruction, ...rest] = line.split(/\s+/);
    const entry: [string, string] = [instruction!.toUpperCase(), rest.join(' ')];
    if (entry[0] === 'FROM') stages.push([]);
    stages.at(-1)!.push(entry);
  }
  return stages;
}

test('the image: HTTP on 0.0.0.0, dependencies only (npm ci --omit=dev), not root', () => {
  const stages = dockerStages(read('deploy/Dockerfile'));
  assert.ok(stages.length >= 2, 'a multi-stage build');
  const final = stages.at(-1)!;
  const args = (name: string) => final.filter(([i]) => i === name).map(([, a]) => a);
  assert.deepEqual(args('USER'), ['node']);
  const cmd = JSON.parse(args('CMD').at(-1)!) as string[];
  assert.equal(cmd[cmd.indexOf('--host') + 1], '0.0.0.0', 'HTTP reachable from outside the container');
  // node_modules of the final image come from a stage that installed without devDependencies.
  const copied = args('COPY').find((a) => a.endsWith('./node_modules'));
  assert.ok(copied !== undefined, 'the final stage copies node_modules');
  const from = /--from=(\S+)/.exec(copied)![1];
  const depsStage = stages.find((s) => s[0]![1].endsWith(` AS ${from}`) || s[0]![1].endsWith(` as ${from}`));
  assert.ok(depsStage !== undefined, `a stage named ${from}`);
  assert.ok(depsStage.some(([i, a]) => i === 'RUN' && /npm ci\b.*--omit=dev/.test(a)), 'npm ci --omit=dev');
  assert.ok(!final.some(([i, a]) => i === 'RUN' && /npm (ci|install)\b/.test(a) && !/--omit=dev/.test(a)), 'no install of devDependencies in the image');
});

test('the runtime imports no devDependency', () => {
  const files: string[] = [];
  const walk = (dir: URL) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(new URL(`${entry.name}/`, dir));
      else if (entry.name.endsWith('.ts')) files.push(join(dir.pathname, entry.name));
    }
  };
  walk(new URL('src/', root));
  const imported = new Set<string>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const specifiers = [...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gm), ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)];
    for (const match of specifiers) {
      const name = match[1]!;
      if (name.startsWith('node:') || name.startsWith('.')) continue;
      imported.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0]!);
    }
  }
  for (const name of imported) assert.ok(Object.hasOwn(pkg.dependencies, name), `${name} is imported by src/ and must be a dependency`);
});

test('the StatefulSet runs a versioned image it may use when present, with resources, under a PodDisruptionBudget', () => {
  const docs = readdirSync(new URL('deploy/kubernetes/', root))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`deploy/kubernetes/${f}`)).map((d) => d.toJS() as Record<string, any>)); // eslint-disable-line @typescript-eslint/no-explicit-any
  const set = docs.find((d) => d['kind'] === 'StatefulSet')!;
  const container = set['spec']['template']['spec']['containers'][0];
  assert.match(container['image'], /^conclave:\d+\.\d+\.\d+$/, 'a versioned tag, never latest');
  assert.equal(container['image'], `conclave:${pkg.version}`);
  assert.equal(container['imagePullPolicy'], 'IfNotPresent');
  for (const kind of ['requests', 'limits']) {
    assert.ok(container['resources']?.[kind]?.['cpu'] !== undefined && container['resources'][kind]['memory'] !== undefined, `resources.${kind}`);
  }
  const pdb = docs.find((d) => d['kind'] === 'PodDisruptionBudget');
  assert.ok(pdb !== undefined, 'a PodDisruptionBudget');
  assert.equal(pdb['spec']['maxUnavailable'], 1);
  assert.deepEqual(pdb['spec']['selector']['matchLabels'], set['spec']['selector']['matchLabels']);
});

test('the README states the Node.js version and the build tools', () => {
  const readme = read('README.md');
  const version = /^>=\s*([\d.]+)$/.exec(pkg.engines.node)![1]!;
  assert.ok(readme.includes(`Node.js >= ${version}`), `README names Node.js >= ${version}`);
  for (const tool of ['python3', 'make', 'g++']) assert.ok(readme.includes(tool), `README names ${tool}`);
});

test('the pods carry Prometheus scrape annotations naming the HTTP port and /metrics', () => {
  const set = parseAllDocuments(read('deploy/kubernetes/statefulset.yaml')).map((d) => d.toJS() as Record<string, any>).find((d) => d['kind'] === 'StatefulSet')!; // eslint-disable-line @typescript-eslint/no-explicit-any
  const template = set['spec']['template'];
  const annotations = template['metadata']['annotations'] as Record<string, string>;
  const httpPort = (template['spec']['containers'][0]['ports'] as Array<{ name: string; containerPort: number }>).find((p) => p.name === 'http')!.containerPort;
  assert.equal(annotations['prometheus.io/scrape'], 'true');
  assert.equal(annotations['prometheus.io/port'], String(httpPort));
  assert.equal(annotations['prometheus.io/path'], '/metrics');
  assert.match(read('deploy/kubernetes/README.md'), /basic_auth:[\s\S]*password_file/, 'the README shows a scrape job with credentials');
});

test('the Grafana dashboard reads only series docs/operations.md documents, through the data source variable', () => {
  const dashboard = JSON.parse(read('deploy/grafana/conclave-dashboard.json')) as {
    uid: string;
    templating: { list: Array<{ name: string; type: string }> };
    panels: Array<{ type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string; datasource: { uid: string } }> }>;
  };
  assert.equal(dashboard.uid, 'conclave');
  assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'));
  const operations = read('docs/operations.md');
  const documented = new Set([...operations.matchAll(/`((?:conclave|process)_[a-z_]+)/g)].map((m) => m[1]!));
  const graphs = dashboard.panels.filter((p) => p.type !== 'row');
  assert.ok(graphs.length >= 10);
  for (const panel of graphs) {
    assert.equal(panel.datasource?.uid, '${datasource}', `${panel.title} uses the data source variable`);
    assert.ok((panel.targets ?? []).length > 0, `${panel.title} has queries`);
    for (const target of panel.targets!) {
      assert.equal(target.datasource.uid, '${datasource}');
      for (const [name] of target.expr.matchAll(/\b(?:conclave|process)_[a-z_]+/g)) {
        const series = name.replace(/_(bucket|sum|count)$/, '');
        assert.ok(documented.has(series) || documented.has(name) || name.startsWith('process_'), `${panel.title}: ${name} is documented in docs/operations.md`);
      }
    }
  }
  const titles = graphs.map((p) => p.title);
  for (const needed of ['Writes/s', 'Write latency', 'Applied index lag', 'Master', 'Elections and master changes', 'Blob store', 'Event-loop delay']) {
    assert.ok(titles.includes(needed), `a panel "${needed}"`);
  }
});
