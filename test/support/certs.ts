import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SelfSignedCert {
  /** A fresh temporary folder holding cert.pem and key.pem; the caller removes it. */
  dir: string;
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

/**
 * A throw-away RSA-2048 certificate for localhost and 127.0.0.1, valid two days, made by openssl in a new
 * temporary folder whose name starts with `prefix`.
 */
export function selfSignedCert(prefix: string): SelfSignedCert {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-days',
      '2',
    ],
    { stdio: 'ignore' },
  );
  return { dir, certPath, keyPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}
