/**
 * CLI entry of the Key Vault emulator:
 *
 *   tsx stack/keyvault-emulator/main.ts --port 8443 --cert cert.pem --key key.pem --state state.json
 *
 * Prints exactly one line when ready (`keyvault-emulator listening on https://127.0.0.1:<port>`),
 * nothing else unless it fails. SIGTERM / SIGINT close the server and exit 0.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startKeyVaultEmulator } from './server';

const USAGE =
  'usage: tsx stack/keyvault-emulator/main.ts --port <port> --cert <cert.pem> --key <key.pem> [--state <state.json>] [--host <address>] [--ca-cert <ca.pem> --ca-key <ca-key.pem>]';

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        state: { type: 'string' },
        'ca-cert': { type: 'string' },
        'ca-key': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`keyvault-emulator: ${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const port = Number(values.port);
  if (!values.port || !Number.isInteger(port) || port < 0 || port > 65535 || !values.cert || !values.key) {
    process.stderr.write(`${USAGE}\n`);
    process.exit(2);
  }

  const emulator = await startKeyVaultEmulator({
    port,
    ...(values.host ? { host: values.host } : {}),
    certPem: readFileSync(values.cert, 'utf8'),
    keyPem: readFileSync(values.key, 'utf8'),
    ...(values.state ? { statePath: values.state } : {}),
    ...(values['ca-cert'] && values['ca-key']
      ? { caCertPem: readFileSync(values['ca-cert'], 'utf8'), caKeyPem: readFileSync(values['ca-key'], 'utf8') }
      : {}),
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    emulator.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(`keyvault-emulator listening on ${emulator.url}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`keyvault-emulator: failed to start: ${(e as Error).message ?? String(e)}\n`);
  process.exit(1);
});
