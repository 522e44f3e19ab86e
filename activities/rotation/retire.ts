/** Retiring KEK versions: report (and optionally disable) KEK versions no tenant key refers to. */
import type { RetireKekInput, RetireKekResult } from '../../common/rotation';
import { appendAudit } from '../db/audit';
import { inTransaction } from '../db/pool';
import { onVaultSql, ownVaultId, type ActivityDeps } from '../deps';

/**
 * Reports the KEK versions no tenant key refers to any more (audited once each as 'kek.rotated')
 * and, when configured, disables them in Key Vault so they can no longer unwrap anything.
 */
export async function retireKekVersions(deps: ActivityDeps, input: RetireKekInput): Promise<RetireKekResult> {
  const provider = deps.kek.provider;
  const versions = await provider.listVersions();
  const { rows } = await deps.pool.query<{ kek_version: string; n: number }>(
    `SELECT kek_version, count(*)::int AS n FROM tenant_keys WHERE ${onVaultSql('tenant_keys.tenant_id', '$1')}
      GROUP BY kek_version`,
    [ownVaultId(deps)],
  );
  const refs = new Map(rows.map((r) => [r.kek_version, r.n]));
  const result: RetireKekResult = {
    unreferenced: [],
    disabled: [],
    stillReferenced: rows
      .filter((r) => r.kek_version !== input.currentKekVersion)
      .map((r) => ({ kekVersion: r.kek_version, tenantKeys: r.n })),
  };
  const now = new Date(input.nowMs);
  for (const v of versions) {
    if (v.version === input.currentKekVersion || !v.enabled || (refs.get(v.version) ?? 0) > 0) continue;
    result.unreferenced.push(v.version);
    const disable = deps.config.disableUnreferencedKekVersions;
    if (disable) {
      await provider.disableVersion(v.version);
      result.disabled.push(v.version);
    }
    await inTransaction(deps.pool, async (client) => {
      await appendAudit(client, deps.config.auditMacKey, {
        eventKey: `kek.rotated/${v.kekId}/${v.version}/${disable ? 'disabled' : 'unreferenced'}`,
        event: 'kek.rotated',
        at: now,
        actor: input.actor,
        workflowId: input.rotationId,
        outcome: 'success',
        details: {
          kekId: v.kekId,
          fromKekVersion: v.version,
          toKekVersion: input.currentKekVersion,
          unreferenced: true,
          disabled: disable,
        },
      });
    });
  }
  if (result.disabled.length > 0) deps.kek.invalidate();
  return result;
}
