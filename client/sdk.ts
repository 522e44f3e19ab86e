import { randomUUID } from 'node:crypto';
import {
  Client,
  Connection,
  WithStartWorkflowOperation,
  WorkflowIdConflictPolicy,
  WorkflowNotFoundError,
  type ConnectionOptions,
} from '@temporalio/client';
import { loadTemporalSettings } from '../common/temporal-config';
import { ancWorkflowId, DEFAULT_TASK_QUEUE, KEYRING_WORKFLOW_ID } from '../common/ids';
import { AncIdKey, AncStateKey, HealthStatusKey, TenantIdKey } from '../common/search-attributes';
import { ancSummary } from '../common/summaries';
import type {
  AncSpec,
  AncView,
  CredentialStored,
  HealthCheckResult,
  HealthStatus,
  PublicKek,
  VaultKeyring,
} from '../common/types';
import { PRIMARY_VAULT_ID } from '../common/vaults';
import { rendezvousVault } from './placement';
import {
  PASSWORD_RULE_MESSAGES,
  passwordRuleBroken,
  validateAncId,
  validateAncSpec,
  validateTenantId,
} from '../common/validation';
import type { ancWorkflow } from '../workflows/anc';
import type { moveTenantWorkflow } from '../workflows/tenant-move';
import {
  createAncUpdate,
  deleteAncUpdate,
  getAncQuery,
  getPublicKekQuery,
  getVaultKeksQuery,
  runHealthChecksUpdate,
  updateAncPasswordUpdate,
} from '../workflows/definitions';
import { sealPasswordEnvelope } from './envelope';
import { AncServiceError, isGone, toServiceError } from './errors';
import { kekTrustFromEnv, KekUntrustedError, verifyPublicKek, type KekTrust } from './kek-trust';
import * as rotation from './rotation';
import * as tenant from './tenant';

export { AncServiceError } from './errors';
export { jwkThumbprint, kekTrustFromEnv, type KekPin, type KekTrust } from './kek-trust';
export type { AncSpec, AncView, CredentialStored, HealthCheckResult } from '../common/types';

export { MAX_PASSWORD_LENGTH } from './service-error';

export interface AncClientOptions {
  client: Client;
  taskQueue?: string;
  /** Set on ANCs this client creates: how often their health checks run while the tenant is active. */
  healthCheckIntervalMinutes?: number;
  /**
   * How the service's published key is verified before anything is sealed for it (see
   * client/kek-trust.ts). Default: from the environment (ANC_KEK_TRUST_ANCHOR and ANC_KEK_SUBJECT,
   * ANC_KEK_PINS, or ANC_KEK_TRUST=unverified); with none of them every seal is refused.
   */
  kekTrust?: KekTrust;
}

export interface CreateAncInput extends AncSpec {
  tenantId: string;
  ancId: string;
  password: string;
  /** Who asks, for the audit log (a user or service principal id). */
  actor: string;
  /** Reuse to retry the same create safely; a new one is made otherwise. */
  requestId?: string;
}

export interface AncSummary {
  tenantId: string;
  ancId: string;
  state: string;
  healthStatus?: string;
}

function checkPassword(password: unknown): asserts password is string {
  // The rule the service enforces too (common/validation.ts), checked before anything is sealed.
  const broken = passwordRuleBroken(password);
  if (broken) throw new AncServiceError(broken, PASSWORD_RULE_MESSAGES[broken]);
}

/** Runs `fn`, turning Temporal's errors (including validation failures thrown locally) into AncServiceError. */
async function mapped<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toServiceError(err);
  }
}

/**
 * The typed SDK other services use. Passwords are sealed in this process for the service's current
 * key-encryption key before anything is sent, so Temporal only ever carries the sealed envelope.
 */
export class AncClient {
  readonly temporal: Client;
  readonly taskQueue: string;
  private readonly healthCheckIntervalMinutes?: number;
  private kekCache: { kek: PublicKek; at: number } | undefined;
  private ringCache: { ring: VaultKeyring; at: number } | undefined;
  /** The vault each tenant was last seen on (from results), most recent last; bounded. */
  private readonly tenantVaults = new Map<string, string>();
  private readonly kekTrust?: KekTrust;

  constructor(options: AncClientOptions) {
    this.temporal = options.client;
    this.taskQueue = options.taskQueue ?? DEFAULT_TASK_QUEUE;
    this.healthCheckIntervalMinutes = options.healthCheckIntervalMinutes;
    this.kekTrust = options.kekTrust;
  }

  static async connect(
    options: { connection?: ConnectionOptions; namespace?: string; taskQueue?: string; kekTrust?: KekTrust } = {},
  ): Promise<AncClient> {
    const connection = await Connection.connect(options.connection ?? {});
    return new AncClient({
      client: new Client({ connection, namespace: options.namespace }),
      taskQueue: options.taskQueue,
      kekTrust: options.kekTrust,
    });
  }

  /**
   * Connects as configured by the environment, through Temporal's environment configuration:
   * TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE and
   * the TOML config file (TEMPORAL_CONFIG_FILE), plus TEMPORAL_TASK_QUEUE. Throws ConfigError
   * listing every problem. Close with `client.temporal.connection.close()`.
   */
  static async fromEnv(env: NodeJS.ProcessEnv = process.env): Promise<AncClient> {
    const settings = loadTemporalSettings(env);
    return AncClient.connect({
      connection: settings.connectionOptions,
      namespace: settings.namespace,
      taskQueue: settings.taskQueue,
      kekTrust: kekTrustFromEnv(env),
    });
  }

  /**
   * The KEK version to seal for, published by the service's keyring workflow and verified against
   * this client's trust configuration (AncServiceError 'KekUntrusted' otherwise). Cached for a minute.
   */
  async publicKek(refresh = false): Promise<PublicKek> {
    if (!refresh && this.kekCache && Date.now() - this.kekCache.at < 60_000) return this.kekCache.kek;
    const handle = this.temporal.workflow.getHandle(KEYRING_WORKFLOW_ID);
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        const kek = await handle.query(getPublicKekQuery);
        if (kek) {
          await this.verify(kek);
          this.kekCache = { kek, at: Date.now() };
          return kek;
        }
      } catch (err) {
        if (!(err instanceof WorkflowNotFoundError)) throw toServiceError(err);
      }
      if (Date.now() > deadline) {
        throw new AncServiceError(
          'ServiceUnavailable',
          'the service has not published its key yet: is a worker running?',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async verify(kek: PublicKek): Promise<void> {
    try {
      await verifyPublicKek(kek, this.kekTrust ?? kekTrustFromEnv(process.env));
    } catch (err) {
      if (err instanceof KekUntrustedError) throw new AncServiceError('KekUntrusted', err.message);
      throw err;
    }
  }

  /**
   * Every vault's current KEK (each verified with the client's trust rules) and the vaults open to
   * new tenants. A service from before several vaults answers with its one KEK as "primary".
   */
  async vaultKeks(refresh = false): Promise<VaultKeyring> {
    if (!refresh && this.ringCache && Date.now() - this.ringCache.at < 60_000) return this.ringCache.ring;
    // Waits for the keyring to publish (and verifies the first vault's KEK, as before).
    const first = await this.publicKek(refresh);
    let ring: VaultKeyring | undefined;
    try {
      ring = await this.temporal.workflow.getHandle(KEYRING_WORKFLOW_ID).query(getVaultKeksQuery);
    } catch {
      // A keyring from before several vaults has no such query: its one KEK is the first vault's.
      ring = undefined;
    }
    if (!ring || ring.vaults.length === 0) {
      // publicKek() has verified it already.
      ring = { vaults: [{ vaultId: PRIMARY_VAULT_ID, kek: first }], openVaultIds: [PRIMARY_VAULT_ID] };
    } else {
      for (const { kek } of ring.vaults) await this.verify(kek);
    }
    this.ringCache = { ring, at: Date.now() };
    return ring;
  }

  /**
   * The vault a tenant's password is sealed for: the one a result for this tenant named, else the
   * placement rule's choice (rendezvous hashing over the open vaults, client/placement.ts). If the
   * tenant is elsewhere after all, the service re-seals it for the right vault: nothing fails.
   */
  async vaultFor(tenantId: string): Promise<string> {
    const ring = await this.vaultKeks();
    const known = this.tenantVaults.get(tenantId);
    if (known && ring.vaults.some((v) => v.vaultId === known)) return known;
    const open = ring.openVaultIds.filter((id) => ring.vaults.some((v) => v.vaultId === id));
    return open.length > 0 ? rendezvousVault(tenantId, open) : PRIMARY_VAULT_ID;
  }

  /** Remembers the vault a result named for a tenant (a small bounded cache). */
  private learnVault(tenantId: string, vaultId: string | undefined): void {
    if (vaultId === undefined) return;
    this.tenantVaults.delete(tenantId);
    this.tenantVaults.set(tenantId, vaultId);
    if (this.tenantVaults.size > 10_000) {
      const oldest = this.tenantVaults.keys().next().value;
      if (oldest !== undefined) this.tenantVaults.delete(oldest);
    }
  }

  private async seal(
    password: string,
    tenantId: string,
    ancId: string,
    op: 'create' | 'update',
  ): Promise<{ passwordEnvelope: string; vaultId?: string }> {
    const vaultId = await this.vaultFor(tenantId);
    const ring = await this.vaultKeks();
    const kek = ring.vaults.find((v) => v.vaultId === vaultId)?.kek ?? (await this.publicKek());
    const passwordEnvelope = await sealPasswordEnvelope({ password, kek, tenantId, ancId, op, vaultId });
    return vaultId === PRIMARY_VAULT_ID ? { passwordEnvelope } : { passwordEnvelope, vaultId };
  }

  /** Provide: create an ANC with its domain credential. Resolves once it is encrypted and stored. */
  async createAnc(input: CreateAncInput): Promise<AncView> {
    return mapped(async () => {
      validateTenantId(input.tenantId);
      validateAncId(input.ancId);
      const spec: AncSpec = {
        displayName: input.displayName,
        adDomainName: input.adDomainName,
        organizationalUnit: input.organizationalUnit,
        adDomainUsername: input.adDomainUsername,
      };
      validateAncSpec(spec);
      checkPassword(input.password);
      const sealed = await this.seal(input.password, input.tenantId, input.ancId, 'create');
      const startWorkflowOperation = new WithStartWorkflowOperation<typeof ancWorkflow>('ancWorkflow', {
        workflowId: ancWorkflowId(input.tenantId, input.ancId),
        taskQueue: this.taskQueue,
        args: [
          { tenantId: input.tenantId, ancId: input.ancId, healthCheckIntervalMinutes: this.healthCheckIntervalMinutes },
        ],
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        staticSummary: ancSummary(input.ancId, spec),
        typedSearchAttributes: [
          { key: TenantIdKey, value: input.tenantId },
          { key: AncIdKey, value: input.ancId },
          { key: AncStateKey, value: 'creating' },
          { key: HealthStatusKey, value: 'pending' satisfies HealthStatus },
        ],
      });
      const view = await this.temporal.workflow.executeUpdateWithStart(createAncUpdate, {
        args: [{ ...spec, actor: input.actor, ...sealed }],
        updateId: input.requestId ?? randomUUID(),
        startWorkflowOperation,
      });
      this.learnVault(input.tenantId, view.vaultId);
      return view;
    });
  }

  /** Update: replace the stored credential; it is re-encrypted under the tenant's current key. */
  async updateAncPassword(
    tenantId: string,
    ancId: string,
    password: string,
    opts: { actor: string; requestId?: string },
  ): Promise<CredentialStored> {
    return mapped(async () => {
      validateTenantId(tenantId);
      validateAncId(ancId);
      checkPassword(password);
      const sealed = await this.seal(password, tenantId, ancId, 'update');
      const stored = await this.temporal.workflow
        .getHandle(ancWorkflowId(tenantId, ancId))
        .executeUpdate(updateAncPasswordUpdate, {
          args: [{ actor: opts.actor, ...sealed }],
          updateId: opts.requestId ?? randomUUID(),
        });
      this.learnVault(tenantId, stored.vaultId);
      return stored;
    });
  }

  /** Delete: removes the ANC and all its data at once. Deleting an ANC that is gone already is not an error. */
  async deleteAnc(
    tenantId: string,
    ancId: string,
    opts: { actor: string; requestId?: string },
  ): Promise<{ deleted: boolean }> {
    return mapped(async () => {
      validateTenantId(tenantId);
      validateAncId(ancId);
      try {
        return await this.temporal.workflow
          .getHandle(ancWorkflowId(tenantId, ancId))
          .executeUpdate(deleteAncUpdate, { args: [{ actor: opts.actor }], updateId: opts.requestId ?? randomUUID() });
      } catch (err) {
        if (isGone(err)) return { deleted: false };
        throw err;
      }
    });
  }

  /** The ANC's state, credential and key versions and last health check; never secret material. */
  async getAnc(tenantId: string, ancId: string): Promise<AncView> {
    return mapped(async () => {
      validateTenantId(tenantId);
      validateAncId(ancId);
      const handle = this.temporal.workflow.getHandle(ancWorkflowId(tenantId, ancId));
      const description = await handle.describe();
      if (description.status.name !== 'RUNNING')
        throw new AncServiceError('AncNotFound', `ANC ${ancId} does not exist`);
      const view = await handle.query(getAncQuery);
      if (view.state === 'deleted' || view.state === 'creating')
        throw new AncServiceError('AncNotFound', `ANC ${ancId} does not exist`);
      return view;
    });
  }

  /** The tenant's ANCs, from Temporal's visibility store (eventually consistent). */
  async listAncs(tenantId: string): Promise<AncSummary[]> {
    return mapped(async () => {
      validateTenantId(tenantId);
      const result: AncSummary[] = [];
      const query = `WorkflowType = 'ancWorkflow' AND ExecutionStatus = 'Running' AND TenantId = '${tenantId}'`;
      for await (const wf of this.temporal.workflow.list({ query })) {
        const sa = wf.typedSearchAttributes;
        const state = sa.get(AncStateKey);
        if (state === 'creating' || state === 'deleted') continue;
        result.push({
          tenantId,
          ancId: sa.get(AncIdKey) ?? '',
          state: state ?? 'unknown',
          healthStatus: sa.get(HealthStatusKey),
        });
      }
      return result.sort((a, b) => a.ancId.localeCompare(b.ancId));
    });
  }

  /** Runs the ANC's health checks now with the stored credential and returns the result. */
  async runHealthChecks(
    tenantId: string,
    ancId: string,
    opts: { actor: string; requestId?: string },
  ): Promise<HealthCheckResult> {
    return mapped(async () => {
      validateTenantId(tenantId);
      validateAncId(ancId);
      return this.temporal.workflow.getHandle(ancWorkflowId(tenantId, ancId)).executeUpdate(runHealthChecksUpdate, {
        args: [{ actor: opts.actor }],
        updateId: opts.requestId ?? randomUUID(),
      });
    });
  }

  /**
   * Runs a key rotation now (KEK renewal when due, re-wrapping, tenant key replacement) through the
   * rotation schedule; when one is running already nothing new starts and the running one is named.
   */
  async triggerRotation(): Promise<rotation.RotationTriggered> {
    return mapped(() => rotation.triggerRotation(this.temporal));
  }

  /**
   * Phase, KEK versions, counts and cursor of a rotation: the given workflow, else the running one,
   * else the latest one. Undefined when none has run yet.
   */
  async getRotationProgress(workflowId?: string): Promise<rotation.RotationStatus | undefined> {
    return mapped(() => rotation.getRotationProgress(this.temporal, workflowId));
  }

  /**
   * Deactivates a tenant: its ANCs stop (credentials kept sealed) and its data is purged when the
   * retention window (29 days by default) passes without a reactivation. Deactivating again is not
   * an error and keeps the first purge date. TenantNotFound, TenantPurged.
   */
  async deactivateTenant(tenantId: string, opts: tenant.TenantLifecycleOptions): Promise<tenant.TenantView> {
    return mapped(() => tenant.changeTenantState(this.temporal, this.taskQueue, 'deactivate', tenantId, opts));
  }

  /**
   * Reactivates a deactivated tenant within its retention window: the tenant and its ANCs are
   * restored as they were. Reactivating an active tenant is not an error. TenantPurged once the
   * window has passed; TenantNotFound.
   */
  async reactivateTenant(tenantId: string, opts: tenant.TenantLifecycleOptions): Promise<tenant.TenantView> {
    return mapped(() => tenant.changeTenantState(this.temporal, this.taskQueue, 'reactivate', tenantId, opts));
  }

  /** The tenant's lifecycle state, deactivation and purge dates. TenantNotFound if never deactivated. */
  async getTenant(tenantId: string): Promise<tenant.TenantView> {
    return mapped(() => tenant.getTenant(this.temporal, tenantId));
  }

  /**
   * Moves a tenant to another vault (a re-wrap of its tenant keys; see docs/CAPACITY.md). Moving to
   * the vault it is on is not an error (tenantKeys 0). VaultUnknown, TenantNotFound, TenantPurged.
   */
  async moveTenant(
    tenantId: string,
    toVault: string,
    opts: { actor: string; requestId?: string },
  ): Promise<{ fromVault: string; toVault: string; tenantKeys: number }> {
    return mapped(async () => {
      validateTenantId(tenantId);
      const result = await this.temporal.workflow.execute<typeof moveTenantWorkflow>('moveTenantWorkflow', {
        workflowId: `tenant-move/${tenantId}/${opts.requestId ?? randomUUID()}`,
        taskQueue: this.taskQueue,
        args: [{ tenantId, toVault, actor: opts.actor }],
        staticSummary: `Move tenant ${tenantId} to vault ${toVault}`,
      });
      this.learnVault(tenantId, result.toVault);
      return result;
    });
  }

  /** Tenants with a lifecycle record, optionally in one state, from Temporal's visibility store. */
  async listTenants(filter: { state?: tenant.TenantState } = {}): Promise<tenant.TenantSummary[]> {
    return mapped(() => tenant.listTenants(this.temporal, filter));
  }
}
