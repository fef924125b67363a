/**
 * The node environment plus a process scope per test file (test/helpers/process-scope.ts):
 * the scope's token is in `process.env` before the file's code runs, so everything it
 * spawns carries it, and the teardown (after the file's own afterAll hooks, also when a
 * test failed or timed out) kills whatever is still running. A jest worker whose parent
 * died (jest killed) would run its test file to the end: it exits at once instead, and
 * its reaper, seeing the pipe close, kills the scope.
 * Each test file also has its own storage folder, the default STORAGE_URL of whatever it
 * spawns: an API's retention sweep removes the files of jobs its Redis does not know, so two
 * systems must never share one (the checkout's ./.data/files would be that folder).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import NodeEnvironment from 'jest-environment-node';
import { installScope, newScopeToken, SCOPE_VAR, startReaper, type Reaper } from './process-scope';

export default class ScopedEnvironment extends NodeEnvironment {
  private readonly reaper: Reaper;
  private readonly files: string;
  /**
   * jest is gone: exit at once. The reaper sees its pipe close when this process ends and
   * kills the scope then. Waiting for it here instead let the file's next test spawn
   * processes after the reaper's last look, which outlived jest (3 of 8 SIGTERMs of jest
   * left an `npm start` or a redis-server running).
   */
  private readonly onParentGone = () => {
    rmSync(this.files, { recursive: true, force: true });
    process.exit(1);
  };

  constructor(...args: ConstructorParameters<typeof NodeEnvironment>) {
    const token = newScopeToken();
    // before super(): the test's `process.env` is a copy taken there
    process.env[SCOPE_VAR] = token;
    const files = mkdtempSync(join(tmpdir(), 'cq-test-files-'));
    const storageUrl = process.env.STORAGE_URL;
    process.env.STORAGE_URL = `file://${files}`;
    super(...args);
    if (storageUrl === undefined) delete process.env.STORAGE_URL;
    else process.env.STORAGE_URL = storageUrl;
    this.files = files;
    this.reaper = startReaper(token);
    installScope(this.global, this.reaper);
    // in a jest worker (a child with an IPC channel to jest), the channel closes with jest
    if (process.send) process.once('disconnect', this.onParentGone);
  }

  override async teardown(): Promise<void> {
    process.off('disconnect', this.onParentGone);
    try {
      await this.reaper.close();
    } finally {
      delete process.env[SCOPE_VAR];
      rmSync(this.files, { recursive: true, force: true });
      await super.teardown();
    }
  }
}
