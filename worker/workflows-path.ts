import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The workflow bundle's entry point, bundled by the worker at start when no prebuilt bundle exists. */
export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** The bundle `npm run build` makes once (dist/workflow-bundle.js, next to dist/worker/). */
export const PREBUILT_BUNDLE_PATH = fileURLToPath(new URL('../workflow-bundle.js', import.meta.url));

/** Worker options for the workflow code: the prebuilt bundle in dist/, the sources otherwise. */
export function workflowCode(): { workflowBundle: { codePath: string } } | { workflowsPath: string } {
  return existsSync(PREBUILT_BUNDLE_PATH)
    ? { workflowBundle: { codePath: PREBUILT_BUNDLE_PATH } }
    : { workflowsPath: WORKFLOWS_PATH };
}
