/**
 * ANC health checks against the REAL test directory (OpenLDAP + ppolicy, started by
 * `bash stack/up.sh`, see stack/ldap/up.sh) and the stack's PostgreSQL. Nothing here is skipped:
 * a directory that is not running fails the suite with a message saying so.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAncHealth, latestHealthCheck, type CheckAncHealthInput } from '../../activities/health/check';
import { verifyAuditChain } from '../../activities/db/audit';
import { deleteAncData } from '../../activities/credentials';
import type { ActivityDeps } from '../../activities/deps';
import { dumpAllTables } from '../support/db';
import {
  adminClient,
  CLOUD_PCS_OU,
  createAnc,
  createHealthTestEnv,
  generalizedTime,
  setAttribute,
  setDirectoryPassword,
  SUFFIX,
  uniqueId,
  updateAncPassword,
  upn,
  userDn,
  USERS,
  type HealthTestEnv,
} from './support';

const TENANT = 'contoso-health';
let env: HealthTestEnv;

beforeAll(async () => {
  // Fails (with the reason) when the directory is not up; see adminClient().
  const admin = await adminClient();
  await admin.unbind();
  env = await createHealthTestEnv();
});

afterAll(async () => {
  await env?.close();
});

function checkInput(ancId: string, checkId = uniqueId('check')): CheckAncHealthInput {
  return { tenantId: TENANT, ancId, checkId, nowMs: Date.now(), actor: 'health-test', workflowId: `wf-${ancId}` };
}

async function ancFor(
  user: { name: string; password: string },
  opts: { ou?: string | null; password?: string; domain?: string; username?: string } = {},
): Promise<string> {
  const ancId = uniqueId(user.name.toLowerCase());
  await createAnc(env.deps, {
    tenantId: TENANT,
    ancId,
    username: opts.username ?? upn(user.name),
    password: opts.password ?? user.password,
    ...(opts.domain ? { domain: opts.domain } : {}),
    ...(opts.ou === null ? {} : { organizationalUnit: opts.ou ?? CLOUD_PCS_OU }),
  });
  return ancId;
}

async function check(ancId: string, deps: ActivityDeps = env.deps) {
  return checkAncHealth(deps, checkInput(ancId));
}

describe('the stored credential against a real directory', () => {
  it('passes for a healthy account, a resolvable domain and an existing OU, and stores the result with an audit record', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    const input = checkInput(ancId);
    const result = await checkAncHealth(env.deps, input);
    expect(result).toMatchObject({ status: 'passed', credentialVersion: 1 });
    expect(result.errorType).toBeUndefined();
    expect(result.startedAt).toBe(new Date(input.nowMs).toISOString());
    expect(Date.parse(result.finishedAt ?? '')).toBe(input.nowMs + (result.durationMs ?? -1));

    const { rows } = await env.db.pool.query('SELECT * FROM health_checks WHERE check_id = $1', [input.checkId]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      tenant_id: TENANT,
      anc_id: ancId,
      status: 'passed',
      error_type: null,
      credential_version: 1,
    });
    const audit = await env.db.pool.query('SELECT * FROM audit_log WHERE event_key = $1', [input.checkId]);
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0]).toMatchObject({
      event: 'anc.health_checked',
      tenant_id: TENANT,
      anc_id: ancId,
      actor: 'health-test',
      workflow_id: `wf-${ancId}`,
      outcome: 'success',
      details: { status: 'passed', errorType: null, credentialVersion: 1 },
    });
    expect(await latestHealthCheck(env.db.pool, TENANT, ancId)).toEqual(result);
  });

  it('passes without an OU (Cloud PCs join the default container)', async () => {
    const ancId = await ancFor(USERS.domainJoin, { ou: null });
    expect(await check(ancId)).toMatchObject({ status: 'passed' });
  });

  it('seed scenario: the password changes in the directory, the stored one fails, the ANC gets the new one and passes', async () => {
    const first = `Rotate-${randomBytes(6).toString('hex')}-1!`;
    const second = `Rotate-${randomBytes(6).toString('hex')}-2!`;
    await setDirectoryPassword(USERS.rotate.name, first);
    const ancId = await ancFor(USERS.rotate, { password: first });
    expect(await check(ancId)).toMatchObject({ status: 'passed', credentialVersion: 1 });

    await setDirectoryPassword(USERS.rotate.name, second); // an admin changes it in AD only
    const stale = await check(ancId);
    expect(stale).toMatchObject({ status: 'failed', errorType: 'IncorrectCredentials', credentialVersion: 1 });
    expect(stale.message).toContain(upn(USERS.rotate.name));

    const updated = await updateAncPassword(env.deps, { tenantId: TENANT, ancId, password: second });
    expect(updated.credentialVersion).toBe(2);
    expect(await check(ancId)).toMatchObject({ status: 'passed', credentialVersion: 2 });
    const latest = await latestHealthCheck(env.db.pool, TENANT, ancId);
    expect(latest).toMatchObject({ status: 'passed', credentialVersion: 2 });

    const audit = await env.db.pool.query(
      `SELECT details FROM audit_log WHERE anc_id = $1 AND event = 'anc.health_checked' ORDER BY seq`,
      [ancId],
    );
    expect(audit.rows.map((r: { details: unknown }) => r.details)).toEqual([
      { status: 'passed', errorType: null, credentialVersion: 1 },
      { status: 'failed', errorType: 'IncorrectCredentials', credentialVersion: 1 },
      { status: 'passed', errorType: null, credentialVersion: 2 },
    ]);
  });

  it('reports a wrong stored password as incorrect credentials', async () => {
    const ancId = await ancFor(USERS.domainJoin, { password: 'not-the-password' });
    expect(await check(ancId)).toMatchObject({ status: 'failed', errorType: 'IncorrectCredentials' });
  });

  it('reports a user name the directory does not know as incorrect credentials', async () => {
    const ancId = await ancFor(USERS.domainJoin, { username: upn('svcNobody') });
    const result = await check(ancId);
    expect(result).toMatchObject({ status: 'failed', errorType: 'IncorrectCredentials' });
    expect(result.message).toContain('no account');
  });

  it('reports a locked account (pwdAccountLockedTime) as locked or disabled', async () => {
    const ancId = await ancFor(USERS.locked);
    expect(await check(ancId)).toMatchObject({ status: 'failed', errorType: 'AccountLockedOrDisabled' });
  });

  it('reports a disabled account (pwdEndTime passed) as locked or disabled', async () => {
    const ancId = await ancFor(USERS.disabled);
    expect(await check(ancId)).toMatchObject({ status: 'failed', errorType: 'AccountLockedOrDisabled' });
  });

  it('reports an expired password (pwdMaxAge exceeded, no grace logins) as expired credentials', async () => {
    const ancId = await ancFor(USERS.expired);
    const result = await check(ancId);
    expect(result).toMatchObject({ status: 'failed', errorType: 'CredentialsExpired' });
    expect(result.message).toContain('expired');
  });

  it('an expired account with a wrong stored password is incorrect credentials (the server only says "expired" for the right one)', async () => {
    const ancId = await ancFor(USERS.expired, { password: 'Expired-but-wrong-1!' });
    expect(await check(ancId)).toMatchObject({ status: 'failed', errorType: 'IncorrectCredentials' });
  });

  it('reports a password an administrator reset (must change at next logon) as expired credentials', async () => {
    const ancId = await ancFor(USERS.mustChange);
    const result = await check(ancId);
    expect(result).toMatchObject({ status: 'failed', errorType: 'CredentialsExpired' });
    expect(result.message).toContain('must be changed');
  });

  it('warns when the directory says the password expires soon (ppolicy timeBeforeExpiration), passes when it does not', async () => {
    const ancId = await ancFor(USERS.expiring);
    const now = Date.now();
    // Policy: pwdMaxAge 30 days. Changed 27 days ago → 3 days left (below the 14-day threshold).
    await setAttribute(USERS.expiring.name, 'pwdChangedTime', [generalizedTime(now - 27 * 86_400_000)]);
    const soon = await check(ancId);
    expect(soon).toMatchObject({ status: 'warning', errorType: 'CredentialsExpiringSoon' });
    expect(soon.message).toMatch(/expires in [23] days/);

    await setAttribute(USERS.expiring.name, 'pwdChangedTime', [generalizedTime(now)]);
    expect(await check(ancId)).toMatchObject({ status: 'passed' });
  });

  it("warns from AD's msDS-UserPasswordExpiryTimeComputed when the password expires soon", async () => {
    const ancId = await ancFor(USERS.adExpiry);
    const filetime = (ms: number) => (BigInt(ms) * 10_000n + 116_444_736_000_000_000n).toString();
    try {
      await setAttribute(USERS.adExpiry.name, 'msDS-UserPasswordExpiryTimeComputed', [
        filetime(Date.now() + 5.5 * 86_400_000),
      ]);
      const soon = await check(ancId);
      expect(soon).toMatchObject({ status: 'warning', errorType: 'CredentialsExpiringSoon' });
      expect(soon.message).toMatch(/expires in 5 days/);
      await setAttribute(USERS.adExpiry.name, 'msDS-UserPasswordExpiryTimeComputed', [
        filetime(Date.now() + 60 * 86_400_000),
      ]);
      expect(await check(ancId)).toMatchObject({ status: 'passed' });
    } finally {
      await setAttribute(USERS.adExpiry.name, 'msDS-UserPasswordExpiryTimeComputed', ['9223372036854775807']);
    }
    expect(await check(ancId)).toMatchObject({ status: 'passed' });
  });

  it('reports an OU that does not exist, and a DN that is not an OU', async () => {
    const missing = await ancFor(USERS.domainJoin, { ou: `ou=NoSuchOU,${SUFFIX}` });
    const result = await check(missing);
    expect(result).toMatchObject({ status: 'failed', errorType: 'OrganizationalUnitNotFound' });
    expect(result.message).toContain(`ou=NoSuchOU,${SUFFIX}`);

    const notAnOu = await ancFor(USERS.domainJoin, { ou: userDn(USERS.locked.name) });
    expect(await check(notAnOu)).toMatchObject({ status: 'failed', errorType: 'OrganizationalUnitNotFound' });
  });

  it('binds by UPN: the auto mode falls back to the DN lookup, the lookup mode goes straight to it, the direct mode is for AD', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    expect(await check(ancId, env.withLdap({ upnBind: 'lookup' }))).toMatchObject({ status: 'passed' });
    expect(await check(ancId, env.withLdap({ upnBind: 'auto' }))).toMatchObject({ status: 'passed' });
    // OpenLDAP refuses a UPN as a bind DN (invalidDNSyntax): not a credential problem.
    const direct = await check(ancId, env.withLdap({ upnBind: 'direct' }));
    expect(direct).toMatchObject({ status: 'failed', errorType: 'Unknown' });
    expect(direct.message).toContain('LDAP result 34');
    // The lookup matches the UPN case-insensitively, as AD does.
    const upper = await ancFor(USERS.domainJoin, { username: upn(USERS.domainJoin.name).toUpperCase() });
    expect(await check(upper)).toMatchObject({ status: 'passed' });
  });
});

describe('DNS and reachability', () => {
  it('reports a domain that does not resolve', async () => {
    const ancId = await ancFor(USERS.domainJoin, { domain: 'no-such-domain.invalid', ou: null });
    const result = await check(ancId);
    expect(result).toMatchObject({ status: 'failed', errorType: 'DomainNotResolvable' });
    expect(result.message).toContain('no-such-domain.invalid');
  });

  it('reports a domain controller that accepts connections but never answers, within the timeout', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((s) => {
      sockets.add(s);
      s.on('error', () => undefined);
    });
    const port = await listen(silent);
    try {
      const ancId = await ancFor(USERS.domainJoin);
      const timeoutMs = 800;
      const t0 = performance.now();
      const result = await check(ancId, env.withLdap({ urlTemplate: `ldap://{domain}:${port}`, timeoutMs }));
      const elapsed = performance.now() - t0;
      expect(result).toMatchObject({ status: 'failed', errorType: 'DomainControllerUnreachable' });
      expect(result.message).toContain('did not answer');
      expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 50);
      expect(elapsed).toBeLessThan(timeoutMs + 1500);
      expect(sockets.size).toBeGreaterThan(0); // it really connected
    } finally {
      for (const s of sockets) s.destroy();
      await close(silent);
    }
  });

  it('reports a closed port as unreachable at once', async () => {
    const probe = createServer();
    const port = await listen(probe);
    await close(probe); // nothing listens there now
    const ancId = await ancFor(USERS.domainJoin);
    const t0 = performance.now();
    const result = await check(ancId, env.withLdap({ urlTemplate: `ldap://{domain}:${port}`, timeoutMs: 3000 }));
    expect(result).toMatchObject({ status: 'failed', errorType: 'DomainControllerUnreachable' });
    expect(result.message).toContain('ECONNREFUSED');
    expect(performance.now() - t0).toBeLessThan(3000 + 1500);
  });
});

describe('storage, idempotency and secrecy', () => {
  it('a retry with the same checkId returns the stored result and writes one row and one audit record', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    const input = checkInput(ancId);
    const first = await checkAncHealth(env.deps, input);
    // Even with the directory unreachable now, the retry answers from the stored row.
    const retry = await checkAncHealth(env.withLdap({ urlTemplate: 'ldap://{domain}:1', timeoutMs: 500 }), {
      ...input,
      nowMs: input.nowMs + 60_000,
    });
    expect(retry).toEqual(first);
    const [again] = await Promise.all([checkAncHealth(env.deps, input), checkAncHealth(env.deps, input)]);
    expect(again).toEqual(first);
    const rows = await env.db.pool.query('SELECT count(*)::int AS n FROM health_checks WHERE check_id = $1', [
      input.checkId,
    ]);
    expect(rows.rows[0]).toEqual({ n: 1 });
    const audit = await env.db.pool.query('SELECT count(*)::int AS n FROM audit_log WHERE event_key = $1', [
      input.checkId,
    ]);
    expect(audit.rows[0]).toEqual({ n: 1 });
  });

  it('concurrent first attempts with the same checkId store one row', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    const input = checkInput(ancId);
    const results = await Promise.all([
      checkAncHealth(env.deps, input),
      checkAncHealth(env.deps, input),
      checkAncHealth(env.deps, input),
    ]);
    for (const r of results) expect(r).toEqual(results[0]);
    const rows = await env.db.pool.query('SELECT count(*)::int AS n FROM health_checks WHERE check_id = $1', [
      input.checkId,
    ]);
    expect(rows.rows[0]).toEqual({ n: 1 });
  });

  it('an ANC that no longer exists: CredentialUnavailable, nothing written', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    await deleteAncData(env.deps, {
      tenantId: TENANT,
      ancId,
      operationId: uniqueId('delete'),
      actor: 'health-test',
      workflowId: 'wf',
      nowMs: Date.now(),
    });
    const input = checkInput(ancId);
    const result = await checkAncHealth(env.deps, input);
    expect(result).toMatchObject({ status: 'failed', errorType: 'CredentialUnavailable' });
    expect((await env.db.pool.query('SELECT 1 FROM health_checks WHERE check_id = $1', [input.checkId])).rowCount).toBe(
      0,
    );
    expect((await env.db.pool.query('SELECT 1 FROM audit_log WHERE event_key = $1', [input.checkId])).rowCount).toBe(0);
  });

  it('a stored credential that does not open is recorded as CredentialUnavailable', async () => {
    const ancId = await ancFor(USERS.domainJoin);
    await env.db.pool.query(
      `UPDATE anc_credentials SET sealed = overlay(sealed placing '\\x00'::bytea from 30 for 1) WHERE tenant_id = $1 AND anc_id = $2`,
      [TENANT, ancId],
    );
    const result = await check(ancId);
    expect(result).toMatchObject({ status: 'failed', errorType: 'CredentialUnavailable' });
    expect(await latestHealthCheck(env.db.pool, TENANT, ancId)).toEqual(result);
  });

  it('a canary password never reaches health_checks, audit_log, any other table, the result or the logs', async () => {
    const canary = `CANARY-${randomBytes(8).toString('hex')}`;
    await setDirectoryPassword(USERS.rotate.name, canary);
    const good = await ancFor(USERS.rotate, { password: canary });
    const wrong = await ancFor(USERS.domainJoin, { password: `${canary}-wrong` });
    const unreachable = await ancFor(USERS.rotate, { password: canary });
    const results = [
      await check(good),
      await check(wrong),
      await check(unreachable, env.withLdap({ urlTemplate: 'ldap://{domain}:1', timeoutMs: 500 })),
      await check(good, env.withLdap({ upnBind: 'direct' })),
    ];
    expect(results.map((r) => r.status)).toEqual(['passed', 'failed', 'failed', 'failed']);
    const haystack = [JSON.stringify(results), await dumpAllTables(env.db.pool), env.logs.join('\n')].join('\n');
    expect(haystack).toContain(good); // the dump really covers these rows
    expect(haystack).not.toContain(canary);
    expect(haystack).not.toContain(Buffer.from(canary).toString('hex'));
    expect(haystack).not.toContain(Buffer.from(canary).toString('base64'));
    await setDirectoryPassword(USERS.rotate.name, USERS.rotate.password);
  });

  it('the audit chain still verifies after all of the above', async () => {
    expect(await verifyAuditChain(env.db.pool, env.deps.config.auditMacKey)).toMatchObject({ ok: true });
  });
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address && typeof address === 'object') resolve(address.port);
      else reject(new Error('no port'));
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
