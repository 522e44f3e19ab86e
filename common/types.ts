/** Shapes shared by workflows, activities and the client SDK. Nothing here ever holds a secret. */

export interface AncSpec {
  displayName: string;
  /** Fully qualified AD domain name, e.g. corp.contoso.com. */
  adDomainName: string;
  /** Optional distinguished name of the OU computer accounts are created in. */
  organizationalUnit?: string;
  /** Domain-join account in UPN form, e.g. svcDomainJoin@corp.contoso.com. */
  adDomainUsername: string;
}

export interface CreateAncRequest extends AncSpec {
  /** Who asks; recorded in the audit log. */
  actor: string;
  /** The password sealed by the client SDK for the KEK (compact JWE). */
  passwordEnvelope: string;
  /** The vault whose KEK sealed the envelope (absent: "primary"); the workflow opens it there. */
  vaultId?: string;
}

export interface UpdatePasswordRequest {
  actor: string;
  passwordEnvelope: string;
  /** As in CreateAncRequest. */
  vaultId?: string;
}

export interface DeleteAncRequest {
  actor: string;
}

export type AncState = 'creating' | 'active' | 'deactivated' | 'deleted';

export type HealthStatus = 'pending' | 'running' | 'passed' | 'failed' | 'warning';

export type HealthErrorType =
  | 'IncorrectCredentials'
  | 'CredentialsExpired'
  | 'CredentialsExpiringSoon'
  | 'AccountLockedOrDisabled'
  | 'DomainNotResolvable'
  | 'DomainControllerUnreachable'
  | 'OrganizationalUnitNotFound'
  | 'CredentialUnavailable'
  | 'Unknown';

export interface HealthCheckResult {
  status: HealthStatus;
  errorType?: HealthErrorType;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  credentialVersion?: number;
}

export interface AncView extends AncSpec {
  tenantId: string;
  ancId: string;
  /** The vault the tenant is on, once the workflow has learned it (absent: the first). */
  vaultId?: string;
  state: AncState;
  credentialVersion: number;
  tenantKeyVersion: number;
  createdAt?: string;
  updatedAt?: string;
  healthCheck: HealthCheckResult;
}

export interface CredentialStored {
  credentialVersion: number;
  tenantKeyVersion: number;
  /** ISO time the credential version was stored. */
  storedAt: string;
  /** The vault the tenant is on (absent from results stored before there could be several). */
  vaultId?: string;
}

/** The KEK version clients seal passwords for (public material only). */
export interface PublicKek {
  kekId: string;
  version: string;
  /** RSA public JWK; `kid` is "<kekId>/<version>". */
  publicJwk: { kty: 'RSA'; n: string; e: string; kid: string; alg: 'RSA-OAEP-256' };
  expiresAt: string;
  /**
   * Certificate mode: the KEK version's certificate chain (base64 DER, leaf first). Clients check
   * it against their trust anchor and that `publicJwk` is the leaf's key before sealing.
   */
  x5c?: string[];
}

/** Every vault's current KEK, as the keyring publishes them (public material only). */
export interface VaultKeyring {
  /** Every vault the service serves, the first ("primary") first. */
  vaults: Array<{ vaultId: string; kek: PublicKek }>;
  /** The vaults new tenants are placed on (rendezvous hashing of the tenant id over these). */
  openVaultIds: string[];
}

/**
 * The audit chain's head at one moment, signed outside PostgreSQL (a Key Vault key) and kept in
 * the audit-anchor workflow's state in Temporal, where the database's owner cannot rewrite it.
 */
export interface AuditAnchor {
  /** The newest record's sequence number then (0: the log was empty). */
  seq: number;
  /** Its MAC, hex ('' when empty). */
  mac: string;
  /** When the head was read, ISO. */
  at: string;
  /** The signing key version (Key Vault key id, or "local/<thumbprint>"). */
  kid: string;
  alg: 'RS256';
  /** base64url RS256 signature of `auditAnchorPayload(anchor)`. */
  signature: string;
  /** The signing key's public part, to verify without Key Vault access (compare its thumbprint). */
  publicJwk: { kty: 'RSA'; n: string; e: string };
}
