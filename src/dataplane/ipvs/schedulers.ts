// The kernel's IPVS schedulers (ip_vs_*.ko), apart so the configuration checks a name without
// loading the data plane.
export const IPVS_SCHEDULERS = ['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'mh', 'fo', 'ovf', 'twos'] as const;
