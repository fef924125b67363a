#!/usr/bin/env node
/* global __dirname, console */
// The second half of `npm run build`: every file of src/, workers/ and dashboard/ that tsc
// does not emit (not .ts: the Redis scripts, the simulator's node catalogue) is copied to the
// same place under dist/ (or the folder given), where the compiled modules read it.
const { cpSync, existsSync, readdirSync, statSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const out = process.argv[2] ?? join(root, 'dist');
let copied = 0;
for (const dir of ['src', 'workers', 'dashboard']) {
  if (!existsSync(join(root, dir))) continue;
  for (const file of readdirSync(join(root, dir), { recursive: true })) {
    const from = join(root, dir, file);
    if (file.endsWith('.ts') || !statSync(from).isFile()) continue;
    cpSync(from, join(out, dir, file));
    copied++;
  }
}
console.log(`copy-assets: ${copied} files to ${out}`);
