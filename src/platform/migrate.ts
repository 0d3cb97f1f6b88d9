// Versioned migrations: numbered plain .sql files in src/db/migrations, applied in order. All
// pending files run in one transaction, so a failing migration leaves the database exactly as it
// was. An advisory lock lets several processes start at once against one PostgreSQL.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packageRoot } from './paths.ts';
import type { Db } from './db.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export class MigrationError extends Error {
  readonly migration: string;
  constructor(migration: string, failure: unknown) {
    super(`migration ${migration} failed: ${(failure as Error)?.message ?? String(failure)}`, { cause: failure });
    this.migration = migration;
  }
}

export const migrationsDir = join(packageRoot, 'src', 'db', 'migrations');

export async function loadMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: await readFile(join(dir, file), 'utf8'),
    })),
  );
}

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

/** Applies what is pending and answers the names applied (empty when the database was current). */
export async function migrate(db: Db, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await loadMigrations());
  // Most starts find nothing to do: one read says so, without the lock and the DDL below.
  if (await migrationsCurrent(db, all).catch(() => false)) return [];
  return db.transaction(async (tx) => {
    // 7 is arbitrary; it only has to be the same number in every process.
    await tx.query('SELECT pg_advisory_xact_lock(7, 1)');
    await tx.exec(createTable);
    const done = new Set(
      (await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).map((r) => r.version),
    );
    const applied: string[] = [];
    for (const m of all) {
      if (done.has(m.version)) continue;
      try {
        await tx.exec(m.sql);
      } catch (err) {
        throw new MigrationError(m.name, err);
      }
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      applied.push(m.name);
    }
    return applied;
  });
}

/** True when every migration this code knows has been applied. */
export async function migrationsCurrent(db: Db, migrations: Migration[]): Promise<boolean> {
  const rows = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const done = new Set(rows.map((r) => r.version));
  return migrations.every((m) => done.has(m.version));
}
