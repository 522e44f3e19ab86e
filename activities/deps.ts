import type { Logger } from 'pino';
import type { Config } from '../worker/config';
import type { Pool } from './db/pool';
import type { KekDirectory } from './kek/directory';

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
}
