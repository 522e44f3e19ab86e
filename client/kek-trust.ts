import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { PublicKek } from '../common/types';

/**
 * How a client decides that the public key the service's keyring publishes really is the
 * service's KEK, before it seals a password for it:
 *
 *  - certificate (certificate mode): the published chain (`x5c`) leads to a configured trust anchor
 *    (the CA that issues the KEK certificate), every certificate in it is within its validity, the
 *    leaf has the configured subject and allows keyEncipherment, and the published key is the
 *    leaf's. A certificate Key Vault renews is accepted without any client change.
 *  - pins (key mode, weaker): the key id and version must be listed with their public key's SHA-256
 *    JWK thumbprint (RFC 7638). Every new KEK version needs a new pin on every client.
 *  - unverified: no check (development against the local KEK only; refused in production).
 */
export type KekTrust =
  { trustAnchorPem: string | string[]; subject: string } | { pins: KekPin[] } | { unverified: true };

export interface KekPin {
  /** "<kekId>/<version>" as in the published key's `kid`. */
  kid: string;
  /** base64url SHA-256 JWK thumbprint (RFC 7638) of the version's public key. */
  thumbprint: string;
}

/** The published key failed the client's checks: nothing was sealed or sent. */
export class KekUntrustedError extends Error {
  readonly type = 'KekUntrusted' as const;
  constructor(message: string) {
    super(`the service's published key is not trusted: ${message}`);
    this.name = 'KekUntrustedError';
  }
}

/** RFC 7638 thumbprint of an RSA public JWK (SHA-256, base64url). */
export function jwkThumbprint(jwk: { n: string; e: string }): string {
  return createHash('sha256').update(`{"e":"${jwk.e}","kty":"RSA","n":"${jwk.n}"}`).digest('base64url');
}

function splitPems(text: string): string[] {
  const pems = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!pems?.length) throw new Error('no PEM certificate found');
  return pems;
}

/**
 * The trust configured in the environment:
 *   ANC_KEK_TRUST_ANCHOR   the CA certificate(s), PEM text or the path of a PEM file
 *   ANC_KEK_SUBJECT        the KEK certificate's subject (default CN=anc-credential-kek)
 *   ANC_KEK_PINS           key mode: <kekId>/<version>=<thumbprint>,...
 *   ANC_KEK_TRUST=unverified  no check (refused with NODE_ENV=production)
 * Undefined when none is set.
 */
export function kekTrustFromEnv(env: NodeJS.ProcessEnv = process.env): KekTrust | undefined {
  if (env.ANC_KEK_TRUST?.trim() === 'unverified') {
    if (env.NODE_ENV === 'production') throw new KekUntrustedError('ANC_KEK_TRUST=unverified is refused in production');
    return { unverified: true };
  }
  const anchor = env.ANC_KEK_TRUST_ANCHOR?.trim();
  if (anchor) {
    const text = anchor.startsWith('-----BEGIN') ? anchor : existsSync(anchor) ? readFileSync(anchor, 'utf8') : '';
    if (!text) throw new KekUntrustedError('ANC_KEK_TRUST_ANCHOR is neither PEM text nor a readable PEM file');
    return { trustAnchorPem: splitPems(text), subject: env.ANC_KEK_SUBJECT?.trim() || 'CN=anc-credential-kek' };
  }
  const pins = env.ANC_KEK_PINS?.trim();
  if (pins) {
    return {
      pins: pins
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)
        .map((p) => {
          const [kid, thumbprint] = p.split('=');
          if (!kid || !thumbprint)
            throw new KekUntrustedError(`ANC_KEK_PINS entry "${p}" must be <kekId>/<version>=<thumbprint>`);
          return { kid, thumbprint };
        }),
    };
  }
  return undefined;
}

/** "CN=a, O=b" and Node's "CN=a\nO=b" compare equal. */
function normaliseDn(dn: string): string {
  return dn
    .split(/\n|,(?=\s*[A-Za-z.0-9]+=)/)
    .map((rdn) => rdn.trim())
    .filter(Boolean)
    .join('\n');
}

function withinValidity(cert: X509Certificate, now: Date, what: string): void {
  if (now.getTime() < new Date(cert.validFrom).getTime()) throw new KekUntrustedError(`${what} is not valid yet`);
  if (now.getTime() > new Date(cert.validTo).getTime()) throw new KekUntrustedError(`${what} has expired`);
}

/**
 * Rejects with KekUntrustedError unless `kek` passes `trust` at `now`. Asynchronous because the
 * certificate parser for the key-usage check loads on first use: commands that never seal (such as
 * `anc get`) do not pay for it at start-up.
 */
export async function verifyPublicKek(kek: PublicKek, trust: KekTrust | undefined, now = new Date()): Promise<void> {
  if (!trust)
    throw new KekUntrustedError(
      'no trust anchor or pin is configured (ANC_KEK_TRUST_ANCHOR, ANC_KEK_PINS, or the SDK option kekTrust)',
    );
  if ('unverified' in trust) return;
  if (kek.publicJwk?.kty !== 'RSA' || typeof kek.publicJwk.n !== 'string' || typeof kek.publicJwk.e !== 'string')
    throw new KekUntrustedError('the published key is not an RSA key');
  if (kek.publicJwk.kid !== `${kek.kekId}/${kek.version}`)
    throw new KekUntrustedError('the published key id does not name the published version');

  if ('pins' in trust) {
    const pin = trust.pins.find((p) => p.kid === kek.publicJwk.kid);
    if (!pin) throw new KekUntrustedError(`KEK version ${kek.publicJwk.kid} is not pinned`);
    if (pin.thumbprint !== jwkThumbprint(kek.publicJwk))
      throw new KekUntrustedError(`the key published as ${kek.publicJwk.kid} does not match its pin`);
    return;
  }

  if (!kek.x5c?.length) throw new KekUntrustedError('no certificate chain (x5c) is published with the key');
  let chain: X509Certificate[];
  let anchors: X509Certificate[];
  try {
    chain = kek.x5c.map((der) => new X509Certificate(Buffer.from(der, 'base64')));
    anchors = (Array.isArray(trust.trustAnchorPem) ? trust.trustAnchorPem : [trust.trustAnchorPem])
      .flatMap(splitPems)
      .map((pem) => new X509Certificate(pem));
  } catch {
    throw new KekUntrustedError('the certificate chain or the trust anchor cannot be parsed');
  }
  const leaf = chain[0] as X509Certificate;

  // Each certificate is issued (and signed) by the next; the last by a trust anchor.
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i] as X509Certificate;
    withinValidity(cert, now, i === 0 ? 'the KEK certificate' : `chain certificate ${i}`);
    const issuer = chain[i + 1];
    if (issuer) {
      if (!issuer.ca || !cert.checkIssued(issuer) || !cert.verify(issuer.publicKey))
        throw new KekUntrustedError(`chain certificate ${i} is not issued by the next one`);
      continue;
    }
    const anchor = anchors.find((a) => a.ca && cert.checkIssued(a) && cert.verify(a.publicKey));
    if (!anchor) throw new KekUntrustedError('the certificate chain does not lead to a configured trust anchor');
    withinValidity(anchor, now, 'the trust anchor');
  }

  if (normaliseDn(leaf.subject) !== normaliseDn(trust.subject))
    throw new KekUntrustedError(`the KEK certificate's subject is not ${trust.subject}`);
  if (leaf.ca) throw new KekUntrustedError('the KEK certificate is a CA certificate');
  const { x509 } = await import('./x509');
  const usage = new x509.X509Certificate(leaf.raw).getExtension(x509.KeyUsagesExtension);
  if (!usage || (usage.usages & x509.KeyUsageFlags.keyEncipherment) === 0)
    throw new KekUntrustedError('the KEK certificate does not allow keyEncipherment');

  const certKey = leaf.publicKey.export({ format: 'jwk' });
  if (certKey.n !== kek.publicJwk.n || certKey.e !== kek.publicJwk.e)
    throw new KekUntrustedError("the published key is not the certificate's key");
}
