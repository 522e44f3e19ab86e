import type { ErrorType } from '../common/errors';

/** Active Directory's longest password, in UTF-16 code units; the service enforces the same. */
export const MAX_PASSWORD_LENGTH = 256;

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
