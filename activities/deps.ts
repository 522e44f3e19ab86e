import type { Logger } from 'pino';
import type { Config } from '../worker/config';
import type { AuditAnchorSigner } from './audit-anchor';
import type { Pool } from './db/pool';
import type { KekDirectory } from './kek/directory';
import type { TenantKeyCache } from './kek/tenant-key-cache';

/** What activities need from the outside world; the worker builds it once, tests build their own. */
export interface ActivityDeps {
  pool: Pool;
  kek: KekDirectory;
  config: Pick<
    Config,
    | 'auditMacKey'
    | 'maxAncsPerTenant'
    | 'envelopeMaxAgeSeconds'
    | 'tenantRetentionMs'
    | 'disableUnreferencedKekVersions'
    | 'ldap'
  >;
  logger: Logger;
  /** Unwrapped tenant keys kept for a short while (absent or disabled: every use unwraps). */
  tenantKeyCache?: TenantKeyCache;
  /** Signs the audit chain's head (audit anchors); absent: anchoring fails and retries. */
  auditAnchor?: AuditAnchorSigner;
}
