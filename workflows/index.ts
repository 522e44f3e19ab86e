// Every workflow the worker runs. Each lifecycle step lives in the file named for it.
export { ancWorkflow } from './anc';
export { auditAnchorWorkflow } from './audit-anchor';
export { keyringWorkflow } from './keyring';
export { rotationWorkflow } from './rotation';
export { tenantWorkflow } from './tenant';
export { tenantSweepWorkflow } from './tenant-sweep';
export { moveTenantWorkflow } from './tenant-move';
