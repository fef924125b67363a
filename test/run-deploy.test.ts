/**
 * The deployment files run what the image really contains: every command of
 * docker-compose.yml, fly.toml and the Dockerfile maps to a source file or npm script, the
 * Fly health check is a route of the API, and fly.toml carries no secrets.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';

const ROOT = join(__dirname, '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
const SECRETS = [
  'REDIS_URL',
  'DASHBOARD_PASSWORD',
  'API_KEYS',
  'WEBHOOK_SECRET',
  'POSTHOG_API_KEY',
];

/** What a command runs, checked against the repo: `node dist/X.js` needs X.ts, `npm run X` a script. */
function checkCommand(command: string | string[]): string {
  const argv = Array.isArray(command) ? command : command.trim().split(/\s+/);
  if (argv[0] === 'node') {
    const m = /^dist\/(.+)\.js$/.exec(argv[1] ?? '');
    if (!m) return `${argv.join(' ')}: expected node dist/<file>.js`;
    return existsSync(join(ROOT, `${m[1]}.ts`))
      ? 'ok'
      : `${argv.join(' ')}: ${m[1]}.ts does not exist`;
  }
  if (argv[0] === 'npm') {
    const script = argv[1] === 'run' ? argv[2] : argv[1];
    return script && pkg.scripts[script] ? 'ok' : `${argv.join(' ')}: no such npm script`;
  }
  return `${argv.join(' ')}: not a node or npm command`;
}

/** The routes the API registers (`app.get('/path', …)` and the like) in src/api and src/bin. */
function apiRoutes(): string[] {
  const files = [
    ...readdirSync(join(ROOT, 'src', 'api')).map((f) => join('src', 'api', f)),
    join('src', 'bin', 'api.ts'),
  ];
  return files.flatMap((f) =>
    [...read(f).matchAll(/\.(?:get|use)\(\s*'([^']+)'/g)].map((m) => m[1]!),
  );
}

test('the build emits dist/<path>.js for <path>.ts (what the commands below rely on)', () => {
  const build = JSON.parse(read('tsconfig.build.json')) as { extends: string; include: string[] };
  const base = JSON.parse(read(build.extends)) as {
    compilerOptions: { outDir: string; rootDir: string };
  };
  expect(base.compilerOptions).toMatchObject({ outDir: 'dist', rootDir: '.' });
  expect(build.include).toEqual(expect.arrayContaining(['src', 'workers']));
  expect(pkg.scripts.build).toBe('tsc -p tsconfig.build.json && node bin/copy-assets.js');
});

test('the build copies the files read at run time that tsc does not emit (Redis scripts…)', () => {
  const assets = ['src', 'workers', 'dashboard'].flatMap((dir) =>
    existsSync(join(ROOT, dir))
      ? (readdirSync(join(ROOT, dir), { recursive: true }) as string[])
          .filter((f) => !f.endsWith('.ts') && statSync(join(ROOT, dir, f)).isFile())
          .map((f) => join(dir, f))
      : [],
  );
  expect(assets).toEqual(expect.arrayContaining([join('src', 'scripts', 'persist-5.lua')]));
  const out = mkdtempSync(join(tmpdir(), 'cq-assets-'));
  try {
    execFileSync(process.execPath, [join(ROOT, 'bin', 'copy-assets.js'), out]);
    for (const asset of assets) {
      expect({ asset, copied: readFileSync(join(out, asset), 'utf8') }).toEqual({
        asset,
        copied: read(asset),
      });
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  test('multi-stage: a build stage, then production dependencies only, as a non-root user', () => {
    expect(text).toMatch(/FROM \S+ AS build[\s\S]*RUN npm ci[\s\S]*RUN npm run build/);
    // the whole of dist/: the compiled modules and the files the build copied beside them
    expect(text).toMatch(
      /FROM \S+ AS runtime[\s\S]*npm ci --omit=dev[\s\S]*COPY --from=build \/app\/dist \.\/dist\n/,
    );
    const user = [...text.matchAll(/^USER (\S+)/gm)].pop()?.[1];
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
  });
  test('the production install (npm ci --omit=dev) has neither tsx nor pino-pretty', () => {
    // npm leaves out of an --omit=dev install exactly the lockfile entries marked dev
    const lock = JSON.parse(read('package-lock.json')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    for (const name of ['tsx', 'esbuild', 'pino-pretty']) {
      expect({ name, dev: lock.packages[`node_modules/${name}`]?.dev }).toEqual({
        name,
        dev: true,
      });
    }
  });
  test('its CMD runs a file the image contains', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(text)?.[1];
    expect(cmd).toBeDefined();
    expect(checkCommand(JSON.parse(cmd!) as string[])).toBe('ok');
  });
  test('.dockerignore keeps what the build needs', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim());
    for (const needed of [
      'src',
      'workers',
      'dashboard',
      'bin',
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
    ]) {
      expect(ignored).not.toContain(needed);
    }
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', '.data', '.env']));
  });
});

describe('docker-compose.yml', () => {
  const compose = parseYaml(read('docker-compose.yml'), { merge: true }) as {
    services: Record<string, Record<string, unknown>>;
  };
  const { services } = compose;
  test('redis, api, worker and simulator; commands of our image are real files', () => {
    expect(Object.keys(services).sort()).toEqual(['api', 'redis', 'simulator', 'worker']);
    for (const name of ['api', 'worker', 'simulator']) {
      expect(services[name]!.build).toBe('.');
      expect({ name, check: checkCommand(services[name]!.command as string[]) }).toEqual({
        name,
        check: 'ok',
      });
    }
  });
  test('redis keeps an AOF and is health-checked; api and worker wait for it', () => {
    const redis = services.redis!;
    expect(String(redis.image)).toMatch(/^redis:7/);
    expect((redis.command as string[]).join(' ')).toContain('--appendonly yes');
    expect((redis.healthcheck as { test: string[] }).test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(redis.volumes).toBeDefined();
    for (const name of ['api', 'worker']) {
      const s = services[name]!;
      expect(s.depends_on).toMatchObject({ redis: { condition: 'service_healthy' } });
      expect(s.environment).toMatchObject({
        REDIS_URL: 'redis://redis:6379',
        COMFYUI_URL: 'http://simulator:8188',
      });
    }
    expect(services.api!.ports).toEqual(['3000:3000']);
    expect(services.simulator!.environment).toMatchObject({ PORT: '8188', HOST: '0.0.0.0' });
  });
  test('api and worker share the file storage: one named volume at the STORAGE_URL path', () => {
    const named = Object.keys((compose as { volumes?: object }).volumes ?? {});
    const mounts = ['api', 'worker'].map((name) => {
      const env = services[name]!.environment as Record<string, string>;
      const dir = /^file:\/\/(\/.+)$/.exec(env.STORAGE_URL ?? '')?.[1];
      const volume = ((services[name]!.volumes as string[]) ?? []).find((v) =>
        v.endsWith(`:${dir}`),
      );
      return { name, dir, volume };
    });
    expect(mounts[0].volume).toBeDefined();
    expect(mounts[1]).toEqual({ ...mounts[0], name: 'worker' });
    expect(named).toContain(mounts[0].volume!.split(':')[0]);
    // the image prepares the mount point for its non-root user
    expect(read('Dockerfile')).toContain(`chown node:node ${mounts[0].dir}`);
  });
});

describe('fly.toml', () => {
  const text = read('fly.toml');
  const fly = parseToml(text) as {
    kill_signal: string;
    kill_timeout: number;
    processes: Record<string, string>;
    env: Record<string, string>;
    http_service: {
      processes: string[];
      internal_port: number;
      force_https: boolean;
      auto_stop_machines: string | boolean;
      checks: { path: string }[];
    };
  };
  test('process groups api and worker run files the image contains', () => {
    expect(Object.keys(fly.processes).sort()).toEqual(['api', 'worker']);
    for (const [name, command] of Object.entries(fly.processes)) {
      expect({ name, check: checkCommand(command) }).toEqual({ name, check: 'ok' });
    }
  });
  test('only the api has an HTTP service, checked on a route the API serves', () => {
    const http = fly.http_service;
    expect(http).toMatchObject({ processes: ['api'], internal_port: 3000, force_https: true });
    expect(['off', false]).toContain(http.auto_stop_machines);
    expect(http.checks.map((c) => c.path)).toEqual(['/readyz']);
    expect(apiRoutes()).toContain('/readyz');
  });
  test('SIGTERM, with a kill timeout longer than the worker hand-off', () => {
    expect(fly.kill_signal).toBe('SIGTERM');
    const handOffS = Number(fly.env.SHUTDOWN_TIMEOUT_MS ?? 20_000) / 1000;
    expect(fly.kill_timeout).toBeGreaterThan(handOffS);
    expect(fly.kill_timeout).toBeLessThanOrEqual(300);
  });
  test('env: Upstash over IPv6, production, the low-cost profile; no secrets anywhere', () => {
    expect(fly.env).toMatchObject({
      REDIS_FAMILY: '6',
      NODE_ENV: 'production',
      DRAIN_DELAY_S: '30',
      STALLED_INTERVAL_MS: '30000',
    });
    for (const name of SECRETS) expect(Object.keys(fly.env)).not.toContain(name);
    expect(text).not.toMatch(/rediss?:\/\/[^\s"']*:[^\s"'@]+@/); // no URL with a password
    expect(text).not.toMatch(/whsec_|phc_|Bearer /);
  });
});
