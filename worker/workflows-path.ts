import { fileURLToPath } from 'node:url';

/** The workflow bundle's entry point (bundled by the worker at start). */
export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));
