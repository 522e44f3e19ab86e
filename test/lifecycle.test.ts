import { Context } from '@temporalio/activity';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProvideCredentialInput } from '../activities/credentials';
import { provideCredential } from '../activities/credentials';
import { CredentialOpenError, openCredential } from '../activities/crypto/seal';
import { verifyAuditChain } from '../activities/db/audit';
import { unwrapTenantKey } from '../activities/tenant-keys';
import { sealPasswordEnvelope } from '../client/envelope';
import { AncServiceError } from '../client/sdk';
import { ancWorkflowId } from '../common/ids';
import { createAncUpdate, getAncQuery, updateAncPasswordUpdate } from '../workflows/definitions';
import { openStoredCredential } from './support/credentials';
import { dumpAllTables } from './support/db';

/** Every table except what background health checks append while a test runs. */
const dumpStable = async (h: Harness) =>
  (await dumpAllTables(h.db.pool))
    .split('\n')
    .filter((line) => !line.includes('"check_id"') && !line.includes('"anc.health_checked"'))
    .join('\n');
import { createHarness, startDevServer, type Harness } from './support/harness';

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  organizationalUnit: 'OU=CloudPCs,DC=corp,DC=contoso,DC=test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};
const actor = 'admin@contoso.test';
let seq = 0;
const uniqueId = (p: string) => `${p}-${Date.now().toString(36)}-${(seq++).toString(36)}`;

async function expectServiceError(p: Promise<unknown>, type: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${type}`).toBeInstanceOf(AncServiceError);
  expect((err as AncServiceError).type).toBe(type);
}

describe('ANC credential lifecycle (dev server, PostgreSQL, local KEK)', () => {
  let env: TestWorkflowEnvironment;
  let h: Harness;
  // Fails the first two attempts of a tagged operation after the real activity committed, to
  // prove retries do not duplicate anything.
  const flaky = new Map<string, number>();

  beforeAll(async () => {
    env = await startDevServer();
    h = await createHarness({ env, config: { maxAncsPerTenant: 10 } });
    await h.startWorker({
      activities: {
        provideCredential: async (input: ProvideCredentialInput) => {
          const result = await provideCredential(h.deps, input);
          const tenant = input.tenantId;
          if (tenant.startsWith('flaky') && Context.current().info.attempt <= 2) {
            flaky.set(tenant, (flaky.get(tenant) ?? 0) + 1);
            throw new Error('simulated crash after commit');
          }
          return result;
        },
      },
    });
  });

  afterAll(async () => {
    await h?.close();
    await env?.teardown();
  });

  it('create → update → update → delete, with every version opening to its password', async () => {
    const tenantId = uniqueId('t');
    const ancId = uniqueId('anc');
    const created = await h.sdk.createAnc({ tenantId, ancId, ...spec, password: 'First#Pass1', actor });
    expect(created).toMatchObject({
      state: 'active',
      credentialVersion: 1,
      tenantKeyVersion: 1,
      adDomainName: spec.adDomainName,
    });

    const u1 = await h.sdk.updateAncPassword(tenantId, ancId, 'Second#Pass2', { actor });
    const u2 = await h.sdk.updateAncPassword(tenantId, ancId, 'Third#Pass3', { actor });
    expect([u1.credentialVersion, u2.credentialVersion]).toEqual([2, 3]);
    expect(u2.tenantKeyVersion).toBe(1);

    const view = await h.sdk.getAnc(tenantId, ancId);
    expect(view).toMatchObject({ state: 'active', credentialVersion: 3, tenantKeyVersion: 1 });
    expect(await openStoredCredential(h, tenantId, ancId, 1)).toBe('First#Pass1');
    expect(await openStoredCredential(h, tenantId, ancId, 2)).toBe('Second#Pass2');
    expect(await openStoredCredential(h, tenantId, ancId, 3)).toBe('Third#Pass3');

    expect(await h.sdk.deleteAnc(tenantId, ancId, { actor })).toEqual({ deleted: true });
    const left = await h.db.pool.query(
      `SELECT (SELECT count(*) FROM ancs WHERE tenant_id = $1)::int AS ancs,
              (SELECT count(*) FROM anc_credentials WHERE tenant_id = $1)::int AS creds,
              (SELECT count(*) FROM used_envelopes WHERE tenant_id = $1)::int AS envelopes`,
      [tenantId],
    );
    expect(left.rows[0]).toEqual({ ancs: 0, creds: 0, envelopes: 0 });
    const handle = env.client.workflow.getHandle(ancWorkflowId(tenantId, ancId));
    expect(await handle.result()).toEqual({ finalState: 'deleted' });

    // Deleting again is not an error; the ANC is gone for reads and updates.
    expect(await h.sdk.deleteAnc(tenantId, ancId, { actor })).toEqual({ deleted: false });
    await expectServiceError(h.sdk.getAnc(tenantId, ancId), 'AncNotFound');
    await expectServiceError(h.sdk.updateAncPassword(tenantId, ancId, 'x', { actor }), 'AncNotFound');

    const audit = await h.db.pool.query('SELECT event FROM audit_log WHERE tenant_id = $1 ORDER BY seq', [tenantId]);
    expect(audit.rows.map((r) => r.event)).toEqual(
      expect.arrayContaining(['tenant_key.generated', 'anc.created', 'anc.credential_updated', 'anc.deleted']),
    );
    expect(audit.rows.filter((r) => r.event === 'anc.credential_updated')).toHaveLength(2);
    expect(await verifyAuditChain(h.db.pool, h.deps.config.auditMacKey)).toMatchObject({ ok: true });

    // The ANC can be provided again after deletion (a new workflow run).
    const again = await h.sdk.createAnc({ tenantId, ancId, ...spec, password: 'Fourth#Pass4', actor });
    expect(again).toMatchObject({ state: 'active', credentialVersion: 1 });
  });

  it('an activity that fails twice after committing still leaves exactly one credential version', async () => {
    const tenantId = uniqueId('flaky');
    const ancId = uniqueId('anc');
    const created = await h.sdk.createAnc({ tenantId, ancId, ...spec, password: 'Retry#Pass1', actor });
    expect(created.credentialVersion).toBe(1);
    const updated = await h.sdk.updateAncPassword(tenantId, ancId, 'Retry#Pass2', { actor });
    expect(updated.credentialVersion).toBe(2);
    expect(flaky.get(tenantId)).toBe(4); // two failed attempts for each of the two operations
    const { rows } = await h.db.pool.query(
      `SELECT (SELECT count(*) FROM anc_credentials WHERE tenant_id = $1)::int AS creds,
              (SELECT count(*) FROM tenant_keys WHERE tenant_id = $1)::int AS keys,
              (SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND event IN ('anc.created', 'anc.credential_updated'))::int AS events`,
      [tenantId],
    );
    expect(rows[0]).toEqual({ creds: 2, keys: 1, events: 2 });
    expect(await openStoredCredential(h, tenantId, ancId, 2)).toBe('Retry#Pass2');
  });

  it('50 concurrent creates across 5 tenants: one key per tenant, ten ANCs each, then the limit', async () => {
    const tenants = Array.from({ length: 5 }, () => uniqueId('conc'));
    const results = await Promise.all(
      tenants.flatMap((tenantId) =>
        Array.from({ length: 10 }, (_, i) =>
          h.sdk.createAnc({ tenantId, ancId: `anc-${i}`, ...spec, password: `Pw#${tenantId}#${i}`, actor }),
        ),
      ),
    );
    expect(results.every((r) => r.state === 'active' && r.credentialVersion === 1)).toBe(true);
    const { rows } = await h.db.pool.query(
      `SELECT t.tenant_id,
              (SELECT count(*) FROM tenant_keys k WHERE k.tenant_id = t.tenant_id)::int AS keys,
              (SELECT count(*) FROM ancs a WHERE a.tenant_id = t.tenant_id)::int AS ancs
         FROM tenants t WHERE t.tenant_id = ANY($1) ORDER BY 1`,
      [tenants],
    );
    expect(rows.map((r) => [r.keys, r.ancs])).toEqual(tenants.map(() => [1, 10]));
    const tenantId = tenants[0] as string;
    expect(await openStoredCredential(h, tenantId, 'anc-7', 1)).toBe(`Pw#${tenantId}#7`);
    await expectServiceError(
      h.sdk.createAnc({ tenantId, ancId: 'anc-10', ...spec, password: 'Over#Limit1', actor }),
      'TenantLimitReached',
    );
    const count = await h.db.pool.query('SELECT count(*)::int AS n FROM ancs WHERE tenant_id = $1', [tenantId]);
    expect(count.rows[0].n).toBe(10);
  });

  it("a credential stored for tenant A does not open with tenant B's key", async () => {
    const a = uniqueId('iso-a');
    const b = uniqueId('iso-b');
    await h.sdk.createAnc({ tenantId: a, ancId: 'anc', ...spec, password: 'Tenant#A', actor });
    await h.sdk.createAnc({ tenantId: b, ancId: 'anc', ...spec, password: 'Tenant#B', actor });
    const row = async (t: string) =>
      (
        await h.db.pool.query(
          `SELECT c.sealed, k.wrapped_key, k.kek_version, k.version FROM anc_credentials c
             JOIN tenant_keys k ON k.tenant_id = c.tenant_id AND k.version = c.tenant_key_version WHERE c.tenant_id = $1`,
          [t],
        )
      ).rows[0];
    const ra = await row(a);
    const rb = await row(b);
    const keyB = await unwrapTenantKey(h.deps.kek, rb);
    const keyA = await unwrapTenantKey(h.deps.kek, ra);
    expect(keyA.equals(keyB)).toBe(false);
    // B's key on A's credential, with either tenant's context: refused.
    expect(() =>
      openCredential({ tenantKey: keyB, keyVersion: 1, tenantId: a, ancId: 'anc', sealed: ra.sealed }),
    ).toThrow(CredentialOpenError);
    expect(() =>
      openCredential({ tenantKey: keyB, keyVersion: 1, tenantId: b, ancId: 'anc', sealed: ra.sealed }),
    ).toThrow(CredentialOpenError);
    // Even A's key refuses A's credential presented as B's.
    expect(() =>
      openCredential({ tenantKey: keyA, keyVersion: 1, tenantId: b, ancId: 'anc', sealed: ra.sealed }),
    ).toThrow(CredentialOpenError);
    expect(openCredential({ tenantKey: keyA, keyVersion: 1, tenantId: a, ancId: 'anc', sealed: ra.sealed })).toBe(
      'Tenant#A',
    );
  });

  describe('bad input gets a typed error and changes nothing', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['InvalidUpn (no @)', { adDomainUsername: 'svcDomainJoin' }, 'InvalidUpn'],
      ['InvalidUpn (forbidden character)', { adDomainUsername: 'svc join@corp.contoso.test' }, 'InvalidUpn'],
      ['InvalidDomainName (single label)', { adDomainName: 'contoso' }, 'InvalidDomainName'],
      ['InvalidDomainName (too long)', { adDomainName: `${'a'.repeat(63)}.`.repeat(4) + 'test' }, 'InvalidDomainName'],
      ['InvalidOrganizationalUnit (not a DN)', { organizationalUnit: 'CloudPCs' }, 'InvalidOrganizationalUnit'],
      [
        'InvalidOrganizationalUnit (other domain)',
        { organizationalUnit: 'OU=CloudPCs,DC=fabrikam,DC=test' },
        'InvalidOrganizationalUnit',
      ],
      ['InvalidDisplayName', { displayName: '' }, 'InvalidDisplayName'],
      ['PasswordEmpty', { password: '' }, 'PasswordEmpty'],
      ['PasswordTooLong', { password: 'x'.repeat(257) }, 'PasswordTooLong'],
      ['InvalidTenantId', { tenantId: 'bad tenant!' }, 'InvalidTenantId'],
    ];
    for (const [name, override, type] of cases) {
      it(`${name} (SDK)`, async () => {
        const before = await dumpStable(h);
        await expectServiceError(
          h.sdk.createAnc({
            tenantId: uniqueId('bad'),
            ancId: 'anc',
            ...spec,
            password: 'Good#Pass1',
            actor,
            ...override,
          }),
          type,
        );
        expect(await dumpStable(h)).toBe(before);
      });
    }

    /** Bypasses the SDK's own checks, as a misbehaving caller would. */
    async function rawCreate(tenantId: string, ancId: string, fields: Record<string, unknown>, password: string) {
      const kek = await h.sdk.publicKek();
      const passwordEnvelope = await sealPasswordEnvelope({ password, kek, tenantId, ancId, op: 'create' });
      return env.client.workflow.executeUpdateWithStart(createAncUpdate, {
        args: [{ ...spec, actor, passwordEnvelope, ...fields } as never],
        startWorkflowOperation: new WithStartWorkflowOperation('ancWorkflow', {
          workflowId: ancWorkflowId(tenantId, ancId),
          taskQueue: h.taskQueue,
          args: [{ tenantId, ancId }],
          workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        }),
      });
    }
    const failureType = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      let c: unknown = err;
      while (c && !(c as { type?: string }).type) c = (c as { cause?: unknown }).cause;
      return (c as { type?: string } | undefined)?.type;
    };

    it('the workflow validator rejects what the SDK would have caught, before recording anything', async () => {
      const before = await dumpStable(h);
      const t = uniqueId('raw');
      expect(await failureType(rawCreate(t, 'a1', { adDomainUsername: 'nope' }, 'Good#Pass1'))).toBe('InvalidUpn');
      expect(await failureType(rawCreate(t, 'a2', { adDomainName: 'x' }, 'Good#Pass1'))).toBe('InvalidDomainName');
      expect(await failureType(rawCreate(t, 'a3', { organizationalUnit: 'DC=x' }, 'Good#Pass1'))).toBe(
        'InvalidOrganizationalUnit',
      );
      expect(await failureType(rawCreate(t, 'a4', { passwordEnvelope: 'not-a-jwe' }, 'Good#Pass1'))).toBe(
        'InvalidEnvelope',
      );
      // The password is only visible once opened inside the activity: checked there.
      expect(await failureType(rawCreate(t, 'a5', {}, ''))).toBe('PasswordEmpty');
      expect(await failureType(rawCreate(t, 'a6', {}, 'y'.repeat(257)))).toBe('PasswordTooLong');
      expect(await dumpStable(h)).toBe(before);
    });

    it('AncAlreadyExists, AncNotFound, EnvelopeReused, EnvelopeExpired and a mismatched envelope', async () => {
      const tenantId = uniqueId('dup');
      await h.sdk.createAnc({ tenantId, ancId: 'anc', ...spec, password: 'Good#Pass1', actor });
      const before = await dumpStable(h);
      await expectServiceError(
        h.sdk.createAnc({ tenantId, ancId: 'anc', ...spec, password: 'Other#Pass', actor }),
        'AncAlreadyExists',
      );
      await expectServiceError(h.sdk.updateAncPassword(tenantId, 'missing', 'Good#Pass2', { actor }), 'AncNotFound');

      const kek = await h.sdk.publicKek();
      const handle = env.client.workflow.getHandle(ancWorkflowId(tenantId, 'anc'));
      const envelope = await sealPasswordEnvelope({
        password: 'Once#Only1',
        kek,
        tenantId,
        ancId: 'anc',
        op: 'update',
      });
      await handle.executeUpdate(updateAncPasswordUpdate, { args: [{ actor, passwordEnvelope: envelope }] });
      const afterFirst = await dumpStable(h);
      expect(
        await failureType(
          handle.executeUpdate(updateAncPasswordUpdate, { args: [{ actor, passwordEnvelope: envelope }] }),
        ),
      ).toBe('EnvelopeReused');
      const old = await sealPasswordEnvelope({
        password: 'Too#Old1',
        kek,
        tenantId,
        ancId: 'anc',
        op: 'update',
        now: new Date(Date.now() - 10 * 60_000),
      });
      expect(
        await failureType(handle.executeUpdate(updateAncPasswordUpdate, { args: [{ actor, passwordEnvelope: old }] })),
      ).toBe('EnvelopeExpired');
      const other = await sealPasswordEnvelope({ password: 'Wrong#Anc1', kek, tenantId, ancId: 'other', op: 'update' });
      expect(
        await failureType(
          handle.executeUpdate(updateAncPasswordUpdate, { args: [{ actor, passwordEnvelope: other }] }),
        ),
      ).toBe('InvalidEnvelope');
      expect(await dumpStable(h)).toBe(afterFirst);
      expect(before).not.toBe(afterFirst);
      expect(await handle.query(getAncQuery)).toMatchObject({ credentialVersion: 2 });
    });
  });
});
