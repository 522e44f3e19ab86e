/**
 * Shapes of the scheduled rotation shared by its workflow (workflows/rotation.ts) and its
 * activities (activities/rotation/*). Plain data only; nothing here ever holds key material.
 */

/** Keyset cursor over tenant_keys (tenant_id, version). */
export interface RewrapCursor {
  tenantId: string;
  version: number;
}

export interface RotationFailure {
  phase: 'rewrap' | 'replace' | 'reseal';
  tenantId: string;
  tenantKeyVersion?: number;
  /** An error type, never key material. */
  reason: string;
}

/** Who a rotation activity records in the audit log. */
/** Which vault a rotation step works on (absent: the first, "primary"). */
export interface OnVault {
  vaultId?: string;
}

export interface RotationActor {
  /** The rotation's workflow id. */
  rotationId: string;
  actor: string;
}

// ------------------------------------------------------------------------------- KEK renewal

export interface RenewKekInput extends RotationActor, OnVault {
  /** Workflow time (ms since epoch). */
  nowMs: number;
}

export interface RenewKekResult {
  currentVersion: string;
  currentExpiresAtMs: number;
  /** A version was created by this call, or by an earlier attempt that did not finish. */
  renewed: boolean;
  /** The newest enabled version older than the current one, if any. */
  previousVersion?: string;
}

// ------------------------------------------------------------------------------- re-wrap

export interface RewrapBatchInput extends RotationActor, OnVault {
  /** The KEK version to wrap with (the current one). */
  targetKekVersion: string;
  /** Resume after this tenant key; null from the start. */
  after: RewrapCursor | null;
  limit: number;
  concurrency: number;
  nowMs: number;
  /**
   * Exactly these keys instead of a page (those still wrapped by another version): the rotation
   * sends one key per activity on the HSM task queue, so each activity makes at most one HSM call.
   */
  keys?: RewrapCursor[];
}

/** A page of tenant keys (ids only) not wrapped by the target KEK version. */
export interface ListStaleKeysInput extends OnVault {
  targetKekVersion: string;
  after: RewrapCursor | null;
  limit: number;
}

/** A page of tenants with an expired active key or retiring versions left over. */
export interface ListReplaceableInput extends OnVault {
  after: string | null;
  limit: number;
  nowMs: number;
}

export interface RewrapBatchResult {
  rewrapped: number;
  /** Rows another attempt or worker had re-wrapped already. */
  alreadyDone: number;
  failed: RotationFailure[];
  hsmUnwraps: number;
  /** The last tenant key looked at. */
  next: RewrapCursor | null;
  /** No tenant key after `next` needs re-wrapping. */
  done: boolean;
}

// ------------------------------------------------------------------------------- tenant key replacement

export interface ReplaceBatchInput extends RotationActor, OnVault {
  /** Resume after this tenant id; null from the start. */
  after: string | null;
  limit: number;
  concurrency: number;
  nowMs: number;
  /** Exactly these tenants instead of a page (one per activity on the HSM task queue). */
  tenants?: string[];
}

export interface ReplaceBatchResult {
  tenants: number;
  replaced: number;
  resealed: number;
  deleted: number;
  failed: RotationFailure[];
  hsmUnwraps: number;
  next: string | null;
  done: boolean;
}

// ------------------------------------------------------------------------------- retiring KEK versions

export interface RetireKekInput extends RotationActor, OnVault {
  currentKekVersion: string;
  nowMs: number;
}

export interface RetireKekResult {
  /** Enabled versions other than the current one that no tenant key refers to. */
  unreferenced: string[];
  /** Of those, the ones disabled now (config.disableUnreferencedKekVersions). */
  disabled: string[];
  /** Versions other than the current one still referred to, with how many tenant keys. */
  stillReferenced: Array<{ kekVersion: string; tenantKeys: number }>;
}
