/**
 * `fleetgate snapshot build | inspect | verify`: pack a directory into a signed `.fgb` bundle,
 * show what a bundle claims (no trust needed) and check one against trusted release keys.
 * The manager adds `push/list/show/history` to the same group through `snapshotCommand`.
 */
import { lstat, readdir, readFile, realpath, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import type { Command } from 'commander';
import type { PayloadFile } from '../../protocol/bundle.js';
import type { PublicKey } from '../../protocol/keys.js';
import { FleetgateError, type ProtocolError } from '../../protocol/result.js';
import { printResult } from '../output.js';

/** The `snapshot` command group, created on first use, so several files can add subcommands. */
export function snapshotCommand(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === 'snapshot');
  if (existing) return existing;
  return program.command('snapshot').description('signed snapshot bundles (.fgb)');
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Splits "cmd a 'b c' \"d\"" into words (POSIX-shell-like quotes and backslashes, no expansion). */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1]!)) cur += line[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw FleetgateError.of('FG_USAGE', `unterminated ${quote} quote in ${JSON.stringify(line)}`);
  if (inWord) words.push(cur);
  return words;
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Every file under `src`, recursively, with '/'-separated relative paths and permission bits.
 * Symlinks are followed when their target stays inside the tree (packed as regular files);
 * one pointing outside, a symlink loop, or a device/socket/fifo is refused (FG_SOURCE_UNSAFE).
 */
export async function readSourceTree(src: string): Promise<PayloadFile[]> {
  let root: string;
  try {
    root = await realpath(resolve(src));
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${src}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const files: PayloadFile[] = [];
  const walk = async (dir: string, rel: string, chain: ReadonlySet<string>): Promise<void> => {
    const entries = await readdir(dir);
    entries.sort();
    for (const name of entries) {
      const abs = join(dir, name);
      const relPath = rel === '' ? name : `${rel}/${name}`;
      let target = abs;
      let st = await lstat(abs);
      if (st.isSymbolicLink()) {
        try {
          target = await realpath(abs);
        } catch {
          throw FleetgateError.of('FG_SOURCE_UNSAFE', `${relPath}: dangling symlink`);
        }
        if (!isInside(root, target)) {
          throw FleetgateError.of('FG_SOURCE_UNSAFE', `${relPath}: symlink points outside the source (${target})`);
        }
        st = await stat(target);
      }
      if (st.isDirectory()) {
        if (chain.has(target)) throw FleetgateError.of('FG_SOURCE_UNSAFE', `${relPath}: symlink loop`);
        await walk(target, relPath, new Set([...chain, target]));
      } else if (st.isFile()) {
        files.push({ path: relPath, mode: st.mode & 0o7777, data: new Uint8Array(await readFile(target)) });
      } else {
        throw FleetgateError.of('FG_SOURCE_UNSAFE', `${relPath}: not a regular file or directory`);
      }
    }
  };
  try {
    await walk(root, '', new Set([root]));
  } catch (e) {
    if (e instanceof FleetgateError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw FleetgateError.of('FG_FILE_READ', `${src}: ${code ?? (e instanceof Error ? e.message : String(e))}`);
  }
  return files;
}

/** The same error, naming the file it came from. */
function withFile(error: ProtocolError, path: string): FleetgateError {
  return new FleetgateError({ ...error, message: `${error.message} (${path})` });
}

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await readFile(path));
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

async function readText(path: string): Promise<string> {
  return Buffer.from(await readBytes(path)).toString('utf8');
}

function parseIntOption(name: string, value: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw FleetgateError.of('FG_USAGE', `--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function parseEnv(pairs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw FleetgateError.of('FG_USAGE', `--env takes KEY=VALUE, got ${JSON.stringify(p)}`);
    env[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return env;
}

interface BuildOptions {
  name: string;
  version: string;
  seq: string;
  key: string;
  out: string;
  run: string;
  env: string[];
  acceptance?: string;
  acceptanceTimeout: string;
  hardware: string[];
  adapter: string[];
  created?: string;
  force?: boolean;
  json?: boolean;
}

async function build(src: string, opts: BuildOptions): Promise<void> {
  const [{ buildBundle }, { parseSigningKeyPem }] = await Promise.all([
    import('../../protocol/bundle.js'),
    import('../../protocol/keys.js'),
  ]);
  const parsedKey = parseSigningKeyPem(await readText(opts.key));
  if (!parsedKey.ok) throw withFile(parsedKey.error, opts.key);
  const key = parsedKey.value;
  const [command, ...args] = splitCommandLine(opts.run);
  if (command === undefined) throw FleetgateError.of('FG_USAGE', '--run needs a command');
  let acceptance = null;
  if (opts.acceptance !== undefined) {
    const [aCommand, ...aArgs] = splitCommandLine(opts.acceptance);
    if (aCommand === undefined) throw FleetgateError.of('FG_USAGE', '--acceptance needs a command');
    acceptance = {
      command: aCommand,
      args: aArgs,
      timeout_s: parseIntOption('acceptance-timeout', opts.acceptanceTimeout, 1),
    };
  }
  const files = await readSourceTree(src);
  const built = buildBundle(
    files,
    {
      name: opts.name,
      version: opts.version,
      seq: parseIntOption('seq', opts.seq, 1),
      ...(opts.created === undefined ? {} : { created: parseIntOption('created', opts.created, 0) }),
      run: { command, args, env: parseEnv(opts.env), probe: { type: 'stdout' } },
      acceptance,
      compat: { hardware: opts.hardware, adapters: opts.adapter },
    },
    key,
  );
  const out = resolve(opts.out);
  try {
    await writeFile(out, built.bytes, { flag: opts.force ? 'w' : 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw FleetgateError.of('FG_FILE_EXISTS', out);
    throw e;
  }
  const m = built.opened.manifest;
  printResult(
    opts.json,
    {
      id: built.opened.id,
      name: m.name,
      version: m.version,
      seq: m.seq,
      kid: m.kid,
      size: m.size,
      files: files.length,
      bytes: built.bytes.byteLength,
      out,
    },
    () =>
      `${built.opened.id}\n  ${m.name} ${m.version} (seq ${m.seq}), ${files.length} files, payload ${m.size} bytes\n  signed by ${m.kid}, written to ${relative(process.cwd(), out) || out}`,
  );
}

interface ReadOptions {
  maxBytes?: string;
  json?: boolean;
}

async function inspect(file: string, opts: ReadOptions): Promise<void> {
  const [bundle, cose, manifest, { LIMITS }, { sha256Hex }, { unwrap }] = await Promise.all([
    import('../../protocol/bundle.js'),
    import('../../protocol/cose.js'),
    import('../../protocol/manifest.js'),
    import('../../protocol/messages.js'),
    import('../../protocol/digest.js'),
    import('../../protocol/result.js'),
  ]);
  const maxBytes = opts.maxBytes === undefined ? LIMITS.bundle : parseIntOption('max-bytes', opts.maxBytes, 1);
  const split = unwrap(bundle.decodeBundle(await readBytes(file), { maxBytes }));
  // No trust store here: the signature is NOT verified, only its kid is shown.
  const peeked = unwrap(cose.peekCose(split.manifestCose, { maxBytes: LIMITS.manifest }));
  const opened = unwrap(manifest.manifestFromPayload(peeked.payload, peeked.kid, split.manifestCose));
  const m = opened.manifest;
  const payloadOk = bundle.verifyPayload(m, split.payload);
  const files = bundle.decodePayload(split.payload, { maxBytes });
  const value = {
    id: opened.id,
    manifest: m,
    signature: { kid: peeked.kid, alg: peeked.alg, verified: false },
    payload: {
      bytes: split.payload.byteLength,
      sha256: sha256Hex(split.payload),
      intact: payloadOk.ok,
      ...(payloadOk.ok ? {} : { error: payloadOk.error.code }),
      files: files.ok
        ? files.value.map((f) => ({ path: f.path, mode: f.mode.toString(8), size: f.data.byteLength }))
        : null,
    },
  };
  printResult(opts.json, value, () => {
    const lines = [
      `snapshot ${opened.id}`,
      `  name      ${m.name}`,
      `  version   ${m.version} (seq ${m.seq})`,
      `  created   ${new Date(m.created).toISOString()}`,
      `  run       ${[m.run.command, ...m.run.args].join(' ')}`,
      `  acceptance ${m.acceptance ? `${[m.acceptance.command, ...m.acceptance.args].join(' ')} (${m.acceptance.timeout_s}s)` : '-'}`,
      `  hardware  ${m.compat.hardware.join(', ') || 'any'}`,
      `  adapters  ${m.compat.adapters.join(', ') || '-'}`,
      `  payload   ${m.size} bytes, sha256 ${Buffer.from(m.sha256).toString('hex')} (${payloadOk.ok ? 'matches' : payloadOk.error.code})`,
      `  signature kid ${peeked.kid}, alg ${peeked.alg} (not verified; use \`snapshot verify --pub\`)`,
    ];
    if (files.ok)
      for (const f of files.value)
        lines.push(`    ${f.mode.toString(8).padStart(4, '0')} ${String(f.data.byteLength).padStart(9)} ${f.path}`);
    return lines.join('\n');
  });
}

interface VerifyOptions extends ReadOptions {
  pub: string[];
}

async function verify(file: string, opts: VerifyOptions): Promise<void> {
  const [{ verifyBundle }, keys, { LIMITS }, { unwrap }] = await Promise.all([
    import('../../protocol/bundle.js'),
    import('../../protocol/keys.js'),
    import('../../protocol/messages.js'),
    import('../../protocol/result.js'),
  ]);
  if (opts.pub.length === 0) throw FleetgateError.of('FG_USAGE', 'give at least one --pub release.pub');
  const pubs: PublicKey[] = [];
  for (const p of opts.pub) {
    const parsed = keys.parsePublicKeyPem(await readText(p));
    if (!parsed.ok) throw withFile(parsed.error, p);
    pubs.push(parsed.value);
  }
  const maxBytes = opts.maxBytes === undefined ? LIMITS.bundle : parseIntOption('max-bytes', opts.maxBytes, 1);
  const ok = unwrap(verifyBundle(await readBytes(file), keys.trustStore(pubs), { maxBytes }));
  const m = ok.manifest;
  printResult(
    opts.json,
    { ok: true, id: ok.id, kid: m.kid, name: m.name, version: m.version, seq: m.seq, size: m.size },
    () => `OK ${ok.id}\n  ${m.name} ${m.version} (seq ${m.seq}), signed by ${m.kid}, payload ${m.size} bytes intact`,
  );
}

export function register(program: Command): void {
  const snapshot = snapshotCommand(program);
  snapshot
    .command('build')
    .description('pack every file under SRC_DIR into a signed bundle')
    .argument('<src_dir>', 'directory to pack (recursively)')
    .requiredOption('--name <name>', 'snapshot name')
    .requiredOption('--version <version>', 'version string')
    .requiredOption('--seq <n>', 'release counter (positive integer, never reused)')
    .requiredOption('--key <file>', 'release private key (PEM)')
    .requiredOption('--out <file>', 'bundle file to write (.fgb)')
    .requiredOption('--run <command>', 'runtime command line, e.g. "node main.js --port 1"')
    .option('--env <KEY=VALUE>', 'runtime environment variable (repeatable)', collect, [])
    .option('--acceptance <command>', 'acceptance suite command line')
    .option('--acceptance-timeout <s>', 'acceptance suite timeout in seconds', '300')
    .option('--hardware <class>', 'compatible hardware class (repeatable; none = any)', collect, [])
    .option('--adapter <name>', 'required adapter (repeatable)', collect, [])
    .option('--created <ms>', 'creation time in ms since the epoch (default now; set it for reproducible builds)')
    .option('--force', 'overwrite the output file')
    .option('--json', 'print the result as JSON')
    .action(async (src: string, opts: BuildOptions) => build(src, opts));
  snapshot
    .command('inspect')
    .description('show the manifest, id and signer kid of a bundle (does not verify the signature)')
    .argument('<file>', 'bundle file (.fgb)')
    .option('--max-bytes <n>', 'bundle size limit')
    .option('--json', 'print as JSON')
    .action(async (file: string, opts: ReadOptions) => inspect(file, opts));
  snapshot
    .command('verify')
    .description('check a bundle: signed by one of the given release keys, payload intact')
    .argument('<file>', 'bundle file (.fgb)')
    .option('--pub <file>', 'trusted release public key (PEM, repeatable)', collect, [])
    .option('--max-bytes <n>', 'bundle size limit')
    .option('--json', 'print as JSON')
    .action(async (file: string, opts: VerifyOptions) => verify(file, opts));
}
