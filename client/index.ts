/**
 * The SDK other services use: the package's entry point. It reaches nothing of the worker (no
 * database, directory or Key Vault clients).
 */
export { AncClient, MAX_PASSWORD_LENGTH } from './sdk';
export type { AncClientOptions, AncSummary, CreateAncInput } from './sdk';
export { AncServiceError } from './errors';
export type { ErrorType } from '../common/errors';
export type { AncSpec, AncView, CredentialStored, HealthCheckResult, HealthStatus, PublicKek } from '../common/types';
export { ConfigError, loadTemporalSettings, DEFAULT_TEMPORAL_ADDRESS } from '../common/temporal-config';
export type { TemporalSettings } from '../common/temporal-config';
export { changeTenantState, getTenant, listTenants } from './tenant';
export type { TenantLifecycleOptions, TenantSummary, TenantState, TenantView } from './tenant';
export { getRotationProgress, triggerRotation } from './rotation';
export type { RotationProgress, RotationStatus, RotationTriggered } from './rotation';
