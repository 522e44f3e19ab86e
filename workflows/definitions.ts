import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type {
  AncView,
  AuditAnchor,
  CreateAncRequest,
  CredentialStored,
  DeleteAncRequest,
  HealthCheckResult,
  PublicKek,
  UpdatePasswordRequest,
  VaultKeyring,
} from '../common/types';

// ANC entity workflow
export const createAncUpdate = defineUpdate<AncView, [CreateAncRequest]>('createAnc');
export const updateAncPasswordUpdate = defineUpdate<CredentialStored, [UpdatePasswordRequest]>(
  'updateAdDomainPassword',
);
export const deleteAncUpdate = defineUpdate<{ deleted: boolean }, [DeleteAncRequest]>('deleteAnc');
export const runHealthChecksUpdate = defineUpdate<HealthCheckResult, [{ actor: string }]>('runHealthChecks');
export const getAncQuery = defineQuery<AncView>('getAnc');
/** Sent by the tenant workflow when the tenant is deactivated, reactivated or purged. */
export const tenantStateSignal = defineSignal<[{ state: 'active' | 'deactivated' | 'purged' }]>('tenantStateChanged');

// Keyring singleton
export const getPublicKekQuery = defineQuery<PublicKek | undefined>('getPublicKek');
export const refreshKekSignal = defineSignal('refreshKek');
/** Every vault's current KEK and the vaults open to new tenants (getPublicKek: the first vault's). */
export const getVaultKeksQuery = defineQuery<VaultKeyring | undefined>('getVaultKeks');

// Audit anchor singleton
/** The newest anchors of the audit chain's head, oldest first. */
export const getAuditAnchorsQuery = defineQuery<AuditAnchor[]>('getAuditAnchors');
/** Anchor the audit chain's head now (sent by every rotation run). */
export const anchorAuditSignal = defineSignal('anchorAudit');
