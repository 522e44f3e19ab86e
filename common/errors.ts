import { ApplicationFailure } from '@temporalio/common';

/**
 * Every error type the service reports to callers. Workflows, activities and the client SDK share
 * these names; the SDK maps them to typed errors.
 */
export const ErrorTypes = [
  'InvalidRequest',
  'InvalidActor',
  'InvalidTenantId',
  'InvalidAncId',
  'InvalidDisplayName',
  'InvalidDomainName',
  'InvalidOrganizationalUnit',
  'InvalidUpn',
  'PasswordEmpty',
  'PasswordTooLong',
  'PasswordInvalidCharacters',
  'InvalidEnvelope',
  'EnvelopeExpired',
  'EnvelopeReused',
  'AncAlreadyExists',
  'AncNotFound',
  'TenantLimitReached',
  'TenantDeactivated',
  'TenantPurged',
  'TenantNotFound',
  'KekUnavailable',
  'CredentialUnavailable',
  'InvalidVaultId',
  'VaultUnknown',
  'TenantOnOtherVault',
] as const;

export type ErrorType = (typeof ErrorTypes)[number];

export function isErrorType(value: unknown): value is ErrorType {
  return typeof value === 'string' && (ErrorTypes as readonly string[]).includes(value);
}

/** A permanent failure: retrying cannot help, so Temporal does not retry it. */
export function permanentFailure(type: ErrorType, message: string): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true });
}
