import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealPasswordEnvelope } from '../client/envelope';
import { provideCredential, type ProvideCredentialInput } from '../activities/credentials';
import type { Pool, PoolClient } from '../activities/db/pool';
import type { ActivityDeps } from '../activities/deps';
import { TenantKeyCache } from '../activities/kek/tenant-key-cache';
import { describeCurrentKek } from '../activities/keyring';
import { createHealthTestEnv, uniqueId, USERS, upn, type HealthTestEnv } from './health/support';

/**
 * What one provideCredential costs in round trips: every statement it sends to PostgreSQL (counted
 * on the pool and on the clients it hands out) and every HSM call (counted by the KEK provider).
 * Real PostgreSQL and the local KEK. The bounds are the ones the activity is built to: a change that
 * adds a round trip or an unwrap to the create or update path fails here.
 */
describe('provideCredential round trips', () => {
  let env: HealthTestEnv;
  beforeAll(async () => {
    env = await createHealthTestEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  /** A pool whose statements (through pool.query or a checked-out client) are recorded in order. */
  function countingPool(pool: Pool): { pool: Pool; statements: string[] } {
    const statements: string[] = [];
    const record = (q: unknown) => {
      statements.push(typeof q === 'string' ? q : String((q as { text?: string }).text ?? q));
    };
    const wrapClient = (client: PoolClient): PoolClient =>
      new Proxy(client, {
        get(target, prop) {
          if (prop === 'query') {
            return (...args: unknown[]) => {
              record(args[0]);
              return (target.query as (...a: unknown[]) => unknown)(...args);
            };
          }
          const value = Reflect.get(target, prop, target) as unknown;
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    const proxied = new Proxy(pool, {
      get(target, prop) {
        if (prop === 'query') {
          return (...args: unknown[]) => {
            record(args[0]);
            return (target.query as (...a: unknown[]) => unknown)(...args);
          };
        }
        if (prop === 'connect') return async () => wrapClient(await target.connect());
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    return { pool: proxied, statements };
  }

  async function measure(deps: ActivityDeps, input: Omit<ProvideCredentialInput, 'passwordEnvelope'>) {
    const passwordEnvelope = await sealPasswordEnvelope({
      password: USERS.domainJoin.password,
      kek: await describeCurrentKek(deps),
      tenantId: input.tenantId,
      ancId: input.ancId,
      op: input.mode,
    });
    const counting = countingPool(deps.pool);
    const before = deps.kek.provider.stats();
    const stored = await provideCredential({ ...deps, pool: counting.pool }, { ...input, passwordEnvelope });
    const after = deps.kek.provider.stats();
    return {
      stored,
      statements: counting.statements,
      unwraps: after.remoteUnwraps - before.remoteUnwraps,
    };
  }

  const base = (tenantId: string, ancId: string) => ({
    tenantId,
    ancId,
    receivedAtMs: Date.now(),
    nowMs: Date.now(),
    operationId: uniqueId('op'),
    actor: 'steps-test',
    workflowId: `wf-${ancId}`,
  });
  const spec = {
    displayName: 'Steps test',
    adDomainName: 'corp.contoso.test',
    adDomainUsername: upn(USERS.domainJoin.name),
  };

  it('counts statements and HSM calls of a first create, a second create and an update', async () => {
    const cache = new TenantKeyCache({ maxEntries: 100, maxAgeMs: 60_000, maxUses: 1000 });
    const deps: ActivityDeps = { ...env.deps, tenantKeyCache: cache };
    await describeCurrentKek(deps);
    const tenantId = uniqueId('steps');

    const first = await measure(deps, { ...base(tenantId, 'a1'), mode: 'create', spec });
    const second = await measure(deps, { ...base(tenantId, 'a2'), mode: 'create', spec });
    const update = await measure(deps, { ...base(tenantId, 'a1'), mode: 'update' });
    const retry = { ...base(tenantId, 'a1'), mode: 'update' as const };
    const once = await measure(deps, retry);
    const again = await measure(deps, retry);

    const show = (name: string, m: { statements: string[]; unwraps: number }) =>
      `${name}: ${m.statements.length} statements, ${m.unwraps} HSM unwraps\n    ` +
      m.statements.map((s) => s.replace(/\s+/g, ' ').slice(0, 90)).join('\n    ');
    console.log(
      [
        show('create (first ANC of the tenant)', first),
        show('create', second),
        show('update', update),
        show('retry', again),
      ].join('\n'),
    );

    expect(first.stored.credentialVersion).toBe(1);
    expect(second.stored.tenantKeyVersion).toBe(first.stored.tenantKeyVersion);
    expect(update.stored.credentialVersion).toBe(2);
    expect(again.stored).toEqual(once.stored);

    // The envelope's content key is the only unwrap: the tenant key comes from the cache, also right
    // after it was generated.
    expect(first.unwraps).toBe(1);
    expect(second.unwraps).toBe(1);
    expect(update.unwraps).toBe(1);
    // A retry of a stored operation answers from one read, without an unwrap.
    expect(again.unwraps).toBe(0);
    expect(again.statements).toHaveLength(1);

    // Round trips: the operation-id check, BEGIN, the tenant lock, one read under it, the audit
    // lock and chain head, one statement for every write, COMMIT. A tenant's first create adds the
    // key generation (next version, retire, insert, its audit record).
    const bounds = { first: 14, second: 8, update: 8 };
    expect(first.statements.length).toBeLessThanOrEqual(bounds.first);
    expect(second.statements.length).toBeLessThanOrEqual(bounds.second);
    expect(update.statements.length).toBeLessThanOrEqual(bounds.update);
  });
});
