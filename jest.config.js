/** Options every project shares. */
const base = {
  // every process a test file starts dies with it (test/helpers/process-scope.ts)
  testEnvironment: '<rootDir>/test/helpers/jest-environment.ts',
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
  // a check after the suite fails the run if a process a test started survived it
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  projects: [
    { ...base, displayName: 'comfyui-0.3.64' },
    // the worker's lifecycle tests again against today's ComfyUI (SIM_VERSION=current)
    {
      ...base,
      displayName: 'comfyui-current',
      testMatch: ['**/worker-{lifecycle,crash,realtime,move}.test.ts'],
      setupFiles: ['<rootDir>/test/helpers/sim-current.ts'],
    },
  ],
};
