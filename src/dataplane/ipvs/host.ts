// The IPVS data plane's host state: the dummy device that holds the VIPs (IPVS serves only
// addresses the node sees as local: kube-proxy's kube-ipvs0), and the ip_vs sysctls.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { KbpError } from '../../util/errors.js';
import { DummyLink } from './rtnl.js';

export const DUMMY_DEVICE = 'kbp-ipvs0';

// over rtnetlink (rtnl.ts), in this process's network namespace (not /sys/class/net, which shows
// the namespace sysfs was mounted in: under `nsenter --net` another one)
async function withLink<T>(name: string, go: (l: DummyLink) => Promise<T>): Promise<T> {
  const l = new DummyLink(name);
  try {
    return await go(l);
  } finally {
    l.close();
  }
}

/** Whether the device is there; asked by every agent that starts in another mode (a switch cleans up). */
export async function dummyExists(name = DUMMY_DEVICE): Promise<boolean> {
  try {
    return await withLink(name, (l) => l.exists());
  } catch (e) {
    // no kbp_netlink addon: sysfs still tells, for the namespace it was mounted in
    if ((e as KbpError).code === 'KBP_ERR_KERNEL_FEATURE') return existsSync(`/sys/class/net/${name}`);
    throw e;
  }
}

/** Removes the dummy device (and so its addresses); false when there was none. */
export function removeDummy(name = DUMMY_DEVICE): Promise<boolean> {
  return withLink(name, (l) => l.remove());
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
