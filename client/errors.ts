import {
  ActivityFailure,
  ApplicationFailure,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { isErrorType, type ErrorType } from '../common/errors';

/** Every error the SDK throws. `type` is one of the service's error types, or a transport kind. */
export class AncServiceError extends Error {
  constructor(
    /** KekUntrusted: the service's published key failed this client's checks; nothing was sent. */
    readonly type: ErrorType | 'ServiceUnavailable' | 'Timeout' | 'KekUntrusted',
    message: string,
  ) {
    super(message);
    this.name = 'AncServiceError';
  }

  /** Bad input or a refused request: retrying the same call cannot succeed. */
  get permanent(): boolean {
    return this.type !== 'ServiceUnavailable' && this.type !== 'Timeout';
  }
}

/** Walks a Temporal error's cause chain for the service's ApplicationFailure. */
export function findApplicationFailure(err: unknown): ApplicationFailure | undefined {
  let current: unknown = err;
  for (let depth = 0; current && depth < 10; depth++) {
    if (current instanceof ApplicationFailure && isErrorType(current.type)) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Maps what Temporal throws to a typed SDK error; anything unexpected passes through unchanged. */
export function toServiceError(err: unknown): unknown {
  if (err instanceof AncServiceError) return err;
  const failure = findApplicationFailure(err);
  if (failure && isErrorType(failure.type)) return new AncServiceError(failure.type, failure.message);
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) {
    return new AncServiceError('Timeout', 'the service did not answer in time; the request may still complete');
  }
  if (err instanceof WorkflowUpdateFailedError || err instanceof WorkflowFailedError) {
    const cause = err.cause;
    if (cause instanceof ActivityFailure) {
      return new AncServiceError('ServiceUnavailable', 'the service could not complete the request in time; try again');
    }
  }
  if (isGone(err)) return new AncServiceError('AncNotFound', 'the ANC does not exist');
  return err;
}

/** The workflow no longer runs (deleted, purged) or never existed. */
export function isGone(err: unknown): boolean {
  if (err instanceof WorkflowNotFoundError) return true;
  const message = String((err as Error)?.message ?? '');
  return /workflow (execution )?(already completed|not found)/i.test(message);
}
