// Where a process spent its CPU: reads a V8 .cpuprofile (node --cpu-prof, or the bench's
// --cpu-prof <dir>) and prints the functions with the most self time, the same grouped by package
// (our src/, each node_modules package, node's internals, GC), and the inclusive time of the
// stages of a request that we care about.
//
//   node bench/profile-summary.ts <file.cpuprofile | directory> [--top 25] [--json]
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  name: string;
  where: string;
  ms: number;
  share: number;
}
export interface ProfileSummary {
  file: string;
  /** Wall time covered by the profile, and the part of it the process was busy (not idle). */
  totalMs: number;
  busyMs: number;
  /** Self time per function, biggest first; shares are of busy time. */
  functions: Row[];
  /** Self time per package / area. */
  packages: Row[];
  /** Inclusive time of chosen stages (a function counts once per sample even when recursive). */
  stages: Row[];
  /** For the biggest native functions (no script of their own): the JS call paths that lead to them. */
  callers: { name: string; paths: { path: string; share: number }[] }[];
}

/** The package or area a script belongs to: src/…, node_modules/<pkg>, node:internal, (gc) … */
export function areaOf(url: string, functionName: string): string {
  if (!url) {
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(idle)' || functionName === '(program)' || functionName === '(root)') return functionName;
    return '(native)';
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  if (url.startsWith('node:')) return 'node (built-in modules)';
  const ours = /\/dist\/(src|bench|test)\/(.*)$/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]!.replace(/\.js$/, '.ts').split('/').slice(0, -1).join('/') || '.'}`;
  return url;
}

function shortWhere(url: string, line: number): string {
  if (!url) return '';
  const nm = /node_modules\/(.*)$/.exec(url);
  const ours = /\/dist\/(.*)$/.exec(url);
  const path = nm ? nm[1]! : ours ? ours[1]!.replace(/\.js$/, '.ts') : url.replace(/^node:/, 'node:');
  return `${path}:${line + 1}`;
}

// Stages of the order path, matched on function name and file, for the inclusive view.
const stageMatchers: { name: string; match: (fn: string, url: string) => boolean }[] = [
  {
    name: 'pg: query path (client + protocol + parsing rows)',
    match: (_fn, url) => /node_modules\/(pg|pg-protocol|pg-pool|pg-types)\//.test(url),
  },
  {
    name: 'fastify: routing, hooks, reply',
    match: (_fn, url) => /node_modules\/(fastify|find-my-way|avvio|light-my-request)\//.test(url),
  },
  {
    name: 'request validation and response serialization (ajv, fast-json-stringify)',
    match: (_fn, url) =>
      /node_modules\/(ajv|fast-json-stringify|@fastify\/fast-json-stringify-compiler|@fastify\/ajv-compiler|fast-uri)\//.test(
        url,
      ),
  },
  { name: 'logging (pino)', match: (_fn, url) => /node_modules\/(pino|pino-std-serializers|sonic-boom)\//.test(url) },
  { name: 'pg-boss (job insert SQL, workers, maintenance)', match: (_fn, url) => /node_modules\/pg-boss\//.test(url) },
  { name: 'prom-client (metrics)', match: (_fn, url) => /node_modules\/prom-client\//.test(url) },
  {
    name: 'helmet / cors / cookie plugins',
    match: (_fn, url) => /node_modules\/(@fastify\/(helmet|cors|cookie)|helmet)\//.test(url),
  },
  { name: 'idempotency (src/platform/idempotency.ts)', match: (_fn, url) => /platform\/idempotency\.js/.test(url) },
  {
    name: 'placing orders in batches (src/modules/orders/place.ts)',
    match: (_fn, url) => /orders\/place\.js/.test(url),
  },
  { name: 'auth hook (token -> principal)', match: (_fn, url) => /platform\/(auth|coalesce)\.js/.test(url) },
  {
    name: 'payment jobs (chargeMany, refundOnce)',
    match: (fn) => fn === 'chargeMany' || fn === 'recordCharges' || fn === 'refundOnce',
  },
  { name: 'sandbox processor', match: (_fn, url) => /payments\/providers\/sandbox\.js/.test(url) },
  {
    name: 'HTTP parsing and sockets (node:_http_*, net, stream)',
    match: (_fn, url) => /^node:(_http_|http|net|stream|internal\/streams|internal\/stream_base)/.test(url),
  },
  { name: 'garbage collector', match: (fn) => fn === '(garbage collector)' },
];

export function summarize(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const selfByNode = new Map<number, number>();
  // timeDeltas[i] is the time since the previous sample; it belongs to the sample before it.
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    selfByNode.set(profile.samples[i]!, (selfByNode.get(profile.samples[i]!) ?? 0) + dt);
  }
  let totalMs = 0,
    idleMs = 0;
  const fnSelf = new Map<string, { name: string; where: string; ms: number }>();
  const areaSelf = new Map<string, number>();
  for (const [id, ms] of selfByNode) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    totalMs += ms;
    if (functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    const key = `${functionName}@${url}:${lineNumber}`;
    const row = fnSelf.get(key) ?? { name: functionName || '(anonymous)', where: shortWhere(url, lineNumber), ms: 0 };
    row.ms += ms;
    fnSelf.set(key, row);
    const area = areaOf(url, functionName);
    areaSelf.set(area, (areaSelf.get(area) ?? 0) + ms);
  }
  const busyMs = totalMs - idleMs;

  // Inclusive stage time: walk each sample's stack once, count each stage at most once per sample.
  const stageMs = new Map<string, number>();
  const stagesOfNode = new Map<number, Set<string>>();
  const stagesOf = (id: number): Set<string> => {
    const known = stagesOfNode.get(id);
    if (known) return known;
    const up = parent.get(id);
    const set = new Set(up === undefined ? [] : stagesOf(up));
    const { functionName, url } = byId.get(id)!.callFrame;
    for (const s of stageMatchers) if (s.match(functionName, url)) set.add(s.name);
    stagesOfNode.set(id, set);
    return set;
  };
  for (const [id, ms] of selfByNode) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    for (const s of stagesOf(id)) stageMs.set(s, (stageMs.get(s) ?? 0) + ms);
  }

  // Who calls the biggest native functions (writev, ...): their nearest JS frames.
  const frameName = (id: number) => {
    const cf = byId.get(id)!.callFrame;
    return `${cf.functionName || '(anonymous)'} ${shortWhere(cf.url, cf.lineNumber)}`.trim();
  };
  const topNative = [...fnSelf.entries()]
    .filter(([, r]) => r.where === '' && !r.name.startsWith('('))
    .sort((a, b) => b[1].ms - a[1].ms)
    .slice(0, 3);
  const callers = topNative.map(([key, row]) => {
    const paths = new Map<string, number>();
    for (const [id, ms] of selfByNode) {
      const cf = byId.get(id)!.callFrame;
      if (`${cf.functionName}@${cf.url}:${cf.lineNumber}` !== key) continue;
      const frames: string[] = [];
      for (let up = parent.get(id); up !== undefined && frames.length < 12; up = parent.get(up)) {
        const url = byId.get(up)!.callFrame.url;
        if (url && !url.startsWith('node:')) frames.push(frameName(up));
        if (frames.length === 2) break;
      }
      const path = frames.join(' <- ') || '(no JS caller)';
      paths.set(path, (paths.get(path) ?? 0) + ms);
    }
    return {
      name: row.name,
      paths: [...paths]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 3)
        .map(([path, ms]) => ({ path, share: row.ms ? ms / row.ms : 0 })),
    };
  });

  const share = (ms: number) => (busyMs > 0 ? ms / busyMs : 0);
  return {
    callers,
    file,
    totalMs,
    busyMs,
    functions: [...fnSelf.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top)
      .map((r) => ({ ...r, share: share(r.ms) })),
    packages: [...areaSelf]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, where: '', ms, share: share(ms) })),
    stages: stageMatchers
      .map((s) => ({ name: s.name, where: '', ms: stageMs.get(s.name) ?? 0, share: share(stageMs.get(s.name) ?? 0) }))
      .sort((a, b) => b.ms - a.ms),
  };
}

export function formatSummary(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)}%`;
  const lines = [
    `${s.file}`,
    `  ${(s.totalMs / 1000).toFixed(1)} s profiled, ${(s.busyMs / 1000).toFixed(1)} s busy (${pct(s.totalMs ? s.busyMs / s.totalMs : 0).trim()} of the time); shares below are of busy time`,
    '',
    '  self time by function',
    ...s.functions.map((r) => `  ${pct(r.share)}  ${r.name}  ${r.where}`),
    '',
    '  self time by package or area',
    ...s.packages.map((r) => `  ${pct(r.share)}  ${r.name}`),
    '',
    '  inclusive time of request stages (a sample counts for every stage on its stack)',
    ...s.stages.map((r) => `  ${pct(r.share)}  ${r.name}`),
    '',
    "  callers of the biggest native functions (nearest frames outside node's own modules)",
    ...s.callers.flatMap((c) => [`  ${c.name}`, ...c.paths.map((p) => `    ${pct(p.share)}  ${p.path}`)]),
  ];
  return lines.join('\n') + '\n';
}

export function profilesIn(path: string): string[] {
  if (statSync(path).isDirectory()) {
    return readdirSync(path)
      .filter((f) => f.endsWith('.cpuprofile'))
      .sort()
      .map((f) => join(path, f));
  }
  return [path];
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: 'string', default: '25' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write('usage: node bench/profile-summary.ts <file.cpuprofile | directory> [--top 25] [--json]\n');
    process.exit(values.help ? 0 : 2);
  }
  const summaries = positionals.flatMap(profilesIn).map((f) => summarize(f, Number(values.top)));
  process.stdout.write(
    values.json ? JSON.stringify(summaries, null, 2) + '\n' : summaries.map(formatSummary).join('\n'),
  );
}
