import { readFileSync } from 'node:fs';
import { DefaultAzureCredential } from '@azure/identity';
import type { TokenCredential } from '@azure/core-auth';
import { AzureKeyVaultKekProvider } from '../activities/kek/azure-key-vault';
import { AzureKeyVaultCertificateKekProvider } from '../activities/kek/azure-key-vault-certificate';
import { LocalDevKekProvider } from '../activities/kek/local-dev';
import type { KekProvider } from '../activities/kek/provider';
import { SlidingWindowLimiter } from '../activities/kek/rate-limiter';
import { KeyVaultAnchorSigner, LocalAnchorSigner, type AuditAnchorSigner } from '../activities/audit-anchor';
import type { Config } from './config';

/** The emulator accepts any bearer token; a real vault never sees this credential. */
export const emulatorCredential: TokenCredential = {
  getToken: async () => ({ token: 'local-emulator-token', expiresOnTimestamp: Date.now() + 3_600_000 }),
};

export function createKekProvider(cfg: Config['kek']): KekProvider {
  if (cfg.kind === 'local-dev') return new LocalDevKekProvider(cfg.dir, cfg.keySize);
  const emulator = cfg.emulator;
  const common = {
    vaultUrl: cfg.vaultUrl,
    keyName: cfg.keyName,
    keySize: cfg.keySize,
    credential: emulator ? emulatorCredential : new DefaultAzureCredential(),
    limiter: new SlidingWindowLimiter(cfg.hsmOpsPerSecond),
    trustedCaPem: cfg.caPath ? readFileSync(cfg.caPath, 'utf8') : undefined,
    disableChallengeResourceVerification: emulator,
  };
  if (cfg.mode === 'key') return new AzureKeyVaultKekProvider(common);
  return new AzureKeyVaultCertificateKekProvider({
    ...common,
    issuerName: cfg.certIssuer,
    subject: cfg.certSubject,
    pollIntervalMs: emulator ? 100 : 2000,
  });
}

/** Signs audit anchors: a Key Vault key next to the KEK, or (local development) a key file. */
export function createAuditAnchorSigner(cfg: Config['kek'], keyName: string): AuditAnchorSigner {
  if (cfg.kind === 'local-dev') return new LocalAnchorSigner(cfg.dir);
  const ca = cfg.caPath ? readFileSync(cfg.caPath, 'utf8') : undefined;
  return new KeyVaultAnchorSigner({
    vaultUrl: cfg.vaultUrl,
    keyName,
    credential: cfg.emulator ? emulatorCredential : new DefaultAzureCredential(),
    clientOptions: () => ({
      disableChallengeResourceVerification: cfg.emulator,
      ...(ca ? { tlsOptions: { ca } } : {}),
    }),
  });
}
