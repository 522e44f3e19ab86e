import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { RotationStatus } from './rotation';
import type { TenantSummary, TenantView } from './tenant';
import { keyValues, table } from './cli-io';
import { nonEmpty, withTenant, type CommandGroup } from './cli-program';

function formatTenant(v: TenantView): string {
  const days = v.timeLeftMs === undefined ? undefined : `${(v.timeLeftMs / 86_400_000).toFixed(2)} days`;
  return keyValues([
    ['tenant', v.tenantId],
    ['state', v.state],
    ['deactivated at', v.deactivatedAt],
    ['purge at', v.purgeAt],
    ['time left', days],
    ['purged at', v.purgedAt],
  ]);
}

function formatTenantList(rows: TenantSummary[]): string {
  if (rows.length === 0) return 'no tenants\n';
  return table(rows, [
    ['tenant', (r) => r.tenantId],
    ['state', (r) => r.state],
    ['purge at', (r) => r.purgeAt ?? ''],
  ]);
}

function formatRotation(s: RotationStatus | undefined): string {
  if (!s) return 'no rotation has run yet\n';
  const p = s.progress;
  return keyValues([
    ['rotation', s.workflowId],
    ['status', s.status],
    ['phase', p.phase],
    ['started', p.startedAt],
    ['finished', p.finishedAt],
    ['kek version', p.kek.currentVersion],
    ['kek expires', p.kek.currentExpiresAt],
    ['kek renewed', p.kek.renewed ? `yes (was ${p.kek.previousVersion ?? '?'})` : 'no'],
    ['unreferenced kek versions', p.kek.unreferencedVersions.join(', ') || 'none'],
    ['tenant keys re-wrapped', p.counts.rewrapped],
    ['tenant keys replaced', p.counts.tenantKeysReplaced],
    ['credentials re-sealed', p.counts.credentialsResealed],
    ['failures', p.counts.rewrapFailed + p.counts.replaceFailed],
    ['hsm unwraps', p.counts.hsmUnwraps],
  ]);
}

function tenantState(value: string): 'active' | 'deactivated' | 'purged' {
  if (value === 'active' || value === 'deactivated' || value === 'purged') return value;
  throw new InvalidArgumentError('must be active, deactivated or purged');
}

/** Tenants: `anc tenant deactivate|reactivate|get|list`. */
export const tenantCommands: CommandGroup = (program: Command, ctx) => {
  const tenant = program.command('tenant').description('tenant deactivation, 29-day retention and reactivation');
  withTenant(tenant.command('deactivate').description('deactivate: data is kept for the retention period, then purged'))
    .option('--reason <text>', 'why, for the audit log', nonEmpty)
    .action(async (o: { tenant: string; reason?: string }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.deactivateTenant(o.tenant, { actor: ctx.globals().actor, reason: o.reason }), formatTenant);
    });
  withTenant(tenant.command('reactivate').description('reactivate within the retention period: everything is restored'))
    .option('--reason <text>', 'why, for the audit log', nonEmpty)
    .action(async (o: { tenant: string; reason?: string }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.reactivateTenant(o.tenant, { actor: ctx.globals().actor, reason: o.reason }), formatTenant);
    });
  withTenant(tenant.command('get').description("the tenant's state, purge date and time left")).action(
    async (o: { tenant: string }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.getTenant(o.tenant), formatTenant);
    },
  );
  withTenant(tenant.command('move').description("move the tenant to another vault (re-wraps the tenant's keys)"))
    .requiredOption('--vault <vaultId>', 'the vault to move to', nonEmpty)
    .action(async (o: { tenant: string; vault: string }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.moveTenant(o.tenant, o.vault, { actor: ctx.globals().actor }), (r) =>
        keyValues([
          ['tenant', o.tenant],
          ['from vault', r.fromVault],
          ['to vault', r.toVault],
          ['tenant keys re-wrapped', r.tenantKeys],
        ]),
      );
    });
  tenant
    .command('list')
    .description('tenants known to the service (from Temporal visibility)')
    .option('--state <state>', 'only tenants in this state (active, deactivated, purged)', tenantState)
    .action(async (o: { state?: 'active' | 'deactivated' | 'purged' }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.listTenants({ state: o.state }), formatTenantList);
    });
};

/** Key rotation: `anc rotation run|status`. */
export const rotationCommands: CommandGroup = (program: Command, ctx) => {
  const rotation = program.command('rotation').description('KEK renewal, tenant key re-wrap and replacement');
  rotation
    .command('run')
    .description('start a rotation now (nothing new starts while one runs)')
    .option('--wait', 'wait until it has finished and print its progress')
    .action(async (o: { wait?: boolean }) => {
      const sdk = await ctx.sdk();
      const triggered = await sdk.triggerRotation();
      if (!o.wait) {
        ctx.print(triggered, (t) =>
          keyValues([
            ['started', t.started ? 'yes' : 'no (a rotation is already running)'],
            ['rotation', t.workflowId],
          ]),
        );
        return;
      }
      for (;;) {
        const status = await sdk.getRotationProgress(triggered.workflowId);
        if (status && status.status !== 'RUNNING') {
          ctx.print(status, formatRotation);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    });
  rotation
    .command('status')
    .description('progress of the running rotation, or of the latest one')
    .option('--workflow-id <id>', 'a particular rotation', nonEmpty)
    .action(async (o: { workflowId?: string }) => {
      const sdk = await ctx.sdk();
      ctx.print(await sdk.getRotationProgress(o.workflowId), formatRotation);
    });
};
