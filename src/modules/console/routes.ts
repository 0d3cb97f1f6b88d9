// /console: the staff console, a single-page app served by this process from console/dist (built
// by scripts/build-console.js at npm install and before the tests; nothing is compiled at start).
// Its files are read once, kept in memory, named by their hash and cached by browsers for a year;
// the page itself (/console and every path under it, which the app routes) is never cached, so a
// new release is picked up on the next load. It reads and acts only through the public API, with
// the session cookie; the strict CSP of platform/http.ts applies (no inline script).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from '../../platform/paths.ts';
import { AppError } from '../../errors.ts';

export const consoleDir = join(packageRoot, 'console', 'dist');

interface Asset {
  body: Buffer;
  gzip: Buffer;
  type: string;
}
interface Built {
  index: string;
  assets: Map<string, Asset>;
}

const types: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8' };

async function loadBuild(dir: string): Promise<Built | null> {
  let manifest: { js: string; css: string; files: Record<string, unknown> };
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  } catch {
    return null;
  }
  const assets = new Map<string, Asset>();
  for (const name of Object.keys(manifest.files)) {
    const type = types[name.split('.').pop() ?? ''];
    if (!type) continue;
    assets.set(name, {
      body: await readFile(join(dir, 'assets', name)),
      gzip: await readFile(join(dir, 'assets', `${name}.gz`)),
      type,
    });
  }
  const index = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Engine Room console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/assets/${manifest.css}">
<script type="module" src="/console/assets/${manifest.js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>The Engine Room console needs JavaScript.</noscript>
</body>
</html>
`;
  return { index, assets };
}

const missing = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Engine Room console: not built</title></head>
<body><main><h1>The console is not built</h1>
<p>Its files are made at install time. Run <code>npm run build:console</code> (or <code>npm install</code>) in the Engine Room directory, then reload this page.</p>
<p>The API itself works: see <a href="/docs">/docs</a>.</p></main></body></html>
`;

function acceptsGzip(request: FastifyRequest): boolean {
  return /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
}

export async function consoleRoutes(app: FastifyInstance, options: { dir?: string } = {}): Promise<void> {
  const built = await loadBuild(options.dir ?? consoleDir);
  const config = { access: 'public' as const };
  const schema = { hide: true };

  const page = async (_request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-cache');
    if (!built) return reply.code(503).type('text/html; charset=utf-8').send(missing);
    return reply.type('text/html; charset=utf-8').send(built.index);
  };
  app.get('/console', { config, schema }, page);
  app.get('/console/*', { config, schema }, page);

  app.get<{ Params: { file: string } }>('/console/assets/:file', { config, schema }, async (request, reply) => {
    const asset = built?.assets.get(request.params.file);
    if (!asset) throw new AppError('not_found', 'No such console file');
    reply
      .header('cache-control', 'public, max-age=31536000, immutable')
      .header('vary', 'accept-encoding')
      .type(asset.type);
    if (acceptsGzip(request)) return reply.header('content-encoding', 'gzip').send(asset.gzip);
    return reply.send(asset.body);
  });
}
