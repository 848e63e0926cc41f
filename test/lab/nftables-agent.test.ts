// The agent lab tests (agent.test.ts) against the nftables data plane: the same suite, the agent
// started with --mode nftables (issue 9: the datapath-independent agent tests run in every mode the
// kernel supports; IPVS is not in this kernel and runs in the VM tier).
process.env.KBP_LAB_MODE = 'nftables';
await import('./agent.test.js');
