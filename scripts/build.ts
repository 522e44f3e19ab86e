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

/**
 * The CLI, bundled with code splitting: dist/cli.js holds the command definitions, and what a
 * command loads on first use (the Temporal client and its protocol definitions, the database
 * client, the configuration schema) lives in dist/cli-chunks/, parsed only by a command that needs
 * it. `anc --help` and argument errors never read those files.
 */
async function cliBundle(): Promise<void> {
  const outfile = `${DIST}cli.js`;
  await build({
    entryPoints: { cli: `${ROOT}client/cli.ts` },
    outdir: DIST,
    chunkNames: 'cli-chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    // pg loads its optional native driver only when asked to.
    external: ['pg-native'],
    // `require` for the bundled CommonJS packages, in every output file.
    banner: {
      js: "import { createRequire as __ancRequire } from 'node:module';\nconst require = __ancRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
  // The entry keeps its source's interpreter line; the built one runs plain node. One line for one
  // line, so the source map stays aligned.
  const body = readFileSync(outfile, 'utf8');
  writeFileSync(outfile, `#!/usr/bin/env node\n${body.startsWith('#!') ? body.slice(body.indexOf('\n') + 1) : body}`);
  chmodSync(outfile, 0o755);
}

cpSync(`${ROOT}migrations`, `${DIST}migrations`, { recursive: true });
await Promise.all([workflowBundle(), cliBundle()]);
