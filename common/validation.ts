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
export const MAX_OU_LENGTH = 2048;
export const MAX_DISPLAY_NAME_LENGTH = 256;

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
  if (typeof upn !== 'string' || upn.length > 256) throw fail();
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
