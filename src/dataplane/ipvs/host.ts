// The IPVS data plane's host state: the dummy device that holds the VIPs (IPVS serves only
// addresses the node sees as local: kube-proxy's kube-ipvs0), and the ip_vs sysctls.
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { canonicalIp } from '../../util/ip.js';
import { systemBinary } from '../../util/exec.js';
import { KbpError } from '../../util/errors.js';

export const DUMMY_DEVICE = 'kbp-ipvs0';

function ip(args: string[]): string {
  // the dummy's address list at 10,000 Services is over the default 1 MiB of output (ENOBUFS,
  // seen in the IPVS bench: cleanup, and so init and every resync, failed at 10k)
  return execFileSync(systemBinary('ip'), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 512 << 20 });
}

export function dummyExists(name = DUMMY_DEVICE): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Creates the dummy device when missing (left down, as kube-ipvs0: its addresses are local all the same). */
export function ensureDummy(name = DUMMY_DEVICE): void {
  if (dummyExists(name)) return;
  try {
    ip(['link', 'add', name, 'type', 'dummy']);
  } catch (e) {
    throw new KbpError('KBP_ERR_KERNEL_FEATURE', `creating the dummy device ${name} failed (is the dummy module there?): ${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}`, { cause: e });
  }
}

export function removeDummy(name = DUMMY_DEVICE): boolean {
  if (!dummyExists(name)) return false;
  ip(['link', 'del', name]);
  return true;
}

/** The addresses on the device (canonical text). */
export function dummyAddresses(name = DUMMY_DEVICE): string[] {
  if (!dummyExists(name)) return [];
  const j = JSON.parse(ip(['-j', 'addr', 'show', 'dev', name])) as Array<{ addr_info?: Array<{ local?: string }> }>;
  return j.flatMap((l) => (l.addr_info ?? []).flatMap((a) => (a.local ? [canonicalIp(a.local)] : [])));
}

/** Adds and removes addresses in one `ip -batch` (one process per sync, not one per address). */
export function setDummyAddresses(add: string[], del: string[], name = DUMMY_DEVICE): Promise<void> {
  if (!add.length && !del.length) return Promise.resolve();
  const lines = [
    ...del.map((a) => `addr del ${a}/${a.includes(':') ? 128 : 32} dev ${name}`),
    ...add.map((a) => `addr add ${a}/${a.includes(':') ? '128 nodad' : 32} dev ${name}`),
  ];
  return new Promise((resolve, reject) => {
    const child = execFile(systemBinary('ip'), ['-batch', '-'], (err, _out, stderr) => {
      if (err) reject(new KbpError('KBP_ERR_DATAPLANE', `addresses of ${name}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve();
    });
    child.stdin?.end(`${lines.join('\n')}\n`);
  });
}

const VS_SYSCTL = '/proc/sys/net/ipv4/vs';

/** Kernel release as [major, minor]. */
export function kernelVersion(rel = release()): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * The sysctls IPVS mode needs, as kube-proxy sets them: conntrack (so nftables can masquerade what
 * IPVS forwards), expire_nodest_conn (a flow whose real server was deleted is expired on its next
 * packet and rescheduled, not blackholed), expire_quiescent_template (a persistence template that
 * points to a weight-0 real server is dropped, so affinity does not pin new flows to a draining
 * one). conn_reuse_mode stays as the kernel has it from 5.9 on: before 5.9, its default (1) made a
 * reused source port wait 1 s for a SYN retransmit (k8s #70747), which kube-proxy avoided with 0 at
 * the price of sending those flows to a deleted real server; 5.9 fixed the delay, and 0 would now
 * only bring the price back. Before 5.9 we set 0, as kube-proxy does.
 */
export function applySysctls(root = VS_SYSCTL, rel = release()): Array<{ key: string; value: string }> {
  if (!existsSync(root)) throw new KbpError('KBP_ERR_KERNEL_FEATURE', `${root} is missing: the kernel has no IPVS (ip_vs module)`);
  const want: Array<[string, string]> = [['conntrack', '1'], ['expire_nodest_conn', '1'], ['expire_quiescent_template', '1']];
  const [maj, min] = kernelVersion(rel);
  if (maj < 5 || (maj === 5 && min < 9)) want.push(['conn_reuse_mode', '0']);
  const changed: Array<{ key: string; value: string }> = [];
  for (const [k, v] of want) {
    const path = `${root}/${k}`;
    if (readFileSync(path, 'utf8').trim() === v) continue;
    try {
      writeFileSync(path, v);
    } catch (e) {
      throw new KbpError('KBP_ERR_DATAPLANE', `sysctl net.ipv4.vs.${k}=${v}: ${(e as Error).message}`, { cause: e });
    }
    changed.push({ key: `net.ipv4.vs.${k}`, value: v });
  }
  return changed;
}
