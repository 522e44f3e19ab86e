/**
 * The "AD domain join" health check: bind to a domain controller with the ANC's stored credential,
 * then look for the OU. Works against Active Directory and against OpenLDAP with the ppolicy
 * overlay (the local test directory, stack/ldap/up.sh).
 *
 * UPN binds. AD accepts `user@domain` as the bind name; OpenLDAP binds by DN only and refuses a
 * UPN with invalidDNSyntax (34). `upnBind` chooses:
 *   - 'direct': bind with the UPN (AD).
 *   - 'lookup': find the DN first with an anonymous search for (userPrincipalName=<upn>) under the
 *     domain's dc= base, then bind with that DN (directories that bind by DN and allow that search).
 *   - 'auto' (default): bind with the UPN; only if the server answers invalidDNSyntax, which means it
 *     did not even consider the password, fall back to the lookup on the same connection.
 *
 * Classifying bind failures. Every bind carries the (non-critical) password policy request control
 * (draft-behera-ldap-password-policy); AD ignores it, OpenLDAP's ppolicy answers with a response
 * control that ldapts parses into our control instance. What the servers return:
 *   - AD: invalidCredentials (49) with a diagnostic message "... AcceptSecurityContext error, data
 *     <code>, ..."; codes 52e/525 → IncorrectCredentials, 532/773 → CredentialsExpired,
 *     533/530/531/701/775 → AccountLockedOrDisabled.
 *   - OpenLDAP + ppolicy (observed with slapd 2.5.13): 49 for all of wrong password, locked
 *     (pwdAccountLockedTime), disabled (pwdEndTime in the past) and expired (pwdMaxAge exceeded, no
 *     grace logins), with no diagnostic text; the response control says accountLocked (locked and
 *     disabled; needs `ppolicy_use_lockout`, otherwise a locked account is indistinguishable from a
 *     wrong password) or passwordExpired (only when the password itself was right). A password an
 *     administrator reset under pwdMustChange binds successfully with error changeAfterReset, and
 *     every later operation fails with insufficientAccess "Operations are restricted to ...".
 *     A successful bind within pwdExpireWarning carries timeBeforeExpiration (seconds).
 * The password never appears in a message, a log line or an error we produce.
 */
import { readFile } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import { Client, Control, EqualityFilter, OrFilter, ResultCodeError, type BerReader } from 'ldapts';
import type { HealthErrorType } from '../../common/types';

export type UpnBindMode = 'auto' | 'direct' | 'lookup';

/** The `ldap` section of the worker config, plus the options this check adds (all optional). */
export interface LdapProbeSettings {
  /** ldap:// or ldaps:// URL; `{domain}` is replaced with the resolved address of the AD domain. */
  urlTemplate: string;
  startTls: boolean;
  /** Bounds the TCP connect and each LDAP operation. */
  timeoutMs: number;
  caPath?: string;
  upnBind?: UpnBindMode;
  /** A password that expires within this many days makes the check a warning. Default 14. */
  passwordExpiryWarningDays?: number;
}

export const DEFAULT_EXPIRY_WARNING_DAYS = 14;

/**
 * HealthErrorType has no "expiring soon" member and a warning must carry an error type (the
 * health_checks table requires one when the status is not 'passed'); the nearest is this one.
 */
export const EXPIRY_WARNING_ERROR_TYPE: HealthErrorType = 'CredentialsExpiringSoon';

export interface ProbeTarget {
  /** The AD domain name as the ANC has it (for TLS server names and the dc= base). */
  domain: string;
  /** The address DNS resolution gave for the domain. */
  address: string;
  family: 4 | 6;
  upn: string;
  password: string;
  organizationalUnit?: string | null;
}

export interface ProbeFinding {
  status: 'passed' | 'failed' | 'warning';
  errorType?: HealthErrorType;
  message?: string;
}

// ------------------------------------------------------------------ password policy control

export const PPOLICY_OID = '1.3.6.1.4.1.42.2.27.8.5.1';

const PPOLICY_ERRORS = [
  'passwordExpired',
  'accountLocked',
  'changeAfterReset',
  'passwordModNotAllowed',
  'mustSupplyOldPassword',
  'insufficientPasswordQuality',
  'passwordTooShort',
  'passwordTooYoung',
  'passwordInHistory',
] as const;
export type PpolicyError = (typeof PPOLICY_ERRORS)[number] | 'unknown';

export interface PpolicyResponse {
  timeBeforeExpiration?: number;
  graceAuthNsRemaining?: number;
  error?: PpolicyError;
}

interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function readTlv(buf: Buffer, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new Error('truncated BER');
  const tag = buf[offset] as number;
  let len = buf[offset + 1] as number;
  let start = offset + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error('bad BER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  if (start + len > limit) throw new Error('truncated BER');
  return { tag, start, end: start + len };
}

function readUnsigned(buf: Buffer, tlv: Tlv): number {
  let v = 0;
  for (let i = tlv.start; i < tlv.end; i++) v = v * 256 + (buf[i] as number);
  return v;
}

/**
 * PasswordPolicyResponseValue ::= SEQUENCE {
 *   warning [0] CHOICE { timeBeforeExpiration [0] INTEGER, graceAuthNsRemaining [1] INTEGER } OPTIONAL,
 *   error   [1] ENUMERATED { passwordExpired(0), accountLocked(1), changeAfterReset(2), ... } OPTIONAL }
 */
export function parsePpolicyValue(value: Buffer): PpolicyResponse {
  const out: PpolicyResponse = {};
  if (value.length === 0) return out;
  const seq = readTlv(value, 0, value.length);
  if (seq.tag !== 0x30) throw new Error('password policy response is not a SEQUENCE');
  let p = seq.start;
  while (p < seq.end) {
    const el = readTlv(value, p, seq.end);
    if (el.tag === 0xa0) {
      const inner = readTlv(value, el.start, el.end);
      if (inner.tag === 0x80) out.timeBeforeExpiration = readUnsigned(value, inner);
      else if (inner.tag === 0x81) out.graceAuthNsRemaining = readUnsigned(value, inner);
    } else if (el.tag === 0x81) {
      out.error = PPOLICY_ERRORS[readUnsigned(value, el)] ?? 'unknown';
    }
    p = el.end;
  }
  return out;
}

/**
 * The request control (no value). ldapts parses a response control of the same OID into the
 * request control instance, so after the bind `response` holds what the server said.
 */
export class PasswordPolicyControl extends Control {
  response: PpolicyResponse | undefined;
  constructor() {
    super(PPOLICY_OID, { critical: false });
  }
  protected override parseControl(reader: BerReader): void {
    try {
      this.response = parsePpolicyValue(reader.buffer);
    } catch {
      this.response = { error: 'unknown' };
    }
  }
}

// ------------------------------------------------------------------ classification

/** The AD sub-status in a bind failure's diagnostic message ("... data 52e, v4563"). */
export function parseAdDataCode(diagnostic: string): string | undefined {
  return /\bdata ([0-9a-f]{3,8})\b/i.exec(diagnostic)?.[1]?.toLowerCase();
}

const AD_CODES: Record<string, { type: HealthErrorType; what: string }> = {
  '525': { type: 'IncorrectCredentials', what: 'the account does not exist' },
  '52e': { type: 'IncorrectCredentials', what: 'the user name or password is incorrect' },
  '530': { type: 'AccountLockedOrDisabled', what: 'the account may not log on at this time' },
  '531': { type: 'AccountLockedOrDisabled', what: 'the account may not log on from this workstation' },
  '532': { type: 'CredentialsExpired', what: 'the password has expired' },
  '533': { type: 'AccountLockedOrDisabled', what: 'the account is disabled' },
  '568': { type: 'AccountLockedOrDisabled', what: 'the account has too many security identifiers' },
  '701': { type: 'AccountLockedOrDisabled', what: 'the account has expired' },
  '773': { type: 'CredentialsExpired', what: 'the password must be changed before it can be used' },
  '775': { type: 'AccountLockedOrDisabled', what: 'the account is locked out' },
};

const LDAP_INVALID_CREDENTIALS = 49;
const LDAP_INVALID_DN_SYNTAX = 34;
const LDAP_NO_SUCH_OBJECT = 32;
const LDAP_INSUFFICIENT_ACCESS = 50;
const LDAP_SIZE_LIMIT_EXCEEDED = 4;
const LDAP_REFERRAL = 10;
const LDAP_STRONG_AUTH_REQUIRED = 8;
const LDAP_CONFIDENTIALITY_REQUIRED = 13;

function resultCode(err: unknown): number | undefined {
  return err instanceof ResultCodeError && typeof err.code === 'number' ? err.code : undefined;
}

function isRestrictedAfterReset(err: unknown): boolean {
  return (
    resultCode(err) === LDAP_INSUFFICIENT_ACCESS && err instanceof Error && /restricted to bind/i.test(err.message)
  );
}

/** Classifies a failed simple bind with the stored credential. */
export function classifyBindFailure(err: unknown, ppolicy: PpolicyResponse | undefined, who: string): ProbeFinding {
  const code = resultCode(err);
  if (code === undefined) return classifyTransportError(err);
  if (code === LDAP_INVALID_CREDENTIALS) {
    const ad = err instanceof Error ? parseAdDataCode(err.message) : undefined;
    const known = ad ? AD_CODES[ad] : undefined;
    if (known) return failed(known.type, `the domain controller refused ${who}: ${known.what} (AD data ${ad})`);
    if (ppolicy?.error === 'accountLocked') {
      return failed(
        'AccountLockedOrDisabled',
        `the domain controller refused ${who}: the account is locked or disabled`,
      );
    }
    if (ppolicy?.error === 'passwordExpired') {
      return failed('CredentialsExpired', `the domain controller refused ${who}: the password has expired`);
    }
    if (ppolicy?.error === 'changeAfterReset') {
      return failed(
        'CredentialsExpired',
        `the domain controller refused ${who}: the password must be changed before it can be used`,
      );
    }
    return failed(
      'IncorrectCredentials',
      `the domain controller refused ${who}: the user name or password is incorrect`,
    );
  }
  if (code === LDAP_STRONG_AUTH_REQUIRED || code === LDAP_CONFIDENTIALITY_REQUIRED) {
    return failed(
      'Unknown',
      `the domain controller requires a protected connection for binds (LDAP ${code}): use ldaps:// or StartTLS`,
    );
  }
  return failed('Unknown', `the domain controller answered the bind of ${who} with LDAP result ${code}`);
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'EADDRNOTAVAIL',
]);

/** Errors that are not LDAP results: the connection, TLS, or a timeout. */
export function classifyTransportError(err: unknown): ProbeFinding {
  const code = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : undefined;
  const message = err instanceof Error ? err.message : '';
  if (message === 'Connection timeout') {
    return failed('DomainControllerUnreachable', 'no connection to the domain controller within the timeout');
  }
  if (/Operation timed out/.test(message)) {
    return failed('DomainControllerUnreachable', 'the domain controller did not answer within the timeout');
  }
  if (code === 'ECONNREFUSED')
    return failed('DomainControllerUnreachable', 'the domain controller refused the connection (ECONNREFUSED)');
  if (code && NETWORK_CODES.has(code))
    return failed('DomainControllerUnreachable', `network error talking to the domain controller (${code})`);
  if (
    code &&
    (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || /CERT|SELF_SIGNED|UNABLE_TO_|ISSUER/.test(code))
  ) {
    return failed('DomainControllerUnreachable', `TLS with the domain controller failed (${code})`);
  }
  if (/Connection closed|Socket error/.test(message)) {
    return failed('DomainControllerUnreachable', 'the domain controller closed the connection');
  }
  const name = err instanceof Error ? err.name : typeof err;
  return failed('Unknown', `unexpected error talking to the domain controller (${code ?? name})`);
}

function failed(errorType: HealthErrorType, message: string): ProbeFinding {
  return { status: 'failed', errorType, message };
}

// ------------------------------------------------------------------ connection

export interface ConnectionPlan {
  url: string;
  /** For ldaps:// only (ldapts treats any tlsOptions as "connect with TLS"). */
  tlsOptions?: ConnectionOptions;
  /** For StartTLS on an ldap:// connection. */
  startTlsOptions?: ConnectionOptions;
}

/**
 * The URL to connect to: `{domain}` becomes the resolved address (so the DNS answer we checked,
 * including overrides, is the one used), while TLS still verifies the certificate against the
 * domain name. A template without `{domain}` names one fixed server for every domain.
 */
export function planConnection(
  settings: Pick<LdapProbeSettings, 'urlTemplate' | 'startTls'>,
  target: Pick<ProbeTarget, 'domain' | 'address' | 'family'>,
  ca?: Buffer,
): ConnectionPlan {
  const substituted = settings.urlTemplate.includes('{domain}');
  const host = target.family === 6 ? `[${target.address}]` : target.address;
  const url = settings.urlTemplate.split('{domain}').join(host);
  const parsed = new URL(url);
  const urlHost = parsed.hostname.replace(/^\[|\]$/g, '');
  const tls: ConnectionOptions = { minVersion: 'TLSv1.2', ...(ca ? { ca } : {}) };
  const serverName = substituted ? target.domain.replace(/\.$/, '') : urlHost;
  // Node sends no SNI for an IP literal and checks it against the certificate's IP SANs.
  const identity: ConnectionOptions = /^[0-9.]+$|:/.test(serverName)
    ? { host: serverName }
    : { servername: serverName, host: urlHost };
  if (parsed.protocol === 'ldaps:') return { url, tlsOptions: { ...tls, ...identity } };
  if (settings.startTls) return { url, startTlsOptions: { ...tls, ...identity } };
  return { url };
}

/** dc=corp,dc=contoso,dc=com for corp.contoso.com: the domain's naming context in AD. */
export function domainBaseDn(domain: string): string {
  return domain
    .replace(/\.$/, '')
    .split('.')
    .map((label) => `dc=${escapeDnValue(label)}`)
    .join(',');
}

function escapeDnValue(value: string): string {
  return value.replace(/[,=+<>#;"\\]/g, (c) => `\\${c}`).replace(/^ | $/g, (c) => `\\${c}`);
}

// ------------------------------------------------------------------ the probe

/**
 * Binds with the stored credential and checks the OU. Never throws for anything the directory or
 * the network does; the finding says what happened.
 */
export async function probeDirectory(
  settings: LdapProbeSettings,
  target: ProbeTarget,
  nowMs: number = Date.now(),
): Promise<ProbeFinding> {
  let ca: Buffer | undefined;
  if (settings.caPath) ca = await readFile(settings.caPath);
  const plan = planConnection(settings, target, ca);
  const client = new Client({
    url: plan.url,
    timeout: settings.timeoutMs,
    connectTimeout: settings.timeoutMs,
    ...(plan.tlsOptions ? { tlsOptions: plan.tlsOptions } : {}),
  });
  const who = target.upn;
  try {
    if (plan.startTlsOptions) {
      try {
        await client.startTLS(plan.startTlsOptions);
      } catch (err) {
        const code = resultCode(err);
        if (code !== undefined)
          return failed('DomainControllerUnreachable', `the domain controller refused StartTLS (LDAP ${code})`);
        return classifyTransportError(err);
      }
    }

    // 1. Bind with the stored credential.
    const mode = settings.upnBind ?? 'auto';
    let boundDn: string | undefined;
    let ppolicy = new PasswordPolicyControl();
    let bindError: unknown;
    if (mode === 'direct' || mode === 'auto') {
      bindError = await client.bind(target.upn, target.password, ppolicy).then(
        () => undefined,
        (err: unknown) => err ?? new Error('bind failed'),
      );
    }
    if (mode === 'lookup' || (mode === 'auto' && resultCode(bindError) === LDAP_INVALID_DN_SYNTAX)) {
      const found = await lookupDn(client, target);
      if ('finding' in found) return found.finding;
      boundDn = found.dn;
      ppolicy = new PasswordPolicyControl();
      bindError = await client.bind(found.dn, target.password, ppolicy).then(
        () => undefined,
        (err: unknown) => err ?? new Error('bind failed'),
      );
    }
    if (bindError !== undefined) return classifyBindFailure(bindError, ppolicy.response, who);

    const policy = ppolicy.response;
    if (policy?.error === 'changeAfterReset') {
      return failed(
        'CredentialsExpired',
        `${who} binds, but its password was reset by an administrator and must be changed before it can be used`,
      );
    }

    // 2. The OU the Cloud PCs are joined into must exist.
    if (target.organizationalUnit) {
      const ou = await checkOrganizationalUnit(client, target.organizationalUnit);
      if (ou) return ou;
    }

    // 3. Passed; a warning if the password expires soon (ppolicy control, else AD's computed attribute).
    const warnDays = settings.passwordExpiryWarningDays ?? DEFAULT_EXPIRY_WARNING_DAYS;
    if (policy?.graceAuthNsRemaining !== undefined) {
      return {
        status: 'warning',
        errorType: EXPIRY_WARNING_ERROR_TYPE,
        message: `the password of ${who} has expired; the directory allows ${policy.graceAuthNsRemaining} more grace logins`,
      };
    }
    let expiresAtMs: number | undefined;
    if (policy?.timeBeforeExpiration !== undefined) expiresAtMs = nowMs + policy.timeBeforeExpiration * 1000;
    else expiresAtMs = await readAdPasswordExpiry(client, target, boundDn);
    if (expiresAtMs !== undefined && expiresAtMs - nowMs < warnDays * 86_400_000) {
      const days = Math.max(0, Math.floor((expiresAtMs - nowMs) / 86_400_000));
      return {
        status: 'warning',
        errorType: EXPIRY_WARNING_ERROR_TYPE,
        message: `the password of ${who} expires in ${days} day${days === 1 ? '' : 's'} (${new Date(expiresAtMs).toISOString()}): change it in the directory and update the ANC`,
      };
    }
    return { status: 'passed' };
  } catch (err) {
    const code = resultCode(err);
    if (code !== undefined) return failed('Unknown', `the domain controller answered with LDAP result ${code}`);
    return classifyTransportError(err);
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

async function lookupDn(client: Client, target: ProbeTarget): Promise<{ dn: string } | { finding: ProbeFinding }> {
  const base = domainBaseDn(target.domain);
  try {
    const { searchEntries } = await client.search(base, {
      scope: 'sub',
      filter: new EqualityFilter({ attribute: 'userPrincipalName', value: target.upn }),
      attributes: ['1.1'],
      sizeLimit: 2,
    });
    if (searchEntries.length === 0) {
      return {
        finding: failed('IncorrectCredentials', `no account with the user name ${target.upn} exists in ${base}`),
      };
    }
    if (searchEntries.length > 1) {
      return { finding: failed('Unknown', `several accounts in ${base} have the user name ${target.upn}`) };
    }
    return { dn: (searchEntries[0] as { dn: string }).dn };
  } catch (err) {
    const code = resultCode(err);
    if (code === undefined) return { finding: classifyTransportError(err) };
    if (code === LDAP_SIZE_LIMIT_EXCEEDED) {
      return { finding: failed('Unknown', `several accounts in ${base} have the user name ${target.upn}`) };
    }
    if (code === LDAP_NO_SUCH_OBJECT || code === LDAP_REFERRAL) {
      return { finding: failed('Unknown', `the domain controller does not hold the naming context ${base}`) };
    }
    return {
      finding: failed(
        'Unknown',
        `the domain controller refused the anonymous lookup of ${target.upn} (LDAP ${code}); a directory that accepts UPN binds should use the direct mode`,
      ),
    };
  }
}

async function checkOrganizationalUnit(client: Client, ou: string): Promise<ProbeFinding | undefined> {
  try {
    const { searchEntries } = await client.search(ou, {
      scope: 'base',
      filter: new OrFilter({
        filters: [
          new EqualityFilter({ attribute: 'objectClass', value: 'organizationalUnit' }),
          new EqualityFilter({ attribute: 'objectClass', value: 'container' }),
        ],
      }),
      attributes: ['1.1'],
    });
    if (searchEntries.length === 0) {
      return failed('OrganizationalUnitNotFound', `${ou} exists but is not an organizational unit or container`);
    }
    return undefined;
  } catch (err) {
    if (isRestrictedAfterReset(err)) {
      return failed(
        'CredentialsExpired',
        'the password was reset by an administrator and must be changed before it can be used',
      );
    }
    const code = resultCode(err);
    if (code === undefined) return classifyTransportError(err);
    if (code === LDAP_NO_SUCH_OBJECT || code === LDAP_INVALID_DN_SYNTAX || code === LDAP_REFERRAL) {
      return failed('OrganizationalUnitNotFound', `the organizational unit ${ou} was not found in the domain`);
    }
    if (code === LDAP_INSUFFICIENT_ACCESS) {
      return failed('OrganizationalUnitNotFound', `the account may not read the organizational unit ${ou}`);
    }
    return failed('Unknown', `looking up the organizational unit answered LDAP result ${code}`);
  }
}

/** 100-ns intervals between 1601-01-01 and 1970-01-01. */
const FILETIME_UNIX_EPOCH = 116_444_736_000_000_000n;
const FILETIME_NEVER = 0x7fff_ffff_ffff_ffffn;

/** AD's msDS-UserPasswordExpiryTimeComputed (FILETIME) as ms since 1970; undefined for "never". */
export function filetimeToMs(value: string): number | undefined {
  if (!/^-?\d+$/.test(value)) return undefined;
  const ft = BigInt(value);
  if (ft <= 0n || ft >= FILETIME_NEVER) return undefined;
  return Number((ft - FILETIME_UNIX_EPOCH) / 10_000n);
}

/** Best effort: AD computes the password expiry per user. Any problem reading it means "unknown". */
async function readAdPasswordExpiry(
  client: Client,
  target: ProbeTarget,
  boundDn: string | undefined,
): Promise<number | undefined> {
  const attribute = 'msDS-UserPasswordExpiryTimeComputed';
  try {
    const { searchEntries } = boundDn
      ? await client.search(boundDn, { scope: 'base', attributes: [attribute] })
      : await client.search(domainBaseDn(target.domain), {
          scope: 'sub',
          filter: new EqualityFilter({ attribute: 'userPrincipalName', value: target.upn }),
          attributes: [attribute],
          sizeLimit: 2,
        });
    if (searchEntries.length !== 1) return undefined;
    const entry = searchEntries[0] as Record<string, unknown>;
    const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
    const raw = key ? entry[key] : undefined;
    const value = Array.isArray(raw) ? raw[0] : raw;
    return typeof value === 'string' ? filetimeToMs(value) : undefined;
  } catch {
    return undefined;
  }
}
