/** Options every project shares. */
const base = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Type-checking is done once for the whole tree by `tsc --noEmit` (npm test runs it
  // first); ts-jest only transpiles here, which keeps each test file fast.
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};

/** @type {import('jest').Config} */
module.exports = {
  testTimeout: 60000,
  maxWorkers: 2,
  projects: [
    { ...base, displayName: 'comfyui-0.3.64' },
    // the worker's lifecycle tests again against today's ComfyUI (SIM_VERSION=current)
    {
      ...base,
      displayName: 'comfyui-current',
      testMatch: ['**/worker-{lifecycle,crash,realtime}.test.ts'],
      setupFiles: ['<rootDir>/test/helpers/sim-current.ts'],
    },
  ],
};
