import js from '@eslint/js';
import importPlugin from 'eslint-plugin-import';
import tseslint from 'typescript-eslint';

// Workflow code runs in Temporal's deterministic sandbox: no I/O, no Node builtins, no crypto.
const workflowRestrictedImports = {
  paths: ['pg', 'crypto', 'fs', 'net', 'http', 'https', 'child_process', 'ldapts', 'jose', 'pino'].map((name) => ({
    name,
    message: 'Workflows are deterministic: move I/O and crypto into an activity.',
  })),
  patterns: [
    { group: ['node:*'], message: 'Workflows must not import Node builtins.' },
    { group: ['@azure/*'], message: 'Workflows must not call Azure: use an activity.' },
    {
      group: ['**/activities/*', '**/activities/**', '**/worker/**', '**/client/**'],
      allowTypeImports: true,
      message: 'Workflows may only import activity types.',
    },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', '.stack/**', '.tools/**', 'coverage/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { import: importPlugin },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import/no-cycle': 'error',
    },
    settings: { 'import/resolver': { node: { extensions: ['.ts', '.js'] } } },
  },
  {
    files: ['workflows/**/*.ts', 'common/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', workflowRestrictedImports] },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
