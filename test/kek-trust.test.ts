/**
 * Clients verify the key they seal for. The service runs in certificate mode against a Key Vault
 * emulator process of this file's own (certificates issued by the emulator's test CA) on the
 * Temporal dev server. The SDK, configured with that CA as its trust anchor, accepts the genuine
 * keyring and a renewed certificate without any change; a substitute keyring (another workflow
 * answering the same query with a tester's key) is refused by the SDK and by the CLI, and nothing
 * is sent. Key mode's pinning is checked on the same published key.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomUUID, webcrypto } from 'node:crypto';
import { join } from 'node:path';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AzureKeyVaultCertificateKekProvider } from '../activities/kek/azure-key-vault-certificate';
import { jwkThumbprint, verifyPublicKek, type KekTrust } from '../client/kek-trust';
import { AncClient, AncServiceError } from '../client/sdk';
import { x509 } from '../client/x509';
import { ancWorkflowId, KEYRING_WORKFLOW_ID } from '../common/ids';
import type { PublicKek } from '../common/types';
import { refreshKekSignal } from '../workflows/definitions';
import { azureEmulatorCertificateKek, startEmulatorProcess, type EmulatorProcess } from './support/emulator-process';
import { createHarness, startDevServer, type Harness } from './support/harness';
import { ROOT } from './support/stack';

const SUBJECT = 'CN=anc-credential-kek';
let kv: EmulatorProcess;
let env: TestWorkflowEnvironment;
let h: Harness;
let kek: AzureKeyVaultCertificateKekProvider;
let trust: KekTrust;
let caPem: string;

beforeAll(async () => {
  [kv, env] = await Promise.all([startEmulatorProcess(), startDevServer()]);
  caPem = await kv.testCaPem();
  trust = { trustAnchorPem: caPem, subject: SUBJECT };
  kek = azureEmulatorCertificateKek(kv, { issuerName: 'anc-test-ca', subject: SUBJECT });
  h = await createHarness({ env, kek, kekTrust: trust });
  await h.startWorker();
}, 120_000);

afterAll(async () => {
  await h?.close();
  await env?.teardown();
  await kv?.stop();
});

const spec = {
  displayName: 'Contoso HQ',
  adDomainName: 'corp.contoso.test',
  adDomainUsername: 'svcDomainJoin@corp.contoso.test',
};

async function published(client: AncClient, version?: string): Promise<PublicKek> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const k = await client.publicKek(true);
    if (!version || k.version === version) return k;
    if (Date.now() > deadline) throw new Error(`the keyring did not publish ${version}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('clients verify the key they seal for (certificate mode, dev server, Key Vault emulator)', () => {
  let genuine: PublicKek;

  it('accepts the genuine keyring, and a renewed certificate without any client change', async () => {
    genuine = await published(h.sdk);
    expect(genuine.x5c).toHaveLength(1);
    const view = await h.sdk.createAnc({
      tenantId: 'contoso',
      ancId: 'hq',
      password: 'Pw#genuine#1',
      actor: 'admin@contoso.test',
      ...spec,
    });
    expect(view.credentialVersion).toBe(1);

    const renewed = await kek.createVersion();
    await env.client.workflow.getHandle(KEYRING_WORKFLOW_ID).signal(refreshKekSignal);
    const next = await published(h.sdk, renewed.version);
    expect(next.version).not.toBe(genuine.version);
    expect(next.x5c?.[0]).not.toBe(genuine.x5c?.[0]);
    await h.sdk.updateAncPassword('contoso', 'hq', 'Pw#genuine#2', { actor: 'admin@contoso.test' });
  });

  it('refuses what a certificate check must refuse: expiry, subject, another anchor', async () => {
    const later = new Date(Date.now() + 400 * 86_400_000);
    await expect(verifyPublicKek(genuine, trust, later)).rejects.toThrow(/expired/);
    await expect(verifyPublicKek(genuine, { trustAnchorPem: caPem, subject: 'CN=someone-else' })).rejects.toThrow(
      /subject/,
    );
    const other = await selfSignedKek();
    await expect(verifyPublicKek(genuine, { trustAnchorPem: other.certPem, subject: SUBJECT })).rejects.toThrow(
      /anchor/,
    );
    await expect(verifyPublicKek(genuine, undefined)).rejects.toThrow(/no trust anchor or pin/);
    await expect(verifyPublicKek(genuine, trust)).resolves.toBeUndefined();
  });

  it('key mode: a pinned key id and thumbprint is accepted, anything else refused', async () => {
    const pin = { kid: genuine.publicJwk.kid, thumbprint: jwkThumbprint(genuine.publicJwk) };
    await expect(verifyPublicKek(genuine, { pins: [pin] })).resolves.toBeUndefined();
    await expect(verifyPublicKek(genuine, { pins: [{ ...pin, kid: `${genuine.kekId}/other` }] })).rejects.toThrow(
      /pinned/,
    );
    const tester = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    await expect(
      verifyPublicKek({ ...genuine, publicJwk: { ...genuine.publicJwk, n: tester.n as string } }, { pins: [pin] }),
    ).rejects.toThrow(/does not match its pin/);
  });

  it('refuses a certificate whose key usage does not allow keyEncipherment, accepts one that does', async () => {
    const alg = {
      name: 'RSASSA-PKCS1-v1_5',
      hash: 'SHA-256',
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
    };
    const caKeys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
    const notBefore = new Date(Date.now() - 60_000);
    const notAfter = new Date(Date.now() + 86_400_000);
    const ca = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=usage-test-ca',
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: alg,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      ],
    });
    const leafKek = async (usages: number): Promise<PublicKek> => {
      const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
      const leaf = await x509.X509CertificateGenerator.create({
        subject: SUBJECT,
        issuer: ca.subject,
        notBefore,
        notAfter,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        signingAlgorithm: alg,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(usages, true),
        ],
      });
      const jwk = await webcrypto.subtle.exportKey('jwk', keys.publicKey);
      return {
        kekId: 'usage-test',
        version: 'v1',
        publicJwk: { kty: 'RSA', n: jwk.n as string, e: jwk.e as string, kid: 'usage-test/v1', alg: 'RSA-OAEP-256' },
        expiresAt: notAfter.toISOString(),
        x5c: [Buffer.from(leaf.rawData).toString('base64')],
      };
    };
    const anchored = { trustAnchorPem: ca.toString('pem'), subject: SUBJECT };
    await expect(verifyPublicKek(await leafKek(x509.KeyUsageFlags.digitalSignature), anchored)).rejects.toThrow(
      /does not allow keyEncipherment/,
    );
    await expect(verifyPublicKek(await leafKek(x509.KeyUsageFlags.keyEncipherment), anchored)).resolves.toBeUndefined();
  });

  it('refuses a substitute keyring in the SDK and the CLI, and sends nothing', { timeout: 120_000 }, async () => {
    const testerKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    const testerJwk = { ...genuine.publicJwk, n: testerKey.n as string, e: testerKey.e as string };
    const selfSigned = await selfSignedKek();
    const forgeries: Array<[string, PublicKek]> = [
      ["a tester's key, no certificate", { ...genuine, x5c: undefined, publicJwk: testerJwk }],
      ["a tester's key beside the genuine certificate", { ...genuine, publicJwk: testerJwk }],
      [
        "a tester's own certificate with the expected subject",
        { ...genuine, x5c: [selfSigned.derBase64], publicJwk: { ...genuine.publicJwk, ...selfSigned.jwk } },
      ],
    ];

    await env.client.workflow.getHandle(KEYRING_WORKFLOW_ID).terminate('replaced by a substitute');
    const taskQueue = `tester-${randomUUID()}`;
    const worker = await Worker.create({
      connection: env.nativeConnection,
      namespace: env.namespace ?? 'default',
      taskQueue,
      workflowsPath: join(ROOT, 'test/support/substitute-keyring.ts'),
    });
    const running = worker.run();
    try {
      for (const [label, forged] of forgeries) {
        const handle = await env.client.workflow.start('keyringWorkflow', {
          workflowId: KEYRING_WORKFLOW_ID,
          taskQueue,
          args: [forged],
        });
        const sdk = new AncClient({ client: env.client, taskQueue: h.taskQueue, kekTrust: trust });
        const ancId = `forged-${forgeries.findIndex(([l]) => l === label)}`;
        const err = await rejection(
          sdk.createAnc({ tenantId: 'contoso', ancId, password: 'Pw#forged', actor: 'x@contoso.test', ...spec }),
        );
        expect(err, label).toBeInstanceOf(AncServiceError);
        expect((err as AncServiceError).type, label).toBe('KekUntrusted');
        const started = await rejection(env.client.workflow.getHandle(ancWorkflowId('contoso', ancId)).describe());
        expect(started, label).toBeInstanceOf(WorkflowNotFoundError);

        const cli = await runCli(['--json', '--actor', 'x@contoso.test', ...createArgs(ancId), '--password-stdin'], {
          stdin: 'Pw#forged\n',
        });
        expect(cli.code, `${label}: ${cli.stdout}${cli.stderr}`).toBe(1);
        expect(cli.stdout + cli.stderr, label).toMatch(/KekUntrusted/);
        await handle.terminate('next forgery');
      }
    } finally {
      worker.shutdown();
      await running;
    }
  });
});

const createArgs = (ancId: string) => [
  'create',
  '--tenant',
  'contoso',
  '--anc',
  ancId,
  '--name',
  'Forged',
  '--domain',
  'corp.contoso.test',
  '--user',
  'svcDomainJoin@corp.contoso.test',
];

function runCli(
  args: string[],
  opts: { stdin: string },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(join(ROOT, 'node_modules/.bin/tsx'), [join(ROOT, 'client/cli.ts'), ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: env.address,
      TEMPORAL_NAMESPACE: env.namespace ?? 'default',
      TEMPORAL_TASK_QUEUE: h.taskQueue,
      ANC_KEK_TRUST_ANCHOR: caPem,
      ANC_KEK_SUBJECT: SUBJECT,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  child.stdin.end(opts.stdin);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A tester's self-signed certificate with the expected subject and key usage, and its key. */
async function selfSignedKek(): Promise<{
  certPem: string;
  derBase64: string;
  jwk: { n: string; e: string };
}> {
  const alg = {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-256',
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
  };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: SUBJECT,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
    ],
  });
  const jwk = await webcrypto.subtle.exportKey('jwk', keys.publicKey);
  return {
    certPem: cert.toString('pem'),
    derBase64: Buffer.from(cert.rawData).toString('base64'),
    jwk: { n: jwk.n as string, e: jwk.e as string },
  };
}
