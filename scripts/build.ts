/**
 * The production build after tsc (see `npm run build`): the workflow bundle, made once here so
 * the worker neither transpiles nor bundles at start; the CLI as one bundled file, so `anc`
 * starts fast; and the SQL migrations next to the compiled code that applies them.
 */
import { chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = `${ROOT}dist/`;

async function workflowBundle(): Promise<void> {
  const { code } = await bundleWorkflowCode({
    workflowsPath: `${ROOT}workflows/index.ts`,
    logger: {
      log: () => undefined,
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: console.warn,
      error: console.error,
    },
  });
  writeFileSync(`${DIST}workflow-bundle.js`, code);
}

async function cliBundle(): Promise<void> {
  const outfile = `${DIST}cli.js`;
  await build({
    entryPoints: [`${ROOT}client/cli.ts`],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    // pg loads its optional native driver only when asked to.
    external: ['pg-native'],
    logLevel: 'warning',
  });
  // One interpreter line, then `require` for the bundled CommonJS packages.
  const body = readFileSync(outfile, 'utf8').replace(/^#![^\n]*\n/, '');
  writeFileSync(
    outfile,
    `#!/usr/bin/env node\nimport { createRequire as __ancRequire } from 'node:module';\nconst require = __ancRequire(import.meta.url);\n${body}`,
  );
  chmodSync(outfile, 0o755);
}

cpSync(`${ROOT}migrations`, `${DIST}migrations`, { recursive: true });
await Promise.all([workflowBundle(), cliBundle()]);
