// An engine-room start that a test owns to the end, even when it fails to start.
import { spawnEngine, type EngineProcess } from './engine-process.ts';

/**
 * `engine-room start` on a free port, answered once it listens. A first start on the embedded
 * database runs initdb, slow on a busy machine: it gets 3 minutes, and is killed if it fails, so
 * that it cannot hold the test run open.
 */
export async function startOwnEngine(env: Record<string, string>): Promise<{ server: EngineProcess; baseUrl: string }> {
  const server = spawnEngine(['start'], { PORT: '0', HOST: '127.0.0.1', ...env });
  try {
    const line = await server.waitFor(/listening on http:\/\/[\d.]+:\d+/, 180_000);
    return { server, baseUrl: line.replace('listening on ', '') };
  } catch (err) {
    await server.kill('SIGKILL');
    throw err;
  }
}

