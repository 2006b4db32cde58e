/**
 * The mosquitto generator: the password hash format against mosquitto_passwd, the ACL file against
 * the embedded broker's rules (broker/acl.ts) topic by topic, the conf, the `broker.mosquitto`
 * config section, the registry storing a mosquitto hash at enrollment, and the file writer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkPublish, checkSubscribe, type Principal } from '../../broker/index.js';
import { resolveConfig } from '../../manager/config.js';
import {
  generateMosquittoFiles,
  MOSQUITTO_HASH,
  type MosquittoSettings,
  mosquittoPasswordHash,
  parsePasswordFile,
  renderAcl,
  renderMosquittoConf,
  verifyMosquittoHash,
} from '../../manager/mosquitto-config.js';
import { MosquittoSync, reloadMosquitto, writeMosquittoFiles } from '../../manager/mosquitto-sync.js';
import { Registry } from '../../manager/registry.js';
import { publicOf } from '../../protocol/keys.js';
import { FleetgateError } from '../../protocol/result.js';
import { DEVICE_CHANNEL_NAMES } from '../../protocol/topics.js';
import { testKeys } from '../fixtures/keys.js';
import { ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const P = 'fleetgate/v1';

/** Written by `mosquitto_passwd -c -b pw alice s3cret` (mosquitto 2.0.11, Debian 12). */
const FROM_MOSQUITTO_PASSWD =
  '$7$101$o41jYQOnNIuGsUqq$OOQUNqdVsjKzBJx41a5LTG713oJDR+e9b97GeCxZcPeV6SdppJeV5sGhcnST2pTFIEdrjAnw6ubIeqJBLyrOUg==';

const SETTINGS: MosquittoSettings = {
  outDir: '/etc/mosquitto/fleetgate',
  listeners: [
    {
      port: 8883,
      host: '0.0.0.0',
      cafile: '/etc/mosquitto/certs/ca.crt',
      certfile: '/etc/mosquitto/certs/server.crt',
      keyfile: '/etc/mosquitto/certs/server.key',
      requireCertificate: false,
      useIdentityAsUsername: false,
    },
    { port: 1883, host: '127.0.0.1', requireCertificate: false, useIdentityAsUsername: false },
  ],
  persistenceLocation: '/var/lib/mosquitto/',
  observers: [{ username: 'grafana', password: 'grafana-secret' }],
  standalone: true,
};

describe('password hashes in mosquitto 2 format ($7$, PBKDF2-SHA512)', () => {
  it('reproduces an entry written by mosquitto_passwd from its salt, and verifies it', () => {
    const salt = Buffer.from('o41jYQOnNIuGsUqq', 'base64');
    expect(salt.length).toBe(MOSQUITTO_HASH.saltBytes);
    expect(mosquittoPasswordHash('s3cret', { salt })).toBe(FROM_MOSQUITTO_PASSWD);
    expect(verifyMosquittoHash('s3cret', FROM_MOSQUITTO_PASSWD)).toBe(true);
    expect(verifyMosquittoHash('s3cret!', FROM_MOSQUITTO_PASSWD)).toBe(false);
  });

  it('writes 101 iterations, a 12-byte salt and a 64-byte key; fresh salt each time', () => {
    const a = mosquittoPasswordHash('x');
    const b = mosquittoPasswordHash('x');
    expect(a).not.toBe(b);
    const [, seven, iter, salt, key] = a.split('$');
    expect([seven, iter]).toEqual(['7', '101']);
    expect(Buffer.from(salt!, 'base64')).toHaveLength(12);
    expect(Buffer.from(key!, 'base64')).toHaveLength(64);
    expect(verifyMosquittoHash('x', a) && verifyMosquittoHash('x', b)).toBe(true);
  });

  it('refuses other formats and malformed entries without throwing', () => {
    for (const bad of ['', 'plain', '$6$abcd$efgh', '$7$0$o41jYQOnNIuGsUqq$AAAA', '$7$101$$', '$7$x$a$b']) {
      expect(verifyMosquittoHash('s3cret', bad)).toBe(false);
    }
  });

  it.skipIf(spawnSync('mosquitto_passwd', ['-h']).error !== undefined)(
    'a file from the installed mosquitto_passwd verifies',
    () => {
      const dir = mkdtempSync(join(tmpdir(), 'fg-mq-pw-'));
      try {
        const file = join(dir, 'pw');
        const r = spawnSync('mosquitto_passwd', ['-c', '-b', file, 'gw-1', 'a-device-secret']);
        expect(r.status).toBe(0);
        const entry = parsePasswordFile(readFileSync(file, 'utf8')).get('gw-1')!;
        expect(verifyMosquittoHash('a-device-secret', entry)).toBe(true);
        expect(verifyMosquittoHash('another', entry)).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

// --- ACL equivalence --------------------------------------------------------------------------

/** MQTT topic-filter match (3.1.1 §4.7), as mosquitto applies ACL topics to a topic. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** mosquitto's acl_file semantics for one user: `pattern` lines for all, `topic` lines under `user`. */
function mosquittoAllows(acl: string, username: string, access: 'read' | 'write', topic: string): boolean {
  let current: string | null = null;
  for (const raw of acl.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [kw, a, b] = line.split(' ');
    if (kw === 'user') {
      current = a!;
      continue;
    }
    const [acc, t] = b === undefined ? ['readwrite', a!] : [a!, b];
    const grants = acc === 'readwrite' || acc === access;
    if (kw === 'pattern' && grants && matches(t.replaceAll('%u', username), topic)) return true;
    if (kw === 'topic' && current === username && grants && matches(t, topic)) return true;
  }
  return false;
}

describe('the ACL file grants what broker/acl.ts grants', () => {
  const acl = renderAcl(P, 'fleetgate-manager', [{ username: 'grafana' }]);
  const principals: Principal[] = [
    { kind: 'device', id: 'gw-1' },
    { kind: 'device', id: 'gw-2' },
    { kind: 'manager', id: 'fleetgate-manager' },
  ];
  const topics = [
    ...['gw-1', 'gw-2', 'gw-3'].flatMap((d) => DEVICE_CHANNEL_NAMES.map((c) => `${P}/devices/${d}/${c}`)),
    `${P}/manager/state`,
    `${P}/devices/gw-1/state/extra`,
    `${P}/other`,
    'fleetgate/v2/devices/gw-1/state',
    '$SYS/broker/clients',
    'elsewhere',
  ];

  it('publish: the same allow/deny for every principal and topic (retain aside)', () => {
    for (const p of principals) {
      for (const t of topics) {
        const embedded = checkPublish(P, p, t, false).ok;
        expect(mosquittoAllows(acl, p.id, 'write', t), `${p.kind} ${p.id} publish ${t}`).toBe(embedded);
      }
    }
  });

  it('subscribe to an exact topic: the same allow/deny', () => {
    for (const p of principals) {
      for (const t of topics) {
        const embedded = checkSubscribe(P, p, t).ok;
        expect(mosquittoAllows(acl, p.id, 'read', t), `${p.kind} ${p.id} subscribe ${t}`).toBe(embedded);
      }
    }
  });

  it('an observer reads the JSON observability topics and writes nothing', () => {
    for (const t of topics) {
      const json =
        /^fleetgate\/v1\/devices\/[^/]+\/(state|reported|health|telemetry)$/.test(t) || t === `${P}/manager/state`;
      expect(mosquittoAllows(acl, 'grafana', 'read', t), t).toBe(json);
      expect(mosquittoAllows(acl, 'grafana', 'write', t), t).toBe(false);
    }
  });

  it('uses %u patterns, one line per channel (no per-device lines: enrollment never touches the ACL)', () => {
    expect(acl).toContain(`pattern write ${P}/devices/%u/state`);
    expect(acl).toContain(`pattern read ${P}/devices/%u/desired`);
    expect(acl).not.toMatch(/gw-\d/);
    expect(acl.match(/^pattern /gm)).toHaveLength(DEVICE_CHANNEL_NAMES.length);
  });
});

// --- conf and files ---------------------------------------------------------------------------

describe('mosquitto.conf', () => {
  it('has no anonymous access, the password and ACL files, TLS and client-id binding per listener', () => {
    const conf = renderMosquittoConf(P, SETTINGS);
    const lines = conf.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines).toEqual(
      expect.arrayContaining([
        'per_listener_settings false',
        'allow_anonymous false',
        'password_file /etc/mosquitto/fleetgate/passwd',
        'acl_file /etc/mosquitto/fleetgate/acl',
        'persistence true',
        'persistence_location /var/lib/mosquitto/',
        'log_dest stderr',
        'listener 8883 0.0.0.0',
        'cafile /etc/mosquitto/certs/ca.crt',
        'certfile /etc/mosquitto/certs/server.crt',
        'keyfile /etc/mosquitto/certs/server.key',
        'require_certificate false',
        'listener 1883 127.0.0.1',
      ]),
    );
    expect(lines.filter((l) => l === 'use_username_as_clientid true')).toHaveLength(2);
    // The plain listener gets no TLS lines: they would apply to it.
    const plain = conf.slice(conf.indexOf('listener 1883'));
    expect(plain).not.toMatch(/certfile|cafile/);
  });

  it('bounds what the persistent session of an absent device holds, standalone and as a snippet', () => {
    for (const standalone of [true, false]) {
      const conf = renderMosquittoConf(P, { ...SETTINGS, standalone });
      expect(conf).toMatch(/^max_queued_messages 64$/m);
      expect(conf).toMatch(/^max_queued_bytes 8388608$/m);
      expect(conf).toMatch(/^persistent_client_expiration 7d$/m);
    }
  });

  it('as a conf.d snippet leaves persistence, logging, pid and user to the main file', () => {
    const conf = renderMosquittoConf(P, { ...SETTINGS, standalone: false, pidFile: '/run/m.pid', user: 'mosquitto' });
    expect(conf).not.toMatch(/^(persistence|log_dest|pid_file|user) /m);
    expect(conf).toMatch(/^allow_anonymous false$/m);
    const standalone = renderMosquittoConf(P, { ...SETTINGS, pidFile: '/run/m.pid', user: 'mosquitto' });
    expect(standalone).toMatch(/^pid_file \/run\/m\.pid$/m);
    expect(standalone).toMatch(/^user mosquitto$/m);
  });

  it('client certificates: require_certificate, and the CN as username when asked', () => {
    const l = { ...SETTINGS.listeners[0]!, requireCertificate: true, useIdentityAsUsername: true };
    const conf = renderMosquittoConf(P, { ...SETTINGS, listeners: [l] });
    expect(conf).toMatch(/^require_certificate true$/m);
    expect(conf).toMatch(/^use_identity_as_username true$/m);
  });
});

describe('password file', () => {
  const fixed = (s: string) => `H(${s})`;
  const manager = { username: 'fleetgate-manager', password: 'mgr-pw' };

  it('manager, observers and devices (sorted); devices without a mosquitto hash are left out with a reason', () => {
    const f = generateMosquittoFiles({
      prefix: P,
      settings: SETTINGS,
      manager,
      hash: fixed,
      devices: [
        { device: 'gw-2', mosquitto: '$7$101$b$b' },
        { device: 'gw-1', mosquitto: '$7$101$a$a' },
        { device: 'old-gw', mosquitto: null },
        { device: 'grafana', mosquitto: '$7$101$c$c' },
      ],
    });
    expect(f.passwd).toBe('fleetgate-manager:H(mgr-pw)\ngrafana:H(grafana-secret)\ngw-1:$7$101$a$a\ngw-2:$7$101$b$b\n');
    expect(f.devices).toBe(2);
    expect(f.skipped.map((s) => s.device)).toEqual(['grafana', 'old-gw']);
    expect(f.skipped[1]!.reason).toMatch(/rotate its secret/);
  });

  it('keeps the previous manager entry while it matches, so an unchanged fleet gives the same file', () => {
    const first = generateMosquittoFiles({ prefix: P, settings: SETTINGS, manager, devices: [] });
    const again = generateMosquittoFiles({
      prefix: P,
      settings: SETTINGS,
      manager,
      devices: [],
      previous: parsePasswordFile(first.passwd),
    });
    expect(again.passwd).toBe(first.passwd);
    const changed = generateMosquittoFiles({
      prefix: P,
      settings: SETTINGS,
      manager: { ...manager, password: 'new' },
      devices: [],
      previous: parsePasswordFile(first.passwd),
    });
    const entry = parsePasswordFile(changed.passwd).get('fleetgate-manager')!;
    expect(verifyMosquittoHash('new', entry)).toBe(true);
  });
});

describe('manager.yaml broker.mosquitto', () => {
  const base = {
    broker: {
      external: { url: 'mqtts://127.0.0.1:8883', username: 'fleetgate-manager', password: 'pw', ca: 'ca.crt' },
      mosquitto: {
        out: 'mosquitto',
        listeners: [{ port: 8883, cafile: 'ca.crt', certfile: 'server.crt', keyfile: 'server.key' }],
        persistence_location: 'mq-data',
      },
    },
  };
  const resolve = (raw: unknown) => resolveConfig(raw, { baseDir: '/srv/fg', source: 'manager.yaml' });

  it('resolves paths against the config folder', () => {
    const r = resolve(base);
    expect(r.ok).toBe(true);
    if (!r.ok || r.value.broker.mode !== 'external') return;
    const m = r.value.broker.mosquitto!;
    expect(m.outDir).toBe('/srv/fg/mosquitto');
    expect(m.persistenceLocation).toBe('/srv/fg/mq-data/');
    expect(m.listeners[0]).toMatchObject({ port: 8883, certfile: '/srv/fg/server.crt', requireCertificate: false });
  });

  const atOf = (raw: unknown) => {
    const r = resolve(raw);
    return r.ok ? 'ok' : `${r.error.code} ${r.error.at}`;
  };

  it('names the field of each mistake', () => {
    const mq = base.broker.mosquitto;
    expect(atOf({ broker: { mosquitto: mq } })).toBe('FG_CONFIG_INVALID broker.mosquitto');
    expect(atOf({ broker: { ...base.broker, external: { ...base.broker.external, password: undefined } } })).toBe(
      'FG_CONFIG_INVALID broker.external.password',
    );
    const listener = (l: Record<string, unknown>) => ({
      broker: { ...base.broker, mosquitto: { ...mq, listeners: [l] } },
    });
    expect(atOf(listener({ port: 8883, certfile: 'a' }))).toBe(
      'FG_CONFIG_INVALID broker.mosquitto.listeners.0.certfile',
    );
    expect(atOf(listener({ port: 8883, require_certificate: true }))).toBe(
      'FG_CONFIG_INVALID broker.mosquitto.listeners.0.require_certificate',
    );
    expect(atOf({ broker: { ...base.broker, mosquitto: { ...mq, out: '/etc/my dir' } } })).toBe(
      'FG_CONFIG_INVALID broker.mosquitto.out',
    );
    expect(atOf({ broker: { ...base.broker, mosquitto: { ...mq, listeners: [] } } })).toBe(
      'FG_CONFIG_INVALID broker.mosquitto.listeners',
    );
  });
});

// --- enrollment stores the hash, the writer keeps the files in step ---------------------------

describe('registry and writer', () => {
  let t: TempStore;
  let reg: Registry;
  const changes: string[] = [];
  const k = testKeys();

  beforeEach(() => {
    t = tempStore();
    changes.length = 0;
    reg = new Registry({
      store: t.store,
      clock: new ManualClock(),
      logger: silent,
      prefix: P,
      releaseKeys: [publicOf(k.release)],
      managerKey: publicOf(k.manager),
      agentBroker: () => ({ url: 'mqtts://127.0.0.1:8883' }),
      defaultTrialWindowS: 60,
      latestOf: () => undefined,
      onCredentialChange: (id) => changes.push(id),
    });
  });
  afterEach(() => t.cleanup());

  it('enrollment and rotation store a mosquitto hash of the secret; removal drops the device', async () => {
    const a = await reg.add({ id: 'gw-1', site: 's', hardware: 'h' });
    await reg.add({ id: 'gw-2', site: 's', hardware: 'h' });
    const creds = () => new Map(t.store.devices.brokerCredentials().map((c) => [c.device, c.mosquitto]));
    expect(verifyMosquittoHash(a.secret, creds().get('gw-1')!)).toBe(true);
    const rotated = await reg.rotateSecret('gw-1');
    expect(verifyMosquittoHash(a.secret, creds().get('gw-1')!)).toBe(false);
    expect(verifyMosquittoHash(rotated.secret, creds().get('gw-1')!)).toBe(true);
    reg.remove('gw-2');
    expect([...creds().keys()]).toEqual(['gw-1']);
    expect(changes).toEqual(['gw-1', 'gw-2', 'gw-1', 'gw-2']);
  });

  it('a store from before migration 2 keeps working: old rows have no hash and are reported', async () => {
    await reg.add({ id: 'gw-1', site: 's', hardware: 'h' });
    t.store.db.prepare('UPDATE credentials SET mosquitto = NULL').run();
    expect(t.store.devices.brokerCredentials()).toEqual([{ device: 'gw-1', mosquitto: null }]);
  });

  it('writes the three files atomically with their modes, rewrites only what changed, and reloads', async () => {
    const dir = join(t.dir, 'mq');
    const pidFile = join(t.dir, 'mosquitto.pid');
    writeFileSync(pidFile, `${process.pid}\n`);
    let hups = 0;
    const onHup = () => hups++;
    process.on('SIGHUP', onHup);
    try {
      const settings = { ...SETTINGS, outDir: dir, pidFile };
      const manager = { username: 'fleetgate-manager', password: 'mgr-pw' };
      const sync = new MosquittoSync({
        prefix: P,
        settings,
        manager,
        credentials: () => t.store.devices.brokerCredentials(),
        logger: silent,
        debounceMs: 10,
      });
      const first = sync.syncNow()!;
      expect(first.changed).toEqual(['conf', 'acl', 'passwd']);
      expect(first.reloaded).toBe(true);
      expect(statSync(join(dir, 'passwd')).mode & 0o777).toBe(0o640);
      expect(statSync(join(dir, 'acl')).mode & 0o777).toBe(0o644);
      expect(readFileSync(join(dir, 'mosquitto.conf'), 'utf8')).toContain(`password_file ${dir}/passwd`);
      expect(sync.syncNow()!.changed).toEqual([]); // nothing new: no write, no reload

      const added = await reg.add({ id: 'gw-7', site: 's', hardware: 'h' });
      sync.schedule();
      sync.schedule(); // coalesced
      await new Promise((r) => setTimeout(r, 60));
      const entry = parsePasswordFile(readFileSync(join(dir, 'passwd'), 'utf8')).get('gw-7')!;
      expect(verifyMosquittoHash(added.secret, entry)).toBe(true);
      expect(sync.counters).toEqual({ writes: 2, reloads: 2, failures: 0 });
      await new Promise((r) => setTimeout(r, 20));
      expect(hups).toBe(2);

      // --out writes elsewhere and the conf names the new place.
      const other = join(t.dir, 'elsewhere');
      const r = writeMosquittoFiles({ prefix: P, settings, manager, devices: [], dir: other, reload: false });
      expect(r.reloaded).toBe(false);
      expect(readFileSync(join(other, 'mosquitto.conf'), 'utf8')).toContain(`acl_file ${other}/acl`);
    } finally {
      process.off('SIGHUP', onHup);
    }
  });

  it('reload failures carry FG_BROKER_RELOAD; write failures FG_FILE_WRITE, and the sync only logs them', () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
        return 'ok';
      } catch (e) {
        return e instanceof FleetgateError ? e.code : String(e);
      }
    };
    expect(code(() => reloadMosquitto(join(t.dir, 'missing.pid')))).toBe('FG_BROKER_RELOAD');
    writeFileSync(join(t.dir, 'bad.pid'), 'not a pid');
    expect(code(() => reloadMosquitto(join(t.dir, 'bad.pid')))).toBe('FG_BROKER_RELOAD');
    writeFileSync(join(t.dir, 'file'), 'x');
    const blocked = { ...SETTINGS, outDir: join(t.dir, 'file', 'sub') };
    const manager = { username: 'm', password: 'p' };
    expect(code(() => writeMosquittoFiles({ prefix: P, settings: blocked, manager, devices: [] }))).toBe(
      'FG_FILE_WRITE',
    );
    const sync = new MosquittoSync({ prefix: P, settings: blocked, manager, credentials: () => [], logger: silent });
    expect(sync.syncNow()).toBeNull();
    expect(sync.counters.failures).toBe(1);
  });
});
