#!/usr/bin/env node
/* global __dirname, console */
// Launcher for the comfyui-queue CLI: the TypeScript source through tsx when it is there
// (a checkout), else the compiled dist/src/bin/cli.js (a built image or package).
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const source = join(root, 'src', 'bin', 'cli.ts');
const built = join(root, 'dist', 'src', 'bin', 'cli.js');

function tsxAvailable() {
  try {
    require.resolve('tsx/cjs/api');
    return true;
  } catch {
    return false;
  }
}

if (existsSync(source) && tsxAvailable()) {
  require('tsx/cjs/api').register();
  require(source);
} else if (existsSync(built)) {
  require(built);
} else {
  console.error(
    'comfyui-queue: neither src/bin/cli.ts (with tsx) nor dist/src/bin/cli.js found; run npm install or npm run build',
  );
  process.exit(1);
}
