import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import Fastify from 'fastify';
import fc from 'fast-check';
import { ConfigError, loadConfig, productionRefusals, productionWarnings } from '../src/config.ts';
import { packageRoot } from '../src/platform/paths.ts';

/** Asserts that the value is refused with a ConfigError of one line that names the variable. */
function refuses(env: Record<string, string>, variable: string): void {
  assert.throws(
    () => loadConfig(env),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `${JSON.stringify(env)} throws a ConfigError, not ${String(err)}`);
      assert.ok(err.message.includes(variable), `"${err.message}" names ${variable}`);
      assert.ok(!err.message.includes('\n'), `"${err.message}" is one line`);
      return true;
    },
    `${JSON.stringify(env)} is refused`,
  );
}

/** The settings of the foundation (server, database, accounts) and their defaults. */
const foundationDefaults = {
  port: 3000,
  host: '127.0.0.1',
  databaseUrl: undefined,
  dataDir: './.engine-room',
  databasePoolSize: 10,
  adminEmail: undefined,
  adminPassword: undefined,
  logLevel: 'info',
  corsOrigins: [],
  sessionTtlSeconds: 7 * 24 * 3600,
  loginMaxFailuresPerAccountAndClient: 10,
  loginMaxFailuresPerAccount: 100,
  loginMaxFailuresPerClient: 50,
  loginWindowSeconds: 15 * 60,
  signupMaxPerClient: 20,
  signupWindowSeconds: 3600,
  requestTimeoutSeconds: 30,
  keepAliveTimeoutSeconds: 72,
  trustProxy: false,
  shutdownTimeoutSeconds: 10,
  secureCookies: true,
};

function pick(config: object, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, (config as Record<string, unknown>)[k]]));
}

describe('configuration from the environment', () => {
  it('has working defaults for everything: embedded database, port 3000, local host, CORS off', () => {
    const config = loadConfig({});
    assert.deepEqual(pick(config, Object.keys(foundationDefaults)), foundationDefaults);
    // Every setting has a value (or is deliberately unset) without a single variable.
    for (const [key, value] of Object.entries(config)) {
      assert.ok(value !== null && !Number.isNaN(value), `${key} has a default`);
    }
  });

  it('treats an empty variable as unset', () => {
    const config = loadConfig({
      PORT: '',
      LOG_LEVEL: '',
      DATABASE_URL: '',
      ADMIN_EMAIL: '',
      ADMIN_PASSWORD: '',
      TRUST_PROXY: '',
      CORS_ORIGINS: '',
    });
    assert.equal(config.port, 3000);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.adminEmail, undefined);
    assert.equal(config.adminPassword, undefined);
    assert.equal(config.trustProxy, false);
    assert.deepEqual(config.corsOrigins, []);
  });

  it('has rate limits and load shedding on by default, and reads their settings', () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.rateLimits, {
      enabled: true,
      windowSeconds: 60,
      readMax: 1200,
      writeMax: 300,
      authMax: 30,
      syncMs: 200,
      localSharePercent: 10,
    });
    assert.deepEqual(
      [
        defaults.shedTargetWaitMs,
        defaults.shedEventLoopDelayMs,
        defaults.shedMaxInFlight,
        defaults.shedSlowUploadsPerClient,
      ],
      [500, 500, 2000, 32],
    );
    const set = loadConfig({
      RATE_LIMITS: 'off',
      RATE_LIMIT_WINDOW_SECONDS: '10',
      RATE_LIMIT_READ_MAX: '5',
      RATE_LIMIT_WRITE_MAX: '4',
      RATE_LIMIT_AUTH_MAX: '3',
      RATE_LIMIT_SYNC_MS: '50',
      RATE_LIMIT_LOCAL_SHARE_PERCENT: '25',
      SHED_TARGET_WAIT_MS: '250',
      SHED_EVENT_LOOP_DELAY_MS: '0',
      SHED_MAX_IN_FLIGHT: '7',
      SHED_SLOW_UPLOADS_PER_CLIENT: '0',
    });
    assert.deepEqual(set.rateLimits, {
      enabled: false,
      windowSeconds: 10,
      readMax: 5,
      writeMax: 4,
      authMax: 3,
      syncMs: 50,
      localSharePercent: 25,
    });
    assert.deepEqual(
      [set.shedTargetWaitMs, set.shedEventLoopDelayMs, set.shedMaxInFlight, set.shedSlowUploadsPerClient],
      [250, 0, 7, 0],
    );
    assert.throws(() => loadConfig({ SHED_MAX_IN_FLIGHT: '0' }), /SHED_MAX_IN_FLIGHT must be a whole number from 1/);
    assert.throws(() => loadConfig({ RATE_LIMIT_READ_MAX: '0' }), /RATE_LIMIT_READ_MAX must be a whole number from 1/);
    assert.throws(() => loadConfig({ RATE_LIMIT_LOCAL_SHARE_PERCENT: '101' }), /RATE_LIMIT_LOCAL_SHARE_PERCENT/);
  });

  it('reads every variable it is given', () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '0.0.0.0',
      DATABASE_URL: 'postgresql://u@db.internal:5432/shop',
      DATA_DIR: '/var/lib/er',
      DATABASE_POOL_SIZE: '4',
      ADMIN_EMAIL: 'ops@shop.example',
      ADMIN_PASSWORD: 'a long admin secret',
      LOG_LEVEL: 'warn',
      CORS_ORIGINS: 'https://shop.example, http://localhost:5173',
      SESSION_TTL_SECONDS: '3600',
      LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT: '4',
      LOGIN_MAX_FAILURES_PER_ACCOUNT: '5',
      LOGIN_MAX_FAILURES_PER_CLIENT: '20',
      LOGIN_WINDOW_SECONDS: '60',
      SIGNUP_MAX_PER_CLIENT: '7',
      SIGNUP_WINDOW_SECONDS: '120',
      REQUEST_TIMEOUT_SECONDS: '15',
      KEEP_ALIVE_TIMEOUT_SECONDS: '65',
      TRUST_PROXY: '10.0.0.0/8',
      SHUTDOWN_TIMEOUT_SECONDS: '0',
      SECURE_COOKIES: 'off',
    });
    assert.deepEqual(pick(config, Object.keys(foundationDefaults)), {
      port: 0,
      host: '0.0.0.0',
      databaseUrl: 'postgresql://u@db.internal:5432/shop',
      dataDir: '/var/lib/er',
      databasePoolSize: 4,
      adminEmail: 'ops@shop.example',
      adminPassword: 'a long admin secret',
      logLevel: 'warn',
      corsOrigins: ['https://shop.example', 'http://localhost:5173'],
      sessionTtlSeconds: 3600,
      loginMaxFailuresPerAccountAndClient: 4,
      loginMaxFailuresPerAccount: 5,
      loginMaxFailuresPerClient: 20,
      loginWindowSeconds: 60,
      signupMaxPerClient: 7,
      signupWindowSeconds: 120,
      requestTimeoutSeconds: 15,
      keepAliveTimeoutSeconds: 65,
      trustProxy: ['10.0.0.0/8'],
      shutdownTimeoutSeconds: 0,
      secureCookies: false,
    });
  });

  it('accepts the usual spellings of booleans', () => {
    for (const yes of ['1', 'true', 'TRUE', 'yes', 'on'])
      assert.equal(loadConfig({ SECURE_COOKIES: yes }).secureCookies, true, yes);
    for (const no of ['0', 'false', 'No', 'off'])
      assert.equal(loadConfig({ SECURE_COOKIES: no }).secureCookies, false, no);
  });

  it('takes TRUST_PROXY as the addresses and ranges of the proxies, and refuses "true" and hop counts', () => {
    for (const no of ['0', 'false', 'off']) assert.equal(loadConfig({ TRUST_PROXY: no }).trustProxy, false, no);
    assert.deepEqual(
      loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1,::1,fd00::/8,loopback,uniquelocal' }).trustProxy,
      ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', 'loopback', 'uniquelocal'],
    );
    // Both would believe an X-Forwarded-For that a client wrote: refused, naming the form to use.
    for (const unsafe of ['true', 'yes', 'on', '1', '2']) {
      refuses({ TRUST_PROXY: unsafe }, 'TRUST_PROXY');
      assert.throws(() => loadConfig({ TRUST_PROXY: unsafe }), /10\.0\.0\.0\/8/);
    }
    for (const bad of ['10.0.0.0/33', '10.0.0.300', 'proxy.internal', '10.0.0.1/8/9', '::1/129', ',', 'maybe'])
      refuses({ TRUST_PROXY: bad }, 'TRUST_PROXY');
  });

  it('refuses a TRUST_PROXY that trusts every address, or every public one, in one line naming it', () => {
    const everyone = [
      '0.0.0.0/0',
      '::/0',
      '1.2.3.4/0',
      '0.0.0.0/1,128.0.0.0/1',
      '::/1,8000::/1',
      '::ffff:0.0.0.0/96',
      '::/64',
      // Every public IPv4 address, private ranges left out: still every client that matters.
      '1.0.0.0/8,2.0.0.0/7,4.0.0.0/6,8.0.0.0/7,11.0.0.0/8,12.0.0.0/6,16.0.0.0/4,32.0.0.0/3,64.0.0.0/2,128.0.0.0/1',
      '2000::/3',
      '10.0.0.0/8,2000::/4,3000::/4',
    ];
    for (const value of everyone) {
      refuses({ TRUST_PROXY: value }, 'TRUST_PROXY');
      assert.throws(() => loadConfig({ TRUST_PROXY: value }), /trusts every public IPv[46] address/, value);
    }
    for (const fine of [
      '0.0.0.0/2',
      '10.0.0.0/8,172.16.0.0/12,192.168.0.0/16',
      '2001:db8::/32',
      'fc00::/7',
      '::ffff:10.0.0.0/104',
      '0.0.0.0',
      '::',
    ]) {
      assert.ok(loadConfig({ TRUST_PROXY: fine }).trustProxy, fine);
    }
  });

  it('no TRUST_PROXY it accepts stops Fastify from starting', () => {
    const start = (value: string) => {
      let trustProxy: false | string[];
      try {
        trustProxy = loadConfig({ TRUST_PROXY: value }).trustProxy;
      } catch (err) {
        assert.ok(err instanceof ConfigError, `${value}: ${String(err)}`);
        return;
      }
      void Fastify({ trustProxy });
    };
    for (const value of [
      '0.0.0.0/00',
      '10.0.0.0/08',
      '10.0.0.0/008',
      '010.0.0.1',
      'fe80::1%eth0',
      'fe80::1%eth0/64',
      '::ffff:1.2.3.4/120',
      '1::/0',
      'loopback,0.0.0.0/0',
    ])
      start(value);
    const octet = fc.integer({ min: 0, max: 255 });
    const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
    const v6 = fc
      .array(
        fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16)),
        { minLength: 8, maxLength: 8 },
      )
      .map((g) => g.join(':'));
    const entry = fc
      .tuple(
        fc.oneof(v4, v6, fc.constantFrom('::', '::1', '::ffff:10.1.2.3')),
        fc.option(fc.integer({ min: 0, max: 130 }), { nil: undefined }),
      )
      .map(([address, prefix]) => (prefix === undefined ? address : `${address}/${prefix}`));
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 4 }), (entries) => {
        start(entries.join(','));
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a METRICS_TOKEN too short to be a secret, without echoing it', () => {
    refuses({ METRICS_TOKEN: 'short-token' }, 'METRICS_TOKEN');
    refuses({ METRICS_TOKEN: 'a token with spaces in it' }, 'METRICS_TOKEN');
    assert.throws(
      () => loadConfig({ METRICS_TOKEN: 'short-token' }),
      (err: Error) => !err.message.includes('short-token'),
    );
    const config = loadConfig({ METRICS_TOKEN: ' 0123456789abcdef ' });
    assert.equal(config.metricsToken, '0123456789abcdef');
    assert.equal(config.metrics, true);
    assert.equal(loadConfig({ METRICS: 'off' }).metrics, false);
  });

  it('refuses a PORT that is not a whole number from 0 to 65535', () => {
    for (const bad of ['abc', '-1', '65536', '3000.5', '3e3', '80 80', '0x50']) refuses({ PORT: bad }, 'PORT');
  });

  it('refuses an unknown LOG_LEVEL', () => {
    for (const bad of ['verbose', 'INFO ', 'warning']) refuses({ LOG_LEVEL: bad }, 'LOG_LEVEL');
  });

  it('refuses a DATABASE_URL that is not a postgres URL', () => {
    for (const bad of ['mysql://root@localhost/shop', 'localhost:5432', 'file:./db'])
      refuses({ DATABASE_URL: bad }, 'DATABASE_URL');
  });

  it('refuses an ADMIN_EMAIL that is not an email address', () => {
    for (const bad of ['admin', 'admin@', '@example.com', 'two words@example.com'])
      refuses({ ADMIN_EMAIL: bad }, 'ADMIN_EMAIL');
  });

  it('refuses an ADMIN_PASSWORD shorter than 8 or longer than 256 characters, without echoing it', () => {
    refuses({ ADMIN_PASSWORD: 'short12' }, 'ADMIN_PASSWORD');
    refuses({ ADMIN_PASSWORD: 'x'.repeat(257) }, 'ADMIN_PASSWORD');
    assert.throws(
      () => loadConfig({ ADMIN_PASSWORD: 'secret7' }),
      (err: Error) => !err.message.includes('secret7'),
    );
  });

  it('refuses CORS_ORIGINS entries that are not origins', () => {
    for (const bad of [
      'shop.example',
      'https://shop.example/',
      'https://shop.example/path',
      'ftp://shop.example',
      'https://ok.example,nope',
    ]) {
      refuses({ CORS_ORIGINS: bad }, 'CORS_ORIGINS');
    }
  });

  it('refuses a boolean that is neither true nor false', () => {
    refuses({ SECURE_COOKIES: 'nah' }, 'SECURE_COOKIES');
  });

  it('refuses numbers out of range for the other numeric settings', () => {
    refuses({ DATABASE_POOL_SIZE: '0' }, 'DATABASE_POOL_SIZE');
    refuses({ SESSION_TTL_SECONDS: '59' }, 'SESSION_TTL_SECONDS');
    refuses({ LOGIN_MAX_FAILURES_PER_ACCOUNT: '0' }, 'LOGIN_MAX_FAILURES_PER_ACCOUNT');
    refuses({ LOGIN_MAX_FAILURES_PER_CLIENT: 'many' }, 'LOGIN_MAX_FAILURES_PER_CLIENT');
    refuses({ LOGIN_WINDOW_SECONDS: '86401' }, 'LOGIN_WINDOW_SECONDS');
    refuses({ SHUTDOWN_TIMEOUT_SECONDS: '601' }, 'SHUTDOWN_TIMEOUT_SECONDS');
  });

  it('refuses a non-number, a negative or a huge number for every numeric variable, naming it', () => {
    // Read from the source, so a variable added later is covered without a new line here.
    const source = readFileSync(join(packageRoot, 'src', 'config.ts'), 'utf8');
    const numeric = new Set([...source.matchAll(/intVar\(env, '([A-Z0-9_]+)'/g)].map((m) => m[1]!));
    assert.ok(numeric.has('PORT') && numeric.size >= 8, `found only ${[...numeric].join(', ')}`);
    for (const name of numeric) {
      refuses({ [name]: 'lots' }, name);
      refuses({ [name]: '-1' }, name);
      refuses({ [name]: '99999999999' }, name);
    }
    const booleans = [...source.matchAll(/boolVar\(env, '([A-Z0-9_]+)'/g)].map((m) => m[1]!);
    assert.ok(booleans.includes('SECURE_COOKIES'));
    for (const name of booleans) refuses({ [name]: 'perhaps' }, name);
  });

  it('documents every variable it reads in the README configuration table', () => {
    const source = readFileSync(join(packageRoot, 'src', 'config.ts'), 'utf8');
    const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
    const names = new Set(
      [...source.matchAll(/env\.([A-Z][A-Z0-9_]+)|Var\(env, '([A-Z][A-Z0-9_]+)'/g)].map((m) => (m[1] ?? m[2])!),
    );
    assert.ok(names.has('PORT') && names.has('DATABASE_URL'), [...names].join(', '));
    const missing = [...names].filter((name) => !readme.includes(`| \`${name}\` |`));
    assert.deepEqual(missing, [], 'variables without a row in the README table');
  });

  it('answers a frozen object that nothing can change afterwards', () => {
    const config = loadConfig({ PORT: '4000' });
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as { port: number }).port = 1;
    }, TypeError);
    assert.equal(config.port, 4000);
  });
});

/** A production configuration with what production needs (nothing is connected to: these are only loaded). */
const safeProduction = {
  NODE_ENV: 'production',
  DATABASE_URL: 'postgres://shop@db.internal/shop',
  METRICS_TOKEN: '0123456789abcdef0123',
  SMTP_URL: 'smtp://mail.internal:587',
};

describe('the dev mailbox setting and what production refuses', () => {
  it('has the dev mailbox on by default, off under NODE_ENV=production, and DEV_MAILBOX turns it either way', () => {
    assert.equal(loadConfig({}).devMailbox, true);
    assert.equal(loadConfig({ DEV_MAILBOX: 'false' }).devMailbox, false);
    assert.equal(loadConfig({ NODE_ENV: 'production' }).devMailbox, false);
    assert.equal(loadConfig({ NODE_ENV: 'production', DEV_MAILBOX: 'true' }).devMailbox, true);
    refuses({ DEV_MAILBOX: 'sometimes' }, 'DEV_MAILBOX');
  });

  it('refuses DEV_MAILBOX=true under NODE_ENV=production, in one line naming it, and nothing outside production', () => {
    assert.deepEqual(productionRefusals(loadConfig(safeProduction)), []);
    assert.deepEqual(productionRefusals(loadConfig({ ...safeProduction, DEV_MAILBOX: 'false' })), []);
    assert.deepEqual(productionRefusals(loadConfig({ DEV_MAILBOX: 'true' })), []);
    const refused = productionRefusals(loadConfig({ ...safeProduction, DEV_MAILBOX: 'true' }));
    assert.equal(refused.length, 1);
    assert.match(refused[0]!, /^DEV_MAILBOX=true is refused under NODE_ENV=production: .*SMTP_URL/);
    assert.doesNotMatch(refused[0]!, /\n/);
  });

  it('engine-room start refuses it too, before it opens anything, and says why in one line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'er-refusal-'));
    try {
      const dataDir = join(dir, 'data');
      const run = spawnSync(process.execPath, [join(packageRoot, 'src', 'cli.ts'), 'start'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 120_000,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: dir,
          NODE_ENV: 'production',
          METRICS_TOKEN: safeProduction.METRICS_TOKEN,
          SMTP_URL: 'smtp://127.0.0.1:1',
          DEV_MAILBOX: 'true',
          DATA_DIR: dataDir,
          PORT: '0',
          LOG_LEVEL: 'silent',
        },
      });
      assert.equal(run.status, 1, run.stderr);
      assert.match(
        run.stderr,
        /^engine-room: cannot start: DEV_MAILBOX=true is refused under NODE_ENV=production: [^\n]*\n$/,
      );
      assert.equal(existsSync(dataDir), false, 'the embedded database was not even created');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('what a production start refuses, and what it only warns about', () => {
  const safe = safeProduction;

  it('refuses nothing outside production, and nothing in a production with what it needs', () => {
    assert.deepEqual(productionRefusals(loadConfig({})), []);
    assert.deepEqual(productionWarnings(loadConfig({ HOST: '0.0.0.0', SECURE_COOKIES: 'false' })), []);
    assert.deepEqual(productionRefusals(loadConfig(safe)), []);
    assert.deepEqual(
      productionRefusals(loadConfig({ ...safe, METRICS_TOKEN: '', METRICS: 'off' })),
      [],
      'metrics off need no token',
    );
    assert.deepEqual(productionWarnings(loadConfig(safe)), [], 'on loopback');
  });

  for (const [what, env, variable] of [
    ['metrics that answer without a credential', { METRICS_TOKEN: '' }, 'METRICS_TOKEN'],
    ['mail that would never reach customers', { SMTP_URL: '' }, 'SMTP_URL'],
    [
      'webhooks that may reach the internal network',
      { WEBHOOK_ALLOW_PRIVATE_URLS: 'true' },
      'WEBHOOK_ALLOW_PRIVATE_URLS',
    ],
  ] as const) {
    it(`refuses ${what}, in one line naming ${variable}`, () => {
      const refusals = productionRefusals(loadConfig({ ...safe, ...env }));
      assert.equal(refusals.length, 1, refusals.join(' / '));
      assert.match(refusals[0]!, new RegExp(`^${variable} `));
      assert.doesNotMatch(refusals[0]!, /\n/);
    });
  }

  it('only warns about TRUST_PROXY unset on a public HOST (clients may connect directly) and about SECURE_COOKIES=false', () => {
    const config = loadConfig({ ...safe, HOST: '0.0.0.0', SECURE_COOKIES: 'false' });
    assert.deepEqual(productionRefusals(config), []);
    const warnings = productionWarnings(config);
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /TRUST_PROXY is not set/);
    assert.match(warnings[1]!, /SECURE_COOKIES/);
    assert.deepEqual(productionWarnings(loadConfig({ ...safe, HOST: '0.0.0.0', TRUST_PROXY: '10.0.0.0/8' })), []);
    assert.deepEqual(productionWarnings(loadConfig({ ...safe, HOST: '::1' })), []);
  });
});
