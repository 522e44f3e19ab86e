import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';

/** The tenant's lifecycle state, as stored in `tenants.state`. */
export type TenantState = 'active' | 'deactivated' | 'purged';

/**
 * What the tenant workflow reports. Times are ISO strings in workflow time. `timeLeftMs` is the
 * time left in the retention window while deactivated, as of `asOf`: for an Update's answer that
 * is now; a Query is answered from the workflow's latest event, which may be days old while the
 * timer sleeps (the client SDK recomputes it from `purgeAt`).
 */
export interface TenantView {
  tenantId: string;
  state: TenantState;
  deactivatedAt?: string;
  purgeAt?: string;
  timeLeftMs?: number;
  purgedAt?: string;
  /** Workflow time the view was taken at. */
  asOf: string;
  /** Deactivate/reactivate cycles completed by this tenant workflow (carried across runs). */
  cycles: number;
}

/**
 * What the `getTenant` query answers: the view, or `loading` while a new run reads the tenant's
 * row, or `not-found` when the tenant has no row (the run then ends).
 */
export interface TenantQueryResult extends Omit<TenantView, 'state'> {
  state: TenantState | 'loading' | 'not-found';
}

export interface TenantLifecycleRequest {
  /** Who asks (operator, billing service); recorded in the audit log. */
  actor: string;
  /** Optional free-text reason for the audit log (no secrets). */
  reason?: string;
}

// Signals: fire-and-forget, for operators and billing. Updates: same purpose, answer with the view.
export const deactivateTenantSignal = defineSignal<[TenantLifecycleRequest]>('deactivateTenant');
export const reactivateTenantSignal = defineSignal<[TenantLifecycleRequest]>('reactivateTenant');
export const deactivateTenantUpdate = defineUpdate<TenantView, [TenantLifecycleRequest]>('deactivateTenant');
export const reactivateTenantUpdate = defineUpdate<TenantView, [TenantLifecycleRequest]>('reactivateTenant');
export const getTenantQuery = defineQuery<TenantQueryResult>('getTenant');
