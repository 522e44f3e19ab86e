/** Workflow ids derive from entity ids, so a second request for the same entity finds the first. */
export const ancWorkflowId = (tenantId: string, ancId: string): string => `anc/${tenantId}/${ancId}`;
export const tenantWorkflowId = (tenantId: string): string => `tenant/${tenantId}`;
export const KEYRING_WORKFLOW_ID = 'anc-keyring';
export const ROTATION_SCHEDULE_ID = 'anc-key-rotation';
export const DEFAULT_TASK_QUEUE = 'anc-credentials';
export const AUDIT_ANCHOR_WORKFLOW_ID = 'anc-audit-anchor';
export const TENANT_SWEEP_SCHEDULE_ID = 'anc-tenant-sweep';
