import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { NativeConnection } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSearchAttributes } from '../../worker/temporal';
import { openStoredCredential } from '../support/credentials';
import { sleep } from '../support/faults';
import { createHarness, type Harness } from '../support/harness';
import { startTemporalProcess, type TemporalProcess } from '../support/temporal-process';

/**
 * The Temporal dev server is stopped and started again (same database file) while two tenants are
 * in their retention window (TENANT_RETENTION=45s): one is purged on its date, the other is
 * reactivated after the restart and restored.
 */
const RETENTION_MS = 45_000;
const DOWN_MS = 15_000;
const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'ops@contoso.test';

describe('Temporal dev server restarted during a retention window (own dev server with a database file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'anc-temporal-'));
  let temporal: TemporalProcess;
  let connection: Connection;
  let native: NativeConnection;
  let h: Harness;

  beforeAll(async () => {
    temporal = await startTemporalProcess(join(dir, 'temporal.db'));
    connection = await Connection.connect({ address: temporal.address });
    await ensureSearchAttributes(connection, 'default');
    native = await NativeConnection.connect({ address: temporal.address });
    const env = {
      client: new Client({ connection, namespace: 'default' }),
      nativeConnection: native,
      namespace: 'default',
    } as unknown as TestWorkflowEnvironment;
    h = await createHarness({
      env,
      config: { tenantRetentionMs: RETENTION_MS },
      healthCheckIntervalMinutes: 7 * 24 * 60,
    });
    await h.startWorker();
  });
  afterAll(async () => {
    await h?.close();
    await native?.close();
    await connection?.close();
    await temporal?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const row = async (tenantId: string) => {
    const { rows } = await h.db.pool.query<{ state: string; purged_at: Date | null; ancs: number; keys: number }>(
      `SELECT state, purged_at, (SELECT count(*) FROM ancs a WHERE a.tenant_id = t.tenant_id)::int AS ancs,
              (SELECT count(*) FROM tenant_keys k WHERE k.tenant_id = t.tenant_id)::int AS keys
         FROM tenants t WHERE tenant_id = $1`,
      [tenantId],
    );
    return rows[0];
  };

  it('the purge happens on time and a reactivation before it restores', async () => {
    const run = Date.now().toString(36);
    const purged = `restart-purge-${run}`;
    const restored = `restart-back-${run}`;
    for (const tenantId of [purged, restored]) {
      await h.sdk.createAnc({ tenantId, ancId: 'anc-1', ...spec, password: `${tenantId}#1`, actor });
    }
    const view = await h.sdk.deactivateTenant(purged, { actor });
    await h.sdk.deactivateTenant(restored, { actor });
    const purgeAt = Date.parse(view.purgeAt ?? '');

    await temporal.stop();
    const stoppedAt = Date.now();
    await sleep(DOWN_MS);
    await temporal.start();
    const downMs = Date.now() - stoppedAt;

    // Reactivation after the restart, inside the window: everything as it was.
    const back = await h.sdk.reactivateTenant(restored, { actor });
    expect(back.state).toBe('active');
    const anc = await h.sdk.getAnc(restored, 'anc-1');
    expect(anc).toMatchObject({ state: 'active', credentialVersion: 1 });
    expect(await openStoredCredential(h, restored, 'anc-1', 1)).toBe(`${restored}#1`);

    // Nothing purged before the date.
    await sleep(Math.max(0, purgeAt - Date.now() - 2000));
    expect(await row(purged)).toMatchObject({ state: 'deactivated', ancs: 1, keys: 1 });

    // Purged on time.
    const deadline = purgeAt + 20_000;
    let r = await row(purged);
    while (r?.state !== 'purged' && Date.now() < deadline) {
      await sleep(250);
      r = await row(purged);
    }
    expect(r).toMatchObject({ state: 'purged', ancs: 0, keys: 0 });
    const lateMs = (r?.purged_at?.getTime() ?? 0) - purgeAt;
    expect(lateMs).toBeGreaterThanOrEqual(0);
    expect(lateMs).toBeLessThan(5_000);
    expect(await row(restored)).toMatchObject({ state: 'active', ancs: 1, keys: 1 });
    console.info(
      `[temporal restart] dev server down ${downMs} ms inside a ${RETENTION_MS / 1000} s window; ` +
        `purged ${lateMs} ms after its date; reactivation after the restart restored the tenant`,
    );
  });
});
