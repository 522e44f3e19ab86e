import { it, expect } from 'vitest';
import { createHarness, startTimeSkippingServer } from './support/harness';
import { createAncUpdate, getAncQuery } from '../workflows/definitions';
import { ancWorkflowId } from '../common/ids';
import { sealPasswordEnvelope } from '../client/envelope';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy } from '@temporalio/client';
import { AncIdKey, AncStateKey, HealthStatusKey, TenantIdKey } from '../common/search-attributes';

it('probe', async () => {
  const env = await startTimeSkippingServer();
  const h = await createHarness({ env });
  const w = await h.startWorker();
  const spec = { displayName: 'x', adDomainName: 'corp.contoso.test', adDomainUsername: 'svc@corp.contoso.test' };
  const log = (...a: unknown[]) => process.stdout.write(a.map((x) => (x instanceof Error ? `${x.name}: ${x.message} ${JSON.stringify((x as any).details ?? '')} cause=${(x as any).cause}` : JSON.stringify(x))).join(' ') + '\n');
  try {
    // 1. update-with-start without SAs
    {
      const env1 = await sealPasswordEnvelope({ password: 'Pass#1', kek: await h.sdk.publicKek(), tenantId: 't1', ancId: 'a1', op: 'create' });
      const op = new WithStartWorkflowOperation('ancWorkflow', { workflowId: ancWorkflowId('t1', 'a1'), taskQueue: h.taskQueue, args: [{ tenantId: 't1', ancId: 'a1' }], workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING });
      const r = await env.client.workflow.executeUpdateWithStart(createAncUpdate, { args: [{ ...spec, actor: 'me', passwordEnvelope: env1 }], startWorkflowOperation: op }).catch((e) => e);
      log('uws no SA', r);
    }
    // 2. start with SAs + executeUpdate
    {
      const r = await env.client.workflow.start('ancWorkflow', { workflowId: ancWorkflowId('t1', 'a2'), taskQueue: h.taskQueue, args: [{ tenantId: 't1', ancId: 'a2' }],
        typedSearchAttributes: [{ key: TenantIdKey, value: 't1' }, { key: AncIdKey, value: 'a2' }, { key: AncStateKey, value: 'creating' }, { key: HealthStatusKey, value: 'pending' }] }).catch((e) => e);
      log('start SA', r?.workflowId ?? r);
      const env2 = await sealPasswordEnvelope({ password: 'Pass#2', kek: await h.sdk.publicKek(), tenantId: 't1', ancId: 'a2', op: 'create' });
      const u = await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).executeUpdate(createAncUpdate, { args: [{ ...spec, actor: 'me', passwordEnvelope: env2 }] }).catch((e) => e);
      log('update', u);
      const d = await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).describe().catch((e) => e);
      log('desc', d?.status?.name, d?.typedSearchAttributes ? [...(d.typedSearchAttributes as any).getAll?.() ?? []] : d);
      log('query', await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).query(getAncQuery).catch((e) => e));
    }
    // 3. sleep 1 day
    await env.sleep('1 day');
    log('after sleep', await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).query(getAncQuery).catch((e) => e));
  } finally {
    await h.close();
    await env.teardown();
  }
  expect(1).toBe(1);
});
