// Admission: every stream holds a socket (a file descriptor) for as long as it lasts, so a process
// admits at most maxStreams of them, and at most maxStreamsPerUser for one user. The counts are
// this process's own: the resource they protect is too. A process that ran out of file
// descriptors broke its embedded database for good (3,000 streams of one customer did it).
import { AppError } from '../../errors.ts';
import type { StreamOwner } from './stream.ts';

/** How long a client refused for want of a place is told to wait (Retry-After). */
export const admissionRetryAfterSeconds = 10;

export interface Places {
  /**
   * Takes a place for one more stream of the owner, or throws AppError rate_limited when the user
   * or the process has none left; answers the function that gives it back (once, however often it
   * is called). Synchronous, so that the check and the taking are one step: parallel requests
   * cannot all see the same free place.
   */
  take(owner: StreamOwner): () => void;
  /** Places taken, and the users holding them. */
  readonly admitted: number;
  readonly users: number;
}

export function createPlaces(limits: { maxStreams: number; maxStreamsPerUser: number }): Places {
  let admitted = 0;
  const admittedPerUser = new Map<string, number>();
  return {
    take(owner) {
      const mine = admittedPerUser.get(owner.userId) ?? 0;
      // Connection: close, so that a client hammering the endpoint does not keep the refused
      // connections (and their file descriptors) alive either.
      const refusal = { retryAfterSeconds: admissionRetryAfterSeconds, headers: { connection: 'close' } };
      if (mine >= limits.maxStreamsPerUser) {
        throw new AppError(
          'rate_limited',
          `You have ${mine} live event streams open, the most one user may have; close one before opening another`,
          refusal,
        );
      }
      if (admitted >= limits.maxStreams) {
        throw new AppError(
          'rate_limited',
          'This server holds as many live event streams as it may; retry shortly',
          refusal,
        );
      }
      admitted++;
      admittedPerUser.set(owner.userId, mine + 1);
      let held = true;
      return () => {
        if (!held) return;
        held = false;
        admitted--;
        const left = admittedPerUser.get(owner.userId)! - 1;
        if (left === 0) admittedPerUser.delete(owner.userId);
        else admittedPerUser.set(owner.userId, left);
      };
    },
    get admitted() {
      return admitted;
    },
    get users() {
      return admittedPerUser.size;
    },
  };
}
