/**
 * Checks on what a workflow receives straight from a Temporal client (start arguments, signals),
 * for callers that bypass the client SDK. A bad start argument fails the workflow with a typed,
 * non-retryable ApplicationFailure instead of crashing its first workflow task again and again;
 * a bad signal is dropped and logged. Update arguments are checked by the Updates' validators.
 * Pure and deterministic: workflow code.
 */
import { permanentFailure } from '../common/errors';
import { ancWorkflowId, tenantWorkflowId } from '../common/ids';
import {
  validateActor,
  validateAncId,
  validateReason,
  validateRequest,
  validateTenantId,
  validateVaultId,
} from '../common/validation';

/** patched() ids: start arguments are checked; junk signals are dropped. */
export const START_CHECKS_PATCH = 'check-start-arguments';
export const SIGNAL_CHECKS_PATCH = 'drop-junk-signals';

function optionalNumber(value: unknown, name: string, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw permanentFailure('InvalidRequest', `${name} must be a number from ${min} to ${max} when given`);
  }
}

function optionalObject(value: unknown, name: string): void {
  if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
    throw permanentFailure('InvalidRequest', `${name} must be an object when given`);
  }
}

/** The typed failure `check` throws, if any. */
export function startArgsProblem(check: () => void): Error | undefined {
  try {
    check();
    return undefined;
  } catch (err) {
    return err as Error;
  }
}

/** The ANC workflow's arguments, and its id, which must be the one derived from them. */
export function checkAncWorkflowArgs(args: unknown, workflowId: string): void {
  validateRequest(args);
  validateTenantId(args.tenantId);
  validateAncId(args.ancId);
  if (workflowId !== ancWorkflowId(args.tenantId, args.ancId)) {
    throw permanentFailure('InvalidRequest', 'the workflow id must be anc/<tenantId>/<ancId> for the ids given');
  }
  optionalNumber(args.healthCheckIntervalMinutes, 'healthCheckIntervalMinutes', 1, 366 * 24 * 60);
  optionalObject(args.carried, 'carried');
}

export function checkTenantWorkflowArgs(args: unknown, workflowId: string): void {
  validateRequest(args);
  validateTenantId(args.tenantId);
  if (workflowId !== tenantWorkflowId(args.tenantId)) {
    throw permanentFailure('InvalidRequest', 'the workflow id must be tenant/<tenantId> for the id given');
  }
  optionalNumber(args.retentionDays, 'retentionDays', 0, 3650);
  optionalNumber(args.purgeBatchSize, 'purgeBatchSize', 1, 10_000);
  optionalObject(args.carried, 'carried');
}

export function checkRotationWorkflowArgs(args: unknown): void {
  if (args === undefined) return;
  validateRequest(args);
  optionalNumber(args.batchSize, 'batchSize', 1, 1000);
  optionalNumber(args.batchesPerRun, 'batchesPerRun', 1, 100_000);
  optionalNumber(args.concurrency, 'concurrency', 1, 64);
  optionalNumber(args.kekGraceSeconds, 'kekGraceSeconds', 0, 365 * 86_400);
  if (args.actor !== undefined) validateActor(args.actor);
  optionalObject(args.carried, 'carried');
  validateVaultId(args.vaultId);
}

export function checkKeyringWorkflowArgs(args: unknown): void {
  if (args === undefined) return;
  validateRequest(args);
  optionalObject(args.carried, 'carried');
  optionalObject(args.carriedVaults, 'carriedVaults');
}

/** A tenantStateChanged signal's payload, as the tenant workflow sends it. */
export function isTenantStateChange(payload: unknown): payload is { state: 'active' | 'deactivated' | 'purged' } {
  if (typeof payload !== 'object' || payload === null) return false;
  const state = (payload as { state?: unknown }).state;
  return state === 'active' || state === 'deactivated' || state === 'purged';
}

/** A deactivate/reactivate request: throws the typed failure an Update would answer with. */
export function checkLifecycleRequest(req: unknown): void {
  validateRequest(req);
  validateActor(req.actor);
  validateReason(req.reason);
}
