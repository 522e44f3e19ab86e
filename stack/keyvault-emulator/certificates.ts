/**
 * The certificates subset of the Key Vault data-plane API, as `@azure/keyvault-certificates`
 * (CertificateClient) drives it:
 *
 *   POST  /certificates/{name}/create          new version from a policy; 202 + pending operation
 *   GET   /certificates/{name}/pending         the operation (inProgress once, then completed)
 *   GET   /certificates/{name}[/{version}]     certificate bundle (cer, x5t, kid, attributes, policy)
 *   PATCH /certificates/{name}[/{version}]     update attributes (enabled) and tags
 *   GET   /certificates/{name}/versions        list versions
 *   GET   /certificates/{name}/policy          the policy; PATCH updates it
 *
 * Each version's key pair lives in the keys store under the same name and version, so
 * `/keys/{name}/{version}` (get, unwrapkey, ...) works as in Key Vault, and it is not exportable.
 * The create operation is pending until polled a second time. Issuer `Self` gives a self-signed certificate; any other issuer name stands for a CA issuer and is
 * served by the emulator's local test CA. A lifetime action `AutoRenew` (days before expiry or
 * percentage of lifetime) makes a new version once the emulator's clock reaches its trigger.
 */
import { createHash, generateKeyPair, randomBytes, randomUUID, webcrypto, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { x509, type CryptoKey, type CryptoKeyPair } from '../../client/x509';

const generateKeyPairAsync = promisify(generateKeyPair);
const SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const KEY_USAGES: Record<string, x509.KeyUsageFlags> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  nonRepudiation: x509.KeyUsageFlags.nonRepudiation,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  dataEncipherment: x509.KeyUsageFlags.dataEncipherment,
  keyAgreement: x509.KeyUsageFlags.keyAgreement,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
};

/** A certificate policy in Key Vault's wire form (snake_case members). */
export interface WirePolicy {
  key_props: { exportable: boolean; kty: 'RSA' | 'RSA-HSM'; key_size: number; reuse_key: boolean };
  secret_props: { contentType: string };
  x509_props: { subject: string; ekus?: string[]; key_usage: string[]; validity_months: number };
  lifetime_actions: Array<{
    trigger: { days_before_expiry?: number; lifetime_percentage?: number };
    action: { action_type: 'AutoRenew' | 'EmailContacts' };
  }>;
  issuer: { name: string };
  attributes: { enabled: boolean; created: number; updated: number };
}

export interface CertVersion {
  version: string;
  /** DER of the leaf certificate. */
  der: Buffer;
  attributes: { enabled: boolean; nbf: number; exp: number; created: number; updated: number };
  tags?: Record<string, string>;
}

export interface CertEntry {
  name: string;
  policy: WirePolicy;
  versions: CertVersion[];
  /** The latest create request; completes when first polled. */
  pending?: {
    requestId: string;
    status: 'inProgress' | 'completed';
    csr: string;
    polled?: boolean;
    run?: () => Promise<void>;
  };
}

export interface CertificateKeyStore {
  /** Adds a version's key pair under /keys/{name}/{version}. */
  addKey(
    name: string,
    version: string,
    kty: 'RSA' | 'RSA-HSM',
    keySize: number,
    keyOps: string[],
    exp: number,
    nbf: number,
    privateKey: KeyObject,
    publicKey: KeyObject,
  ): void;
  setKeyEnabled(name: string, version: string, enabled: boolean): void;
}

export class CertError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const bad = (m: string): CertError => new CertError(400, 'BadParameter', m);
const notFound = (name: string, version?: string): CertError =>
  new CertError(
    404,
    'CertificateNotFound',
    `A certificate with (name/id) ${version ? `${name}/${version}` : name} was not found in this key vault.`,
  );

/** The emulator's test CA: issues certificates for any issuer other than `Self`. */
export interface TestCa {
  certPem: string;
  cert: x509.X509Certificate;
  signingKey: CryptoKey;
}

export async function loadTestCa(certPem: string, keyPem: string): Promise<TestCa> {
  const cert = new x509.X509Certificate(certPem);
  const der = Buffer.from(keyPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, SIGNING, false, ['sign']);
  return { certPem, cert, signingKey: signingKey as unknown as CryptoKey };
}

/** A fresh CA (RSA-2048, ten years) for an emulator started without one. */
export async function generateTestCa(): Promise<TestCa> {
  const keys = (await webcrypto.subtle.generateKey(
    { ...SIGNING, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  )) as unknown as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString('hex'),
    name: 'CN=Key Vault emulator test CA',
    notBefore: new Date(now - 86_400_000),
    notAfter: new Date(now + 3650 * 86_400_000),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), cert, signingKey: keys.privateKey };
}

/** Calendar months added in UTC (the day clamped to the month's end). */
function addMonths(ms: number, months: number): number {
  const d = new Date(ms);
  const first = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + months, 1));
  const last = new Date(Date.UTC(first.getUTCFullYear(), first.getUTCMonth() + 1, 0)).getUTCDate();
  first.setUTCDate(Math.min(d.getUTCDate(), last));
  first.setUTCHours(d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds());
  return first.getTime();
}

function keyOpsFor(usages: string[]): string[] {
  const ops = new Set<string>();
  if (usages.includes('digitalSignature')) ['sign', 'verify'].forEach((o) => ops.add(o));
  if (usages.includes('keyEncipherment')) ['wrapKey', 'unwrapKey', 'encrypt', 'decrypt'].forEach((o) => ops.add(o));
  if (usages.includes('dataEncipherment')) ['encrypt', 'decrypt'].forEach((o) => ops.add(o));
  return [...ops];
}

export function parsePolicy(value: unknown, previous?: WirePolicy, nowS = 0): WirePolicy {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('policy must be an object.');
  const p = value as Record<string, Record<string, unknown> | undefined>;
  const kp = p.key_props ?? {};
  const xp = p.x509_props ?? {};
  const kty = kp.kty ?? previous?.key_props.kty ?? 'RSA';
  if (kty !== 'RSA' && kty !== 'RSA-HSM') throw bad(`The key type '${String(kty)}' is not supported by the emulator.`);
  const keySize = kp.key_size ?? previous?.key_props.key_size ?? 2048;
  if (typeof keySize !== 'number' || ![2048, 3072, 4096].includes(keySize))
    throw bad('key_size must be 2048, 3072 or 4096.');
  const exportable = kp.exportable ?? previous?.key_props.exportable ?? false;
  if (exportable === true) throw bad('Exportable keys are not supported by the emulator.');
  const subject = xp.subject ?? previous?.x509_props.subject;
  if (typeof subject !== 'string' || !/^CN=/i.test(subject))
    throw bad('x509_props.subject must be a distinguished name.');
  const usages = (xp.key_usage ?? previous?.x509_props.key_usage ?? ['digitalSignature', 'keyEncipherment']) as unknown;
  if (!Array.isArray(usages) || !usages.every((u) => typeof u === 'string' && u in KEY_USAGES))
    throw bad('x509_props.key_usage has an unknown usage.');
  const months = xp.validity_months ?? previous?.x509_props.validity_months ?? 12;
  if (typeof months !== 'number' || !Number.isInteger(months) || months < 1 || months > 120)
    throw bad('x509_props.validity_months must be 1 to 120.');
  const actionsRaw = (p.lifetime_actions as unknown) ??
    previous?.lifetime_actions ?? [{ trigger: { lifetime_percentage: 80 }, action: { action_type: 'AutoRenew' } }];
  if (!Array.isArray(actionsRaw)) throw bad('lifetime_actions must be an array.');
  const actions = actionsRaw.map((a: { trigger?: Record<string, unknown>; action?: Record<string, unknown> }) => {
    const days = a?.trigger?.days_before_expiry;
    const pct = a?.trigger?.lifetime_percentage;
    const type = a?.action?.action_type;
    if (type !== 'AutoRenew' && type !== 'EmailContacts') throw bad('action_type must be AutoRenew or EmailContacts.');
    if ((days === undefined) === (pct === undefined))
      throw bad('A trigger needs exactly one of days_before_expiry, lifetime_percentage.');
    if (days !== undefined && (typeof days !== 'number' || days < 1)) throw bad('days_before_expiry must be positive.');
    if (pct !== undefined && (typeof pct !== 'number' || pct < 1 || pct > 99))
      throw bad('lifetime_percentage must be 1 to 99.');
    return {
      trigger: days !== undefined ? { days_before_expiry: days as number } : { lifetime_percentage: pct as number },
      action: { action_type: type as 'AutoRenew' | 'EmailContacts' },
    };
  });
  const issuer = (p.issuer?.name as string | undefined) ?? previous?.issuer.name ?? 'Self';
  if (typeof issuer !== 'string' || issuer === '' || issuer === 'Unknown')
    throw bad('issuer.name must be Self or a CA issuer name (Unknown issuers need a merge, not emulated).');
  const ekus = (xp.ekus as string[] | undefined) ?? previous?.x509_props.ekus;
  return {
    key_props: { exportable: false, kty, key_size: keySize, reuse_key: false },
    secret_props: { contentType: 'application/x-pkcs12' },
    x509_props: { subject, ...(ekus ? { ekus: [...ekus] } : {}), key_usage: [...usages], validity_months: months },
    lifetime_actions: actions,
    issuer: { name: issuer },
    attributes: { enabled: true, created: previous?.attributes.created ?? nowS, updated: nowS },
  };
}

/** When the version's AutoRenew triggers (ms), or undefined when the policy has none. */
function autoRenewAt(policy: WirePolicy, v: CertVersion): number | undefined {
  const action = policy.lifetime_actions.find((a) => a.action.action_type === 'AutoRenew');
  if (!action) return undefined;
  const nbf = v.attributes.nbf * 1000;
  const exp = v.attributes.exp * 1000;
  if (action.trigger.days_before_expiry !== undefined) return exp - action.trigger.days_before_expiry * 86_400_000;
  return nbf + ((exp - nbf) * (action.trigger.lifetime_percentage ?? 80)) / 100;
}

export function createCertificateStore(opts: {
  ca: () => Promise<TestCa>;
  keys: CertificateKeyStore;
  nowMs: () => number;
  /** Persists the change; called after every mutation. */
  persist: () => void;
  initial?: CertEntry[];
}) {
  const certs = new Map<string, CertEntry>((opts.initial ?? []).map((c) => [c.name, c]));
  const nowS = (): number => Math.floor(opts.nowMs() / 1000);

  async function issue(entry: CertEntry): Promise<CertVersion> {
    const { policy } = entry;
    const { privateKey, publicKey } = await generateKeyPairAsync('rsa', {
      modulusLength: policy.key_props.key_size,
      publicExponent: 65537,
    });
    const now = opts.nowMs();
    const notBefore = Math.floor(now / 1000) * 1000;
    const notAfter = Math.floor(addMonths(notBefore, policy.x509_props.validity_months) / 1000) * 1000;
    const spki = publicKey.export({ type: 'spki', format: 'der' });
    const subjectPublic = (await webcrypto.subtle.importKey('spki', spki, SIGNING, true, [
      'verify',
    ])) as unknown as CryptoKey;
    let usage = 0;
    for (const u of policy.x509_props.key_usage) usage |= KEY_USAGES[u] ?? 0;
    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(usage, true),
      await x509.SubjectKeyIdentifierExtension.create(subjectPublic),
    ];
    if (policy.x509_props.ekus?.length) extensions.push(new x509.ExtendedKeyUsageExtension(policy.x509_props.ekus));
    let cert: x509.X509Certificate;
    const serialNumber = `01${randomBytes(15).toString('hex')}`;
    if (policy.issuer.name === 'Self') {
      const signingKey = (await webcrypto.subtle.importKey(
        'pkcs8',
        privateKey.export({ type: 'pkcs8', format: 'der' }),
        SIGNING,
        false,
        ['sign'],
      )) as unknown as CryptoKey;
      cert = await x509.X509CertificateGenerator.create({
        serialNumber,
        subject: policy.x509_props.subject,
        issuer: policy.x509_props.subject,
        notBefore: new Date(notBefore),
        notAfter: new Date(notAfter),
        publicKey: subjectPublic,
        signingKey,
        signingAlgorithm: SIGNING,
        extensions,
      });
    } else {
      const ca = await opts.ca();
      extensions.push(await x509.AuthorityKeyIdentifierExtension.create(ca.cert));
      cert = await x509.X509CertificateGenerator.create({
        serialNumber,
        subject: policy.x509_props.subject,
        issuer: ca.cert.subject,
        notBefore: new Date(notBefore),
        notAfter: new Date(notAfter),
        publicKey: subjectPublic,
        signingKey: ca.signingKey,
        signingAlgorithm: SIGNING,
        extensions,
      });
    }
    const version = randomBytes(16).toString('hex');
    const created = nowS();
    const v: CertVersion = {
      version,
      der: Buffer.from(cert.rawData),
      attributes: { enabled: true, nbf: notBefore / 1000, exp: notAfter / 1000, created, updated: created },
    };
    opts.keys.addKey(
      entry.name,
      version,
      policy.key_props.kty,
      policy.key_props.key_size,
      keyOpsFor(policy.x509_props.key_usage),
      v.attributes.exp,
      v.attributes.nbf,
      privateKey,
      publicKey,
    );
    entry.versions.push(v);
    return v;
  }

  /** Key Vault's renewal: every certificate whose latest version reached its AutoRenew trigger gets a new one. */
  async function runLifetimeActions(): Promise<number> {
    let renewed = 0;
    for (const entry of certs.values()) {
      const latest = entry.versions.at(-1);
      if (!latest || entry.pending?.status === 'inProgress') continue;
      const at = autoRenewAt(entry.policy, latest);
      if (at !== undefined && opts.nowMs() >= at) {
        await issue(entry);
        renewed += 1;
      }
    }
    if (renewed > 0) opts.persist();
    return renewed;
  }

  function find(name: string, version?: string): { entry: CertEntry; v: CertVersion } {
    const entry = certs.get(name);
    if (!entry) throw notFound(name, version);
    const v = version ? entry.versions.find((x) => x.version === version) : entry.versions.at(-1);
    if (!v) throw notFound(name, version);
    return { entry, v };
  }

  const attrs = (a: CertVersion['attributes']) => ({
    ...a,
    recoveryLevel: 'Recoverable+Purgeable',
    recoverableDays: 90,
  });

  function policyJson(base: string, name: string, p: WirePolicy) {
    return { id: `${base}/certificates/${name}/policy`, ...p };
  }

  function bundle(base: string, entry: CertEntry, v: CertVersion) {
    return {
      id: `${base}/certificates/${entry.name}/${v.version}`,
      kid: `${base}/keys/${entry.name}/${v.version}`,
      sid: `${base}/secrets/${entry.name}/${v.version}`,
      x5t: createHash('sha1').update(v.der).digest('base64url'),
      cer: v.der.toString('base64'),
      contentType: entry.policy.secret_props.contentType,
      attributes: attrs(v.attributes),
      policy: policyJson(base, entry.name, entry.policy),
      ...(v.tags ? { tags: { ...v.tags } } : {}),
    };
  }

  function operationJson(base: string, entry: CertEntry) {
    const op = entry.pending!;
    return {
      id: `${base}/certificates/${entry.name}/pending`,
      issuer: { name: entry.policy.issuer.name },
      csr: op.csr,
      cancellation_requested: false,
      status: op.status,
      status_details:
        op.status === 'completed' ? '' : 'Pending certificate created. Certificate request is in progress.',
      target: `${base}/certificates/${entry.name}`,
      request_id: op.requestId,
    };
  }

  type Result = { status: number; body: unknown };

  async function handle(
    method: string,
    seg: string[],
    base: string,
    json: () => Record<string, unknown>,
  ): Promise<Result> {
    await runLifetimeActions();
    const name = seg[1] ?? '';
    if (!/^[0-9a-zA-Z-]{1,127}$/.test(name)) throw bad(`The certificate name '${name}' is invalid.`);
    const sub = seg[2];
    if (seg.length === 3 && sub === 'create' && method === 'POST') {
      const body = json();
      const existing = certs.get(name);
      if (existing?.pending?.status === 'inProgress')
        throw new CertError(409, 'Conflict', 'There is a pending operation for this certificate.');
      const policy = parsePolicy(body.policy ?? existing?.policy, existing?.policy, nowS());
      const entry: CertEntry = existing ?? { name, policy, versions: [] };
      entry.policy = policy;
      certs.set(name, entry);
      const requestId = randomUUID().replace(/-/g, '');
      const pending: CertEntry['pending'] = {
        requestId,
        status: 'inProgress',
        csr: randomBytes(32).toString('base64'),
      };
      pending.run = async () => {
        await issue(entry);
        pending.status = 'completed';
        delete pending.run;
        opts.persist();
      };
      entry.pending = pending;
      opts.persist();
      return { status: 202, body: operationJson(base, entry) };
    }
    if (seg.length === 3 && sub === 'pending' && method === 'GET') {
      const entry = certs.get(name);
      if (!entry?.pending)
        throw new CertError(404, 'PendingCertificateNotFound', `Pending certificate not found: ${name}`);
      // Like a CA issuer, the first look finds the request in progress; the next one finds it done.
      if (entry.pending.run && entry.pending.polled) await entry.pending.run();
      entry.pending.polled = true;
      return { status: 200, body: operationJson(base, entry) };
    }
    if (seg.length === 3 && sub === 'policy') {
      const entry = certs.get(name);
      if (!entry) throw notFound(name);
      if (method === 'PATCH') {
        entry.policy = parsePolicy(json(), entry.policy, nowS());
        opts.persist();
      } else if (method !== 'GET') throw new CertError(405, 'MethodNotAllowed', 'GET or PATCH only.');
      return { status: 200, body: policyJson(base, name, entry.policy) };
    }
    if (seg.length === 3 && sub === 'versions' && method === 'GET') {
      const entry = certs.get(name);
      if (!entry) throw notFound(name);
      return {
        status: 200,
        body: {
          value: entry.versions.map((v) => ({
            id: `${base}/certificates/${name}/${v.version}`,
            x5t: createHash('sha1').update(v.der).digest('base64url'),
            attributes: attrs(v.attributes),
            ...(v.tags ? { tags: { ...v.tags } } : {}),
          })),
          nextLink: null,
        },
      };
    }
    if (seg.length === 2 || seg.length === 3) {
      const version = sub ? sub : undefined;
      if (version !== undefined && !/^[0-9a-f]{32}$/.test(version)) throw notFound(name, version);
      const { entry, v } = find(name, version);
      if (method === 'GET') return { status: 200, body: bundle(base, entry, v) };
      if (method === 'PATCH') {
        const body = json();
        const a = body.attributes as Record<string, unknown> | undefined;
        if (a?.enabled !== undefined) {
          if (typeof a.enabled !== 'boolean') throw bad('attributes.enabled must be a boolean.');
          v.attributes.enabled = a.enabled;
          opts.keys.setKeyEnabled(name, v.version, a.enabled);
        }
        if (body.tags !== undefined) v.tags = { ...(body.tags as Record<string, string>) };
        if (body.policy !== undefined) entry.policy = parsePolicy(body.policy, entry.policy, nowS());
        v.attributes.updated = nowS();
        opts.persist();
        return { status: 200, body: bundle(base, entry, v) };
      }
    }
    throw new CertError(501, 'NotImplemented', `The keyvault-emulator does not implement ${method} /${seg.join('/')}.`);
  }

  return { certs, handle, runLifetimeActions };
}
