/**
 * KEK renewal: three months before the current KEK version expires, create a new version valid
 * one year.
 */
import type { RenewKekInput, RenewKekResult } from '../../common/rotation';
import { appendAudit } from '../db/audit';
import { inTransaction } from '../db/pool';
import type { ActivityDeps } from '../deps';
import type { KekVersion } from '../kek/provider';
import { addUtcMonths, KEK_VALIDITY_MONTHS, kekRenewalDue } from './shared';

// Serialises KEK renewals across workers (two rotations must never both create a version).
const KEK_RENEWAL_LOCK_ID = 0x616e636b; // "anck"

/**
 * Key mode: creates a new KEK version (valid one year) when fewer than three months remain on the
 * current one. Certificate mode: Key Vault renews the certificate itself (AutoRenew, 90 days before
 * expiry); a version it made is adopted here (audited once, then re-wrapped to by the next step),
 * and when 90 days or fewer remain with no newer version the service asks Key Vault to renew
 * through the policy. An expired or disabled version is never current. Idempotent: a retry after
 * the version was created finds it current with a year left and creates nothing; it still reports
 * the renewal until its audit record exists.
 */
export async function renewKekIfDue(deps: ActivityDeps, input: RenewKekInput): Promise<RenewKekResult> {
  const now = new Date(input.nowMs);
  const provider = deps.kek.provider;
  return inTransaction(deps.pool, async (client) => {
    await client.query('SELECT pg_advisory_xact_lock($1)', [KEK_RENEWAL_LOCK_ID]);
    const certificate = provider.mode === 'certificate';
    const enabled = (await provider.listVersions()).filter(
      (v) => v.enabled && (!certificate || v.expiresAt.getTime() > now.getTime()),
    );
    let current: KekVersion | undefined = enabled.at(-1);
    let previous: KekVersion | undefined = enabled.at(-2);
    let created = false;
    const due = (v: KekVersion): boolean =>
      provider.renewalDue ? provider.renewalDue(v.expiresAt, now) : kekRenewalDue(v.expiresAt, now);
    if (!current || due(current)) {
      previous = current;
      current = await provider.createVersion(addUtcMonths(now, KEK_VALIDITY_MONTHS));
      created = true;
    }
    // Other requests in this worker must seal new tenant keys with the new version at once.
    deps.kek.invalidate();
    const eventKey = `kek.renewed/${current.kekId}/${current.version}`;
    let renewed = created;
    if (!created && previous) {
      // A version created by an attempt whose transaction did not commit (or by an operator):
      // treat it as this rotation's renewal until it is audited.
      const audited = await client.query('SELECT 1 FROM audit_log WHERE event_key = $1', [eventKey]);
      renewed = (audited.rowCount ?? 0) === 0;
    }
    if (renewed) {
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey,
        event: 'kek.renewed',
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: {
          kekId: current.kekId,
          kekVersion: current.version,
          previousKekVersion: previous?.version ?? null,
          expiresAt: current.expiresAt.toISOString(),
          previousExpiresAt: previous?.expiresAt.toISOString() ?? null,
          kekMode: provider.mode ?? 'key',
          // Who made the version: the service (key mode), Key Vault at the service's request
          // (certificate mode, renewal due), or Key Vault's own AutoRenew (adopted).
          source: created ? (certificate ? 'renewal-requested' : 'created') : 'adopted',
        },
      });
      deps.logger.info(
        { kekVersion: current.version, previousKekVersion: previous?.version, expiresAt: current.expiresAt },
        'KEK renewed',
      );
    }
    return {
      currentVersion: current.version,
      currentExpiresAtMs: current.expiresAt.getTime(),
      renewed,
      ...(previous ? { previousVersion: previous.version } : {}),
    };
  });
}
