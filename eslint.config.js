// Lint rules for the whole tree; `npm test` runs them after the formatter check.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const runtimeGlobals = Object.fromEntries(
  [
    'process',
    'console',
    'Buffer',
    'URL',
    'URLSearchParams',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'setImmediate',
    'fetch',
    'crypto',
    'TextEncoder',
    'TextDecoder',
    'AbortController',
    'AbortSignal',
    'structuredClone',
    'performance',
    'queueMicrotask',
    'atob',
    'btoa',
    'Response',
    'Request',
    'Headers',
    'FormData',
    'Blob',
    'document',
    'window',
    'location',
    'history',
    'navigator',
    'HTMLElement',
  ].map((name) => [name, 'readonly']),
);

export default tseslint.config(
  { ignores: ['node_modules/', 'var/', 'test/fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: runtimeGlobals },
    rules: {
      // Prettier decides line breaks; this rule misreads its chained calls.
      'no-unexpected-multiline': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
  {
    // Product code states why a value exists instead of asserting it; tests and benches may assert.
    files: ['src/**', 'plugins/**', 'hsm/**', 'bin/**'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'error' },
  },
);
