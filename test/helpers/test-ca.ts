/**
 * Test certificates made on the fly with the openssl CLI (EC P-256, valid 2 days): a CA and server
 * or client certificates it signs. Files land in the given folder as `<name>.crt` / `<name>.key`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

export function makeCa(dir: string, name: string): CertFiles {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-subj',
    `/CN=${name}`,
    '-days',
    '2',
    '-out',
    `${name}.crt`,
  ]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/**
 * A certificate for `cn` signed by `ca`; `san` (e.g. `IP:127.0.0.1,DNS:localhost`) makes it a
 * server certificate clients can check the host name against.
 */
export function issueCert(dir: string, name: string, cn: string, ca: string, san?: string): CertFiles {
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`]);
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  const ext: string[] = [];
  if (san) {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    ext.push('-extfile', `${name}.ext`);
  }
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${name}.crt`,
    ...ext,
  ]);
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}
