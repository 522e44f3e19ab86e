import { it, expect } from 'vitest';
import { createHarness, startTimeSkippingServer } from './support/harness';
import { createAncUpdate, getAncQuery } from '../workflows/definitions';
import { ancWorkflowId } from '../common/ids';
import { sealPasswordEnvelope } from '../client/envelope';
import { WithStartWorkflowOperation, WorkflowIdConflictPolicy } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

it('probe', async () => {
  const env = await startTimeSkippingServer();
  const log = (...a: unknown[]) => process.stdout.write(a.map((x) => (x instanceof Error ? `${x.name}: ${x.message} ${JSON.stringify((x as any).details ?? '')} cause=${(x as any).cause}` : JSON.stringify(x))).join(' ') + '\n');
  const K = temporal.api.enums.v1.IndexedValueType;
  const r0 = await env.connection.operatorService.addSearchAttributes({ namespace: 'default', searchAttributes: { TenantId: K.INDEXED_VALUE_TYPE_KEYWORD, AncId: K.INDEXED_VALUE_TYPE_KEYWORD, AncState: K.INDEXED_VALUE_TYPE_KEYWORD, HealthStatus: K.INDEXED_VALUE_TYPE_KEYWORD, TenantState: K.INDEXED_VALUE_TYPE_KEYWORD, PurgeAt: K.INDEXED_VALUE_TYPE_DATETIME } }).catch((e) => e);
  log('addSA', r0);
  const h = await createHarness({ env });
  const w = await h.startWorker();
  const spec = { displayName: 'x', adDomainName: 'corp.contoso.test', adDomainUsername: 'svc@corp.contoso.test' };
  try {
    const t0 = Date.now();
    const v = await Promise.race([h.sdk.createAnc({ tenantId: 't1', ancId: 'a1', ...spec, password: 'Pass#1', actor: 'me' }).catch((e) => e), new Promise((r) => setTimeout(() => r('TIMEOUT'), 15000))]);
    log('sdk createAnc', Date.now() - t0, v);
    {
      const env1 = await sealPasswordEnvelope({ password: 'Pass#1', kek: await h.sdk.publicKek(), tenantId: 't1', ancId: 'a3', op: 'create' });
      const op = new WithStartWorkflowOperation('ancWorkflow', { workflowId: ancWorkflowId('t1', 'a3'), taskQueue: h.taskQueue, args: [{ tenantId: 't1', ancId: 'a3' }], workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING });
      const r = await Promise.race([env.client.workflow.executeUpdateWithStart(createAncUpdate, { args: [{ ...spec, actor: 'me', passwordEnvelope: env1 }], startWorkflowOperation: op }).catch((e) => e), new Promise((r) => setTimeout(() => r('TIMEOUT'), 15000))]);
      log('uws no SA', r);
    }
    {
      const r = await env.client.workflow.start('ancWorkflow', { workflowId: ancWorkflowId('t1', 'a2'), taskQueue: h.taskQueue, args: [{ tenantId: 't1', ancId: 'a2' }] }).catch((e) => e);
      log('start', r?.workflowId ?? r);
      const env2 = await sealPasswordEnvelope({ password: 'Pass#2', kek: await h.sdk.publicKek(), tenantId: 't1', ancId: 'a2', op: 'create' });
      const u = await Promise.race([env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).executeUpdate(createAncUpdate, { args: [{ ...spec, actor: 'me', passwordEnvelope: env2 }] }).catch((e) => e), new Promise((r) => setTimeout(() => r('TIMEOUT'), 15000))]);
      log('update', u);
      const d = await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).describe().catch((e) => e);
      log('desc', d?.status?.name, d?.searchAttributes);
    }
    const ts=Date.now(); await env.sleep('29 days'); log('sleep29 ms', Date.now()-ts); const ts2=Date.now(); await env.sleep('29 days'); log('sleep29b ms', Date.now()-ts2);
    log('after sleep', await env.client.workflow.getHandle(ancWorkflowId('t1', 'a2')).query(getAncQuery).catch((e) => e));
    try { for await (const x of env.client.workflow.list({ query: "WorkflowType='ancWorkflow'" })) log('list', x.workflowId); } catch (e) { log('list err', e); }
  } finally {
    await h.close();
    await env.teardown();
  }
  expect(1).toBe(1);
});
