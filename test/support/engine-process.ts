// Runs the real `engine-room` command as a child process, for tests that kill and restart it.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { packageRoot } from '../../src/platform/paths.ts';

export interface EngineProcess {
  child: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves when stderr contains text (or rejects when the process exits first / after timeoutMs). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<string>;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export function spawnEngine(args: string[], env: Record<string, string>): EngineProcess {
  const child = spawn(process.execPath, [join(packageRoot, 'src', 'cli.ts'), ...args], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdout!.resume();
  const exited = once(child, 'exit');
  return {
    child,
    stderr: () => err,
    async waitFor(text, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const match = typeof text === 'string' ? (err.includes(text) ? text : null) : (text.exec(err)?.[0] ?? null);
        if (match !== null) return match;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`engine exited before "${text}":\n${err}`);
        if (Date.now() > end) throw new Error(`timed out waiting for "${text}":\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code] = await exited;
      return code as number | null;
    },
  };
}

/** Starts `engine-room start` and answers it with its base URL once it listens. */
export async function startEngine(env: Record<string, string>): Promise<{ engine: EngineProcess; baseUrl: string }> {
  const engine = spawnEngine(['start'], { PORT: '0', HOST: '127.0.0.1', ...env });
  const line = await engine.waitFor(/listening on http:\/\/[\d.]+:\d+/, 60_000);
  return { engine, baseUrl: line.replace('listening on ', '') };
}
