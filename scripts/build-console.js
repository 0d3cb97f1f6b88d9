// Builds the console (console/src, Preact + uPlot, TypeScript) into console/dist with esbuild:
// one JavaScript and one CSS file, minified, named by the hash of their content (so the server can
// let browsers cache them for a year), each with a gzip copy, and manifest.json naming them. Runs
// in npm's `prepare` (npm install, npm ci) and before `npm test`; it takes well under a second,
// so `npm start` never compiles anything.
//
//   node scripts/build-console.js            build
//   node scripts/build-console.js --report   build, and print the sizes
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'console', 'dist');
const assets = join(out, 'assets');

await rm(out, { recursive: true, force: true });
await mkdir(assets, { recursive: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ['console/src/main.tsx'],
  outdir: assets,
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2022', 'chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const manifest = { js: '', css: '', files: {} };
for (const file of Object.keys(result.metafile.outputs)) {
  const name = basename(file);
  const body = await readFile(join(root, file));
  const gzipped = gzipSync(body, { level: 9 });
  await writeFile(join(assets, `${name}.gz`), gzipped);
  manifest.files[name] = { bytes: body.length, gzipBytes: gzipped.length };
  if (name.endsWith('.js')) manifest.js = name;
  if (name.endsWith('.css')) manifest.css = name;
}
await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
if (process.argv.includes('--report')) {
  for (const [name, f] of Object.entries(manifest.files))
    console.log(`${name}\t${f.bytes} bytes\t${f.gzipBytes} gzipped`);
  const total = Object.values(manifest.files).reduce((a, f) => a + f.gzipBytes, 0);
  console.log(`total gzipped: ${total} bytes (${(total / 1024).toFixed(1)} KiB)`);
}
