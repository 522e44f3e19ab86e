import { isVaultId } from './vaults';
import type { AncSpec } from './types';
import { permanentFailure } from './errors';

/**
 * Input rules shared by the client SDK (checked before anything is sent) and the workflows'
 * Update validators (checked before anything is recorded). Each failure names the field and says
 * what would be accepted. Pure: safe in workflow code.
 */

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
// Characters Active Directory does not allow in a user logon name.
const UPN_LOCAL_FORBIDDEN = /["/\\[\]:;|=,+*?<>@\s]/;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

export const MAX_DOMAIN_NAME_LENGTH = 255;
export const MAX_ACTOR_LENGTH = 256;
export const MAX_REASON_LENGTH = 1024;
/** Active Directory's longest password, in UTF-16 code units. */
export const MAX_PASSWORD_LENGTH = 256;
// C0 and C1 control characters and DEL: never part of a password a person or AD tooling can enter.
// eslint-disable-next-line no-control-regex
const PASSWORD_FORBIDDEN = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
export const MAX_OU_LENGTH = 2048;
export const MAX_DISPLAY_NAME_LENGTH = 256;

/** A request (Update or signal argument) must be a plain object. */
export function validateRequest<T>(req: T): asserts req is T & Record<string, unknown> {
  if (typeof req !== 'object' || req === null || Array.isArray(req)) {
    throw permanentFailure('InvalidRequest', 'the request must be an object with the documented fields');
  }
}

/** Who asks: recorded in the audit log, so printable and short. */
export function validateActor(actor: unknown): asserts actor is string {
  if (
    typeof actor !== 'string' ||
    actor.trim() === '' ||
    actor.length > MAX_ACTOR_LENGTH ||
    CONTROL_CHARS.test(actor) ||
    LONE_SURROGATE.test(actor)
  ) {
    throw permanentFailure('InvalidActor', `actor must be 1-${MAX_ACTOR_LENGTH} printable characters`);
  }
}

/** An optional free-text reason for the audit log. */
export function validateReason(reason: unknown): asserts reason is string | undefined {
  if (reason === undefined) return;
  if (
    typeof reason !== 'string' ||
    reason.length > MAX_REASON_LENGTH ||
    CONTROL_CHARS.test(reason) ||
    LONE_SURROGATE.test(reason)
  ) {
    throw permanentFailure('InvalidRequest', `reason must be at most ${MAX_REASON_LENGTH} printable characters`);
  }
}

/**
 * The passwords the service accepts, the rule the worker enforces on the opened envelope and the
 * SDK checks before sealing: 1-256 UTF-16 code units (Active Directory's limit), well-formed
 * Unicode, and no control characters (U+0000-U+001F, U+007F-U+009F). Spaces and every other
 * printable character, in any script, are allowed. Returns the failing rule, never the password.
 */
export function passwordRuleBroken(
  password: unknown,
): 'PasswordEmpty' | 'PasswordTooLong' | 'PasswordInvalidCharacters' | undefined {
  if (typeof password !== 'string' || password.length === 0) return 'PasswordEmpty';
  if (password.length > MAX_PASSWORD_LENGTH) return 'PasswordTooLong';
  if (PASSWORD_FORBIDDEN.test(password) || LONE_SURROGATE.test(password)) return 'PasswordInvalidCharacters';
  return undefined;
}

export const PASSWORD_RULE_MESSAGES = {
  PasswordEmpty: 'password must not be empty',
  PasswordTooLong: `password must be at most ${MAX_PASSWORD_LENGTH} UTF-16 code units (Active Directory's limit)`,
  PasswordInvalidCharacters:
    'password must be well-formed Unicode without control characters (U+0000-U+001F, U+007F-U+009F)',
} as const;

export function validateTenantId(tenantId: unknown): asserts tenantId is string {
  if (typeof tenantId !== 'string' || !ID_PATTERN.test(tenantId)) {
    throw permanentFailure(
      'InvalidTenantId',
      'tenantId must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit',
    );
  }
}

export function validateAncId(ancId: unknown): asserts ancId is string {
  if (typeof ancId !== 'string' || !ID_PATTERN.test(ancId)) {
    throw permanentFailure(
      'InvalidAncId',
      'ancId must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit',
    );
  }
}

export function isValidDomainName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_DOMAIN_NAME_LENGTH) return false;
  const labels = name.split('.');
  if (labels.length < 2) return false;
  if (!labels.every((l) => DOMAIN_LABEL.test(l))) return false;
  return !/^[0-9]+$/.test(labels[labels.length - 1] ?? '');
}

export function validateDomainName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !isValidDomainName(name)) {
    throw permanentFailure(
      'InvalidDomainName',
      `adDomainName must be a fully qualified domain name such as corp.contoso.com (at most ${MAX_DOMAIN_NAME_LENGTH} characters, labels of letters, digits and "-")`,
    );
  }
}

export function validateUpn(upn: unknown): asserts upn is string {
  const fail = () =>
    permanentFailure(
      'InvalidUpn',
      'adDomainUsername must be in user principal name form, such as svcDomainJoin@corp.contoso.com',
    );
  if (typeof upn !== 'string' || upn.length > 256 || CONTROL_CHARS.test(upn)) throw fail();
  const at = upn.lastIndexOf('@');
  if (at <= 0 || upn.indexOf('@') !== at) throw fail();
  const local = upn.slice(0, at);
  const suffix = upn.slice(at + 1);
  if (local.length > 64 || UPN_LOCAL_FORBIDDEN.test(local) || local.startsWith('.') || local.endsWith('.'))
    throw fail();
  if (!isValidDomainName(suffix)) throw fail();
}

/** Splits a DN on unescaped commas. */
function splitDn(dn: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < dn.length; i++) {
    const ch = dn[i];
    if (ch === '\\' && i + 1 < dn.length) {
      current += ch + dn[i + 1];
      i++;
    } else if (ch === ',') {
      parts.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current.trim());
  return parts;
}

export function validateOrganizationalUnit(ou: unknown, domainName: string): asserts ou is string | undefined {
  if (ou === undefined) return;
  const fail = (why: string) =>
    permanentFailure(
      'InvalidOrganizationalUnit',
      `organizationalUnit ${why}, e.g. OU=CloudPCs,DC=corp,DC=contoso,DC=com`,
    );
  if (typeof ou !== 'string' || ou.trim() === '') throw fail('must be a distinguished name when given');
  if (ou.length > MAX_OU_LENGTH || CONTROL_CHARS.test(ou))
    throw fail(`must be at most ${MAX_OU_LENGTH} printable characters`);
  const rdns = splitDn(ou).map((rdn) => {
    const eq = rdn.indexOf('=');
    return {
      type: rdn.slice(0, eq).trim().toUpperCase(),
      value: rdn.slice(eq + 1).trim(),
      ok: eq > 0 && eq < rdn.length - 1,
    };
  });
  if (!rdns.every((r) => r.ok && ['OU', 'DC', 'CN'].includes(r.type)))
    throw fail('must be a list of OU=, CN= and DC= parts');
  if (!rdns.some((r) => r.type === 'OU')) throw fail('must name at least one OU');
  const dcs = rdns.filter((r) => r.type === 'DC').map((r) => r.value.toLowerCase());
  if (dcs.length > 0 && dcs.join('.') !== domainName.toLowerCase()) throw fail(`must lie in the domain ${domainName}`);
}

export function validateDisplayName(name: unknown): asserts name is string {
  if (
    typeof name !== 'string' ||
    name.trim() === '' ||
    name.length > MAX_DISPLAY_NAME_LENGTH ||
    CONTROL_CHARS.test(name)
  ) {
    throw permanentFailure(
      'InvalidDisplayName',
      `displayName must be 1-${MAX_DISPLAY_NAME_LENGTH} printable characters`,
    );
  }
}

export function validateAncSpec(spec: AncSpec): void {
  validateRequest(spec);
  validateDisplayName(spec.displayName);
  validateDomainName(spec.adDomainName);
  validateOrganizationalUnit(spec.organizationalUnit, spec.adDomainName);
  validateUpn(spec.adDomainUsername);
}

export function validateEnvelopeShape(envelope: unknown): asserts envelope is string {
  if (typeof envelope !== 'string' || envelope.length > 8192 || envelope.split('.').length !== 5) {
    throw permanentFailure('InvalidEnvelope', 'passwordEnvelope must be the compact JWE made by the client SDK');
  }
}

/** The vault a client sealed for: absent (the first vault) or a vault id. */
export function validateVaultId(vaultId: unknown): asserts vaultId is string | undefined {
  if (vaultId !== undefined && !isVaultId(vaultId)) {
    throw permanentFailure('InvalidVaultId', 'vaultId must be a vault id: a-z, 0-9 and -, 1 to 20 characters');
  }
}
