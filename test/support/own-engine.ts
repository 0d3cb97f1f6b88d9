// An engine-room start that a test owns to the end, even when it fails to start.
import { startEngine, type EngineProcess } from './engine-process.ts';

/**
 * `engine-room start` on a free port, answered once it listens; a start that fails is killed
 * (startEngine), so that it cannot hold the test run open.
 */
export async function startOwnEngine(env: Record<string, string>): Promise<{ server: EngineProcess; baseUrl: string }> {
  const { engine, baseUrl } = await startEngine(env);
  return { server: engine, baseUrl };
}
