import { defineQuery } from '@temporalio/workflow';
import type { RewrapCursor, RotationFailure } from '../common/rotation';

export type { RewrapCursor, RotationFailure } from '../common/rotation';

/**
 * Scheduled rotation: renew the KEK three months before it expires and re-wrap every tenant key
 * with the new version; replace tenant keys older than twelve months and re-seal their credentials.
 * Shapes shared by the rotation workflow, its activities and the client SDK. No secrets here.
 */

export type RotationPhase =
  | 'starting'
  | 'renewing-kek'
  | 'replacing-tenant-keys'
  | 'rewrapping'
  | 'resealing-format-1'
  | 'kek-grace'
  | 'retiring-kek'
  | 'done';

/** The rotation re-seals credentials still in sealed format 1 to format 2 (activities/reseal.ts). */
export const RESEAL_FORMAT_1_PATCH = 'reseal-format-1-credentials';

export interface RotationCounts {
  /** Tenant keys re-wrapped with the current KEK version (one HSM unwrap each, local wrap). */
  rewrapped: number;
  /** Tenant keys that could not be unwrapped by their KEK version (left as they are). */
  rewrapFailed: number;
  /** Tenants whose expired key was replaced by a new version. */
  tenantKeysReplaced: number;
  /** Credential versions opened with a retiring key and sealed again with the current one. */
  credentialsResealed: number;
  /** Retiring tenant key versions deleted once no credential referred to them. */
  tenantKeyVersionsDeleted: number;
  /** Tenants whose replacement could not be completed (left as they were). */
  replaceFailed: number;
  /** Remote (HSM) unwrap calls the rotation made. */
  hsmUnwraps: number;
  /** Activity batches completed. */
  batches: number;
  /** Credential versions upgraded from sealed format 1 to format 2 (same tenant key version). */
  credentialsUpgraded?: number;
}

export interface RotationProgress {
  /** The rotation's workflow id (stable across continue-as-new). */
  rotationId: string;
  phase: RotationPhase;
  /** Workflow time the rotation started, ISO. */
  startedAt: string;
  /** Workflow time of the latest change, ISO. */
  updatedAt: string;
  finishedAt?: string;
  /** How many times the rotation continued as new. */
  continuedAsNew: number;
  kek: {
    /** The version tenant keys are wrapped with at the end (the current one). */
    currentVersion?: string;
    currentExpiresAt?: string;
    /** True when this rotation created the current version. */
    renewed: boolean;
    /** The version that was current before the renewal. */
    previousVersion?: string;
    /** Workflow time of the renewal, ISO. */
    renewedAt?: string;
    /** Enabled versions no tenant key refers to any more (reported, audited 'kek.rotated'). */
    unreferencedVersions: string[];
    /** Versions disabled because they were unreferenced (when configured). */
    disabledVersions: string[];
    /** Older versions still referred to after the last pass (e.g. keys that failed to unwrap). */
    stillReferenced: Array<{ kekVersion: string; tenantKeys: number }>;
  };
  counts: RotationCounts;
  /** The first vault's run only: each further vault's rotation (a child run), by vault id. */
  vaults?: Record<string, { phase: RotationPhase; kekVersion?: string; counts: RotationCounts }>;
  /** Where the current phase resumes: a tenant key (re-wrap) or a tenant id (replacement). */
  cursor: RewrapCursor | { tenantId: string } | null;
  /** Re-wrap passes over tenant_keys (a pass repeats when keys were wrapped with an old version meanwhile). */
  rewrapPass: number;
  /** Keys that failed to re-wrap in the current pass (a pass is repeated only for other keys). */
  rewrapPassFailed: number;
  /** The first failures (capped), for operators. */
  failures: RotationFailure[];
}

export interface RotationWorkflowArgs {
  /** Tenant keys (re-wrap) or tenants (replacement) per activity call. Default 100. */
  batchSize?: number;
  /** Continue-as-new after this many batches (or sooner when Temporal suggests it). Default 100. */
  batchesPerRun?: number;
  /** Parallel HSM calls inside one batch (the provider's rate limiter still applies). Default 16. */
  concurrency?: number;
  /**
   * After a renewal, wait this long (workflow time) before the final reference check and
   * retiring the old version: clients may still hold envelopes sealed for it, and other workers
   * may have cached it. Default 600.
   */
  kekGraceSeconds?: number;
  /** Who is recorded in the audit log. Default 'rotation'. */
  actor?: string;
  /** State carried across continue-as-new. */
  carried?: RotationProgress;
  /**
   * The vault this run rotates (its KEK, its tenants' keys, on its HSM queue). Absent: the first
   * vault, and then, when it is done, one child run per further vault.
   */
  vaultId?: string;
}

export const rotationProgressQuery = defineQuery<RotationProgress>('getRotationProgress');

/** The schedule starts workflows with this id prefix (the server appends the start time). */
export const ROTATION_WORKFLOW_ID_PREFIX = 'anc-key-rotation';
export const ROTATION_WORKFLOW_TYPE = 'rotationWorkflow';
