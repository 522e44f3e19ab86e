import { X509Certificate } from 'node:crypto';
import {
  CertificateClient,
  type CertificateClientOptions,
  type CertificatePolicy,
  type KeyVaultCertificate,
  type CertificateProperties,
} from '@azure/keyvault-certificates';
import { AzureKeyVaultKekProvider, statusOf, type AzureKeyVaultKekOptions } from './azure-key-vault';
import { KekVersionNotFoundError, KekVersionUnusableError, wrapWithPublicKey, type KekVersion } from './provider';

/** Key Vault renews (AutoRenew) and the rotation acts this many days before a version expires. */
export const CERTIFICATE_RENEW_BEFORE_EXPIRY_DAYS = 90;
/** Validity of each certificate version. */
export const CERTIFICATE_VALIDITY_MONTHS = 12;

export interface AzureKeyVaultCertificateKekOptions extends AzureKeyVaultKekOptions {
  /** `Self` (self-signed: local runs) or the name of a CA issuer configured in the vault. */
  issuerName: string;
  /** The certificate's subject, e.g. "CN=anc-credential-kek"; clients check it. */
  subject: string;
  /** How long the create operation is polled for (Key Vault answers with a pending operation). */
  pollIntervalMs?: number;
}

/**
 * The KEK as a Key Vault certificate: RSA-HSM, not exportable, valid twelve months, renewed by
 * Key Vault itself (lifetime action AutoRenew 90 days before expiry) and issued by the configured
 * issuer. Each certificate version has a key of the same name and version under /keys, which
 * unwraps (inherited from the key provider: the HSM call goes to /keys/{name}/{version});
 * wrapping is local with the certificate's public key. Versions carry their certificate (x5c),
 * which the keyring publishes so clients can check it against their trust anchor.
 */
export class AzureKeyVaultCertificateKekProvider extends AzureKeyVaultKekProvider {
  override readonly mode = 'certificate' as const;
  private readonly certificates: CertificateClient;

  constructor(private readonly certOpts: AzureKeyVaultCertificateKekOptions) {
    super(certOpts);
    this.certificates = new CertificateClient(
      certOpts.vaultUrl,
      certOpts.credential,
      this.clientOptions() as CertificateClientOptions,
    );
  }

  /** The policy a first version is created with (later versions keep the vault's stored policy). */
  policy(): CertificatePolicy {
    return {
      issuerName: this.certOpts.issuerName,
      subject: this.certOpts.subject,
      keyType: 'RSA-HSM',
      keySize: this.certOpts.keySize,
      exportable: false,
      reuseKey: false,
      keyUsage: ['keyEncipherment'],
      validityInMonths: CERTIFICATE_VALIDITY_MONTHS,
      contentType: 'application/x-pkcs12',
      lifetimeActions: [{ action: 'AutoRenew', daysBeforeExpiry: CERTIFICATE_RENEW_BEFORE_EXPIRY_DAYS }],
    };
  }

  renewalDue(expiresAt: Date, now: Date): boolean {
    return expiresAt.getTime() - now.getTime() <= CERTIFICATE_RENEW_BEFORE_EXPIRY_DAYS * 86_400_000;
  }

  private certVersion(cert: KeyVaultCertificate): KekVersion {
    const version = cert.properties.version;
    if (!version || !cert.cer) throw new Error(`Key Vault returned certificate ${cert.name} without its DER`);
    const der = Buffer.from(cert.cer);
    const parsed = new X509Certificate(der);
    const jwk = parsed.publicKey.export({ format: 'jwk' });
    if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string')
      throw new Error(`KEK certificate version ${version} does not hold an RSA key`);
    return {
      kekId: this.opts.keyName,
      version,
      publicJwk: { kty: 'RSA', n: jwk.n, e: jwk.e },
      createdAt: cert.properties.createdOn ?? new Date(parsed.validFrom),
      expiresAt: cert.properties.expiresOn ?? new Date(parsed.validTo),
      enabled: cert.properties.enabled !== false,
      x5c: [der.toString('base64')],
    };
  }

  override async getVersion(version: string): Promise<KekVersion> {
    const cached = this.versions.get(version);
    if (cached) return cached;
    this.counters.reads += 1;
    try {
      const v = this.certVersion(await this.certificates.getCertificateVersion(this.opts.keyName, version));
      this.versions.set(version, v);
      return v;
    } catch (err) {
      if (statusOf(err) === 404) throw new KekVersionNotFoundError(version);
      throw err;
    }
  }

  override async listVersions(): Promise<KekVersion[]> {
    const props: CertificateProperties[] = [];
    this.counters.reads += 1;
    try {
      for await (const p of this.certificates.listPropertiesOfCertificateVersions(this.opts.keyName)) props.push(p);
    } catch (err) {
      if (statusOf(err) === 404) return [];
      throw err;
    }
    const result: KekVersion[] = [];
    for (const p of props) {
      if (!p.version) continue;
      const v = await this.getVersion(p.version);
      // The listing is authoritative for the enabled state, which can change.
      result.push({ ...v, enabled: p.enabled !== false });
    }
    return result.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  /** The newest version that is enabled and not expired: what new tenant keys are wrapped with. */
  override async currentVersion(): Promise<KekVersion | undefined> {
    const now = Date.now();
    return (await this.listVersions()).filter((v) => v.enabled && v.expiresAt.getTime() > now).at(-1);
  }

  /**
   * A new certificate version through the policy: the first one from this provider's policy, later
   * ones (a renewal the service asks for) from the policy stored in the vault, as Key Vault's own
   * AutoRenew would. The validity comes from the policy; `expiresAt` is not used.
   */
  override async createVersion(): Promise<KekVersion> {
    this.counters.creates += 1;
    let policy: CertificatePolicy;
    try {
      policy = await this.certificates.getCertificatePolicy(this.opts.keyName);
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
      policy = this.policy();
    }
    const cert = await this.opts.limiter.run(async () => {
      const poller = await this.certificates.beginCreateCertificate(this.opts.keyName, policy, {
        intervalInMs: this.certOpts.pollIntervalMs ?? 1000,
      });
      return poller.pollUntilDone();
    });
    if (!cert.properties.version) throw new Error('Key Vault completed the certificate without a version');
    this.versions.delete(cert.properties.version);
    return this.getVersion(cert.properties.version);
  }

  override async wrap(key: Buffer, version: KekVersion): Promise<Buffer> {
    if (!version.enabled) throw new KekVersionUnusableError(version.version, 'disabled');
    if (version.expiresAt.getTime() <= Date.now()) throw new KekVersionUnusableError(version.version, 'expired');
    return wrapWithPublicKey(version.publicJwk, key);
  }

  override async disableVersion(version: string): Promise<void> {
    await this.opts.limiter.run(() =>
      this.certificates.updateCertificateProperties(this.opts.keyName, version, { enabled: false }),
    );
    const cached = this.versions.get(version);
    if (cached) this.versions.set(version, { ...cached, enabled: false });
  }

  /** The stored policy (issuer, subject, key, lifetime actions), for status reports and tests. */
  async storedPolicy(): Promise<CertificatePolicy> {
    return this.certificates.getCertificatePolicy(this.opts.keyName);
  }
}
