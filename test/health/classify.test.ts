/**
 * The pure parts of the health check: how directory answers are classified (including AD's
 * answers, which the local OpenLDAP cannot produce), the password policy control's BER value,
 * connection planning and DNS overrides.
 */
import { describe, expect, it } from 'vitest';
import { InvalidCredentialsError, UnwillingToPerformError } from 'ldapts';
import { resolveDomain } from '../../activities/health/dns';
import {
  classifyBindFailure,
  classifyTransportError,
  domainBaseDn,
  filetimeToMs,
  parseAdDataCode,
  parsePpolicyValue,
  planConnection,
} from '../../activities/health/ldap';

const adMessage = (code: string) =>
  `80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data ${code}, v4563\u0000`;

describe('Active Directory bind failures (data codes in the diagnostic message)', () => {
  it.each([
    ['52e', 'IncorrectCredentials'],
    ['525', 'IncorrectCredentials'],
    ['532', 'CredentialsExpired'],
    ['773', 'CredentialsExpired'],
    ['533', 'AccountLockedOrDisabled'],
    ['775', 'AccountLockedOrDisabled'],
    ['701', 'AccountLockedOrDisabled'],
    ['530', 'AccountLockedOrDisabled'],
  ])('data %s → %s', (code, type) => {
    expect(parseAdDataCode(adMessage(code))).toBe(code);
    const finding = classifyBindFailure(
      new InvalidCredentialsError(adMessage(code)),
      undefined,
      'svc@corp.contoso.com',
    );
    expect(finding).toMatchObject({ status: 'failed', errorType: type });
    expect(finding.message).toContain(`AD data ${code}`);
  });

  it('an AD data code wins over anything else; unknown codes fall back to incorrect credentials', () => {
    expect(
      classifyBindFailure(new InvalidCredentialsError(adMessage('775')), { error: 'passwordExpired' }, 'x'),
    ).toMatchObject({
      errorType: 'AccountLockedOrDisabled',
    });
    expect(classifyBindFailure(new InvalidCredentialsError(adMessage('999')), undefined, 'x')).toMatchObject({
      errorType: 'IncorrectCredentials',
    });
  });
});

describe('OpenLDAP ppolicy bind failures (password policy response control)', () => {
  it('classifies by the control error, else as incorrect credentials', () => {
    const err = new InvalidCredentialsError('');
    expect(classifyBindFailure(err, { error: 'accountLocked' }, 'x').errorType).toBe('AccountLockedOrDisabled');
    expect(classifyBindFailure(err, { error: 'passwordExpired' }, 'x').errorType).toBe('CredentialsExpired');
    expect(classifyBindFailure(err, { error: 'changeAfterReset' }, 'x').errorType).toBe('CredentialsExpired');
    expect(classifyBindFailure(err, {}, 'x').errorType).toBe('IncorrectCredentials');
    expect(classifyBindFailure(err, undefined, 'x').errorType).toBe('IncorrectCredentials');
  });

  it('other result codes are Unknown with the code in the message', () => {
    const f = classifyBindFailure(new UnwillingToPerformError('unauthenticated bind'), undefined, 'x');
    expect(f).toMatchObject({ status: 'failed', errorType: 'Unknown' });
    expect(f.message).toContain('53');
  });

  it('parses the BER value: errors, timeBeforeExpiration, graceAuthNsRemaining', () => {
    expect(parsePpolicyValue(Buffer.from('3003810101', 'hex'))).toEqual({ error: 'accountLocked' });
    expect(parsePpolicyValue(Buffer.from('3003810100', 'hex'))).toEqual({ error: 'passwordExpired' });
    expect(parsePpolicyValue(Buffer.from('3003810102', 'hex'))).toEqual({ error: 'changeAfterReset' });
    // warning [0] { timeBeforeExpiration [0] 259200 }
    expect(parsePpolicyValue(Buffer.from('3007a005800303f480', 'hex'))).toEqual({ timeBeforeExpiration: 259200 });
    // warning [0] { graceAuthNsRemaining [1] 2 }
    expect(parsePpolicyValue(Buffer.from('3005a003810102', 'hex'))).toEqual({ graceAuthNsRemaining: 2 });
    expect(parsePpolicyValue(Buffer.from('3000', 'hex'))).toEqual({});
    expect(parsePpolicyValue(Buffer.alloc(0))).toEqual({});
    expect(() => parsePpolicyValue(Buffer.from('3005a0', 'hex'))).toThrow();
  });
});

describe('transport errors', () => {
  it('maps timeouts, refusals, resets and TLS failures to DomainControllerUnreachable', () => {
    const withCode = (code: string) => Object.assign(new Error(`x ${code}`), { code });
    expect(classifyTransportError(new Error('Connection timeout')).errorType).toBe('DomainControllerUnreachable');
    expect(classifyTransportError(new Error('BindRequest: Operation timed out')).errorType).toBe(
      'DomainControllerUnreachable',
    );
    for (const code of [
      'ECONNREFUSED',
      'ECONNRESET',
      'EHOSTUNREACH',
      'ETIMEDOUT',
      'DEPTH_ZERO_SELF_SIGNED_CERT',
      'ERR_TLS_CERT_ALTNAME_INVALID',
    ]) {
      expect(classifyTransportError(withCode(code))).toMatchObject({
        status: 'failed',
        errorType: 'DomainControllerUnreachable',
      });
    }
    expect(classifyTransportError(new Error('Connection closed before message response was received.')).errorType).toBe(
      'DomainControllerUnreachable',
    );
  });

  it('never echoes an unknown error message (it could carry anything)', () => {
    const f = classifyTransportError(new TypeError('something with P@ssw0rd inside'));
    expect(f).toMatchObject({ errorType: 'Unknown' });
    expect(f.message).not.toContain('P@ssw0rd');
  });
});

describe('connection planning', () => {
  const target = { domain: 'corp.contoso.com', address: '10.0.0.4', family: 4 as const };

  it('puts the resolved address in the URL and verifies TLS against the domain name', () => {
    expect(planConnection({ urlTemplate: 'ldaps://{domain}:636', startTls: false }, target)).toEqual({
      url: 'ldaps://10.0.0.4:636',
      tlsOptions: { minVersion: 'TLSv1.2', servername: 'corp.contoso.com', host: '10.0.0.4' },
    });
    const ca = Buffer.from('ca');
    expect(planConnection({ urlTemplate: 'ldap://{domain}:389', startTls: true }, target, ca)).toEqual({
      url: 'ldap://10.0.0.4:389',
      startTlsOptions: { minVersion: 'TLSv1.2', ca, servername: 'corp.contoso.com', host: '10.0.0.4' },
    });
    expect(planConnection({ urlTemplate: 'ldap://{domain}:389', startTls: false }, target)).toEqual({
      url: 'ldap://10.0.0.4:389',
    });
    expect(
      planConnection({ urlTemplate: 'ldap://{domain}', startTls: false }, { ...target, address: '::1', family: 6 }).url,
    ).toBe('ldap://[::1]');
  });

  it('a template without {domain} names one fixed server', () => {
    expect(planConnection({ urlTemplate: 'ldaps://dc1.corp.contoso.com:636', startTls: false }, target)).toEqual({
      url: 'ldaps://dc1.corp.contoso.com:636',
      tlsOptions: { minVersion: 'TLSv1.2', servername: 'dc1.corp.contoso.com', host: 'dc1.corp.contoso.com' },
    });
  });

  it('derives the dc= naming context from the domain name', () => {
    expect(domainBaseDn('corp.contoso.test')).toBe('dc=corp,dc=contoso,dc=test');
    expect(domainBaseDn('Corp.Example.')).toBe('dc=Corp,dc=Example');
  });

  it('reads FILETIME expiry values; 0 and the maximum mean never', () => {
    expect(filetimeToMs('116444736000000000')).toBe(0);
    expect(filetimeToMs((116_444_736_000_000_000n + 10_000n * 1_700_000_000_000n).toString())).toBe(1_700_000_000_000);
    expect(filetimeToMs('0')).toBeUndefined();
    expect(filetimeToMs('9223372036854775807')).toBeUndefined();
    expect(filetimeToMs('abc')).toBeUndefined();
  });
});

describe('DNS', () => {
  it('uses overrides first (case-insensitive, trailing dot ignored), then the resolver', async () => {
    const lookup = async () => ({ address: '192.0.2.7', family: 4 });
    expect(
      await resolveDomain('Corp.Contoso.Test.', {
        overrides: { 'corp.contoso.test': '127.0.0.1' },
        timeoutMs: 1000,
        lookup,
      }),
    ).toEqual({
      ok: true,
      address: '127.0.0.1',
      family: 4,
      source: 'override',
    });
    expect(await resolveDomain('other.test', { overrides: {}, timeoutMs: 1000, lookup })).toMatchObject({
      ok: true,
      address: '192.0.2.7',
    });
  });

  it('reports not found and timeouts', async () => {
    const notFound = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND x'), { code: 'ENOTFOUND' });
    };
    expect(await resolveDomain('x.invalid', { overrides: {}, timeoutMs: 1000, lookup: notFound })).toEqual({
      ok: false,
      reason: 'not-found',
      code: 'ENOTFOUND',
    });
    const never = () => new Promise<{ address: string; family: number }>(() => undefined);
    const t0 = Date.now();
    expect(await resolveDomain('slow.test', { overrides: {}, timeoutMs: 200, lookup: never })).toEqual({
      ok: false,
      reason: 'timeout',
    });
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('resolves localhost through the system resolver', async () => {
    expect(await resolveDomain('localhost', { overrides: {}, timeoutMs: 2000 })).toMatchObject({
      ok: true,
      source: 'dns',
    });
  });
});
