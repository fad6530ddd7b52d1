// Proves the committed bundle (dist/, embedded in the router binary) is exactly what the
// sources and the lockfile build: builds into a temporary directory and compares every file.
// Run by the test command after `npm ci`; on a difference, run `npm run build` and commit dist/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const fresh = mkdtempSync(join(tmpdir(), 'explorer-dist-'));

/** Every file under `dir`, as paths relative to `base`. */
function files(dir, base = dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...files(path, base));
    else out.push(relative(base, path));
  }
  return out.sort();
}

try {
  execFileSync(join(root, 'node_modules/.bin/vite'), ['build', '--logLevel', 'error'], {
    cwd: root,
    env: { ...process.env, EXPLORER_OUT_DIR: fresh },
    stdio: 'inherit',
  });
  const committed = files(join(root, 'dist'));
  const built = files(fresh);
  const problems = [];
  for (const name of new Set([...committed, ...built])) {
    if (!committed.includes(name)) problems.push(`missing from dist/: ${name}`);
    else if (!built.includes(name)) problems.push(`stale in dist/ (the sources no longer build it): ${name}`);
    else if (!readFileSync(join(root, 'dist', name)).equals(readFileSync(join(fresh, name)))) {
      problems.push(`differs from its sources: dist/${name}`);
    }
  }
  if (problems.length) {
    console.error(`router/explorer/dist does not match its sources:\n  ${problems.join('\n  ')}`);
    console.error('Rebuild it: (cd router/explorer && npm ci && npm run build), then commit dist/.');
    process.exit(1);
  }
  console.log(`router/explorer/dist matches its sources (${committed.length} files)`);
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
