// The import rules of src/, checked by dependency-cruiser in `npm run lint` (so in `npm test`).
// Why these rules: docs/ARCHITECTURE.md, "Modules, and which way they import".

/**
 * What each module of src/modules/ may import besides itself, src/platform/, src/errors.ts and
 * src/limits.ts: other modules, or one file of one when nothing else of it is meant. A module
 * missing here may import no other module. The map itself must have no cycle (checked below), so
 * the modules cannot import each other in a circle, however many files a loop would pass through.
 */
const mayImport = {
  accounts: [],
  catalog: [],
  payments: [],
  webhooks: [],
  // The operations overview reads every domain's figures; nothing imports it.
  operations: ['ledger', 'payments', 'webhooks'],
  retention: [],
  console: [],
  messaging: ['accounts'],
  ledger: ['catalog'],
  orders: ['catalog', 'payments', 'ledger'],
};

const moduleOf = (target) => target.split('/')[0];
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// Refuse to load a map whose modules would import each other in a circle.
const visiting = new Set();
const done = new Set();
function visit(name, path) {
  if (done.has(name)) return;
  if (visiting.has(name)) throw new Error(`.dependency-cruiser.js: the modules import each other in a circle: ${[...path, name].join(' -> ')}`);
  visiting.add(name);
  for (const target of mayImport[name] ?? []) visit(moduleOf(target), [...path, name]);
  visiting.delete(name);
  done.add(name);
}
for (const name of Object.keys(mayImport)) visit(name, []);

const listed = Object.keys(mayImport).join('|');

export default {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Files that import each other in a circle (type-only imports included): one of them belongs elsewhere.',
      from: { path: '^(src|console/src)/' },
      to: { circular: true },
    },
    {
      name: 'platform-knows-no-domain',
      severity: 'error',
      comment: 'src/platform/ is what every module uses; it imports no module (a module hands it what it needs at wiring time).',
      from: { path: '^src/platform/' },
      to: { path: ['^src/modules/', '^src/limits\\.ts$'] },
    },
    ...Object.entries(mayImport).map(([name, targets]) => ({
      name: `${name}-imports-only-what-it-may`,
      severity: 'error',
      comment: targets.length === 0
        ? `modules/${name} imports no other module (see mayImport in .dependency-cruiser.js).`
        : `modules/${name} may import only ${targets.join(', ')} of the other modules (see mayImport in .dependency-cruiser.js).`,
      from: { path: `^src/modules/${name}/` },
      to: {
        path: '^src/modules/',
        pathNot: [`^src/modules/${name}/`, ...targets.map((t) => `^src/modules/${escape(t)}${t.endsWith('.ts') ? '$' : '/'}`)],
      },
    })),
    {
      name: 'unlisted-module-imports-no-module',
      severity: 'error',
      comment: 'A module that is not in mayImport (.dependency-cruiser.js) imports no other module: give it its place there first.',
      from: { path: '^src/modules/([^/]+)/', pathNot: `^src/modules/(${listed})/` },
      to: { path: '^src/modules/', pathNot: '^src/modules/$1/' },
    },
    {
      name: 'wiring-is-on-top',
      severity: 'error',
      comment: 'app.ts, worker.ts, server.ts, cli.ts and client.ts wire the modules together; nothing below them imports them.',
      from: { path: '^src/(modules|platform)/' },
      to: { path: '^src/(app|worker|server|cli|client)\\.ts$' },
    },
    {
      name: 'src-imports-no-test-code',
      severity: 'error',
      comment: 'The service never loads tests, benchmarks or scripts.',
      from: { path: '^src/' },
      to: { path: '^(test|bench|scripts)/' },
    },
    {
      name: 'src-imports-no-dev-dependency',
      severity: 'error',
      comment: 'A production install has no devDependencies: what src/ loads at run time must be a dependency.',
      from: { path: '^src/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'every-import-resolves',
      severity: 'error',
      comment: 'An import the checker cannot resolve would pass every rule above unseen.',
      from: { path: '^src/' },
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: two modules whose types import each other are still tied in a circle.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Resolve packages as Node does for an ES module (some, typebox say, export nothing to require).
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default'] },
  },
};
