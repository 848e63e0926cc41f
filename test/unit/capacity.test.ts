import test from 'ava';
import { capacityAdvice, CapacityTracker, fitToCapacity, UNLIMITED } from '../../src/plan/capacity.js';
import { maglevSize } from '../../src/plan/maglev.js';
import type { NodeFrontend, NodeState } from '../../src/model/compiled.js';

function fe(service: string, address: string, backends: number): NodeFrontend {
  return {
    service, portName: '', type: 'ClusterIP', address, port: 80, protocol: 'TCP', scope: 'internal',
    backends: Array.from({ length: backends }, (_, i) => ({ address: `10.244.${address.split('.')[3]}.${i + 1}`, port: 80, terminating: false, local: false })),
    sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false,
  };
}

const state: NodeState = { frontends: [fe('ns/c', '10.96.0.3', 2), fe('ns/a', '10.96.0.1', 2), fe('ns/b', '10.96.0.2', 2)] };

test('a state that fits is returned as it is', (t) => {
  const r = fitToCapacity(state, UNLIMITED);
  t.is(r.state, state);
  t.deepEqual(r.dropped, []);
});

test('over a limit, the last Services by name are dropped until the rest fits, and named', (t) => {
  const r = fitToCapacity(state, { ...UNLIMITED, backends: 4 });
  t.deepEqual(r.dropped, ['ns/c']);
  t.is(r.limit, 'backends');
  t.deepEqual(r.state.frontends.map((f) => f.service).sort(), ['ns/a', 'ns/b']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, frontends: 1 }).dropped, ['ns/b', 'ns/c']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, frontendIds: 3 }).dropped, ['ns/c']);
  t.deepEqual(fitToCapacity(state, { ...UNLIMITED, slots: 0 }).dropped, ['ns/a', 'ns/b', 'ns/c']);
});

test('Maglev slots: a table per distinct member set (pow2 M, whole elements); frontends sharing one count it once', (t) => {
  // 2 backends: M = 251 (the minimum), 252 slots; ns/a's second frontend shares its table
  const shared = { ...fe('ns/a', '10.96.0.1', 2), address: '10.96.1.1' };
  const s: NodeState = { frontends: [...state.frontends, shared] };
  t.deepEqual(fitToCapacity(s, { ...UNLIMITED, maglevSlots: 756 }).dropped, []);
  const r = fitToCapacity(s, { ...UNLIMITED, maglevSlots: 755 });
  t.deepEqual(r.dropped, ['ns/c']);
  t.is(r.limit, 'maglevSlots');
  const tr = new CapacityTracker();
  t.deepEqual(tr.fit(s, { ...UNLIMITED, maglevSlots: 755 }).dropped, ['ns/c'], 'the tracker counts the same');
  t.deepEqual(tr.fit({ frontends: s.frontends.filter((f) => f !== shared) }, { ...UNLIMITED, maglevSlots: 755 }).dropped, ['ns/c']);
});

test('CapacityTracker gives fitToCapacity\'s result over a sequence of states sharing objects', async (t) => {
  const { CapacityTracker } = await import('../../src/plan/capacity.js');
  const tr = new CapacityTracker();
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 2), c = fe('ns/c', '10.96.0.3', 2);
  // a second frontend of ns/a over the same backends: they count once
  const a2 = { ...a, port: 81, backends: a.backends };
  const states: NodeState[] = [
    { frontends: [a, b, c] },
    { frontends: [a, a2, b, c] },
    { frontends: [a, b] },
    { frontends: [a, fe('ns/b', '10.96.0.2', 3), c] },
    { frontends: [] },
    { frontends: [c, c] },
    { frontends: [a, a2, b, c] },
  ];
  const caps = [UNLIMITED, { ...UNLIMITED, backends: 4 }, { ...UNLIMITED, slots: 5 }, { ...UNLIMITED, frontends: 2 }];
  for (const s of states) {
    for (const cap of caps) {
      const want = fitToCapacity(s, cap);
      const got = tr.fit(s, cap);
      t.deepEqual(got.dropped, want.dropped);
      t.is(got.limit, want.limit);
      t.deepEqual(got.state.frontends, want.state.frontends);
    }
  }
});

test('a Service the data plane holds keeps its place: the newcomer is left out, even when it sorts first (issue 13)', (t) => {
  const held = { frontends: [fe('ns/b', '10.96.0.2', 2), fe('ns/c', '10.96.0.3', 2)] };
  const r = fitToCapacity(state, { ...UNLIMITED, frontends: 2 }, () => new Set(held.frontends.map((f) => f.service)));
  t.deepEqual(r.dropped, ['ns/a']);
  const tr = new CapacityTracker();
  t.deepEqual(tr.fit(held, { ...UNLIMITED, frontends: 2 }).dropped, []);
  t.deepEqual(tr.fit(state, { ...UNLIMITED, frontends: 2 }, () => new Set(['ns/b', 'ns/c']), () => held).dropped, ['ns/a']);
});

test('room is kept for what a sync removes while it writes: a newcomer replacing a removed Service waits one sync (issue 13)', (t) => {
  const cap = { ...UNLIMITED, frontends: 3 };
  const tr = new CapacityTracker();
  const s1: NodeState = { frontends: [fe('ns/b', '10.96.0.2', 2), fe('ns/c', '10.96.0.3', 2)] };
  t.deepEqual(tr.fit(s1, cap).dropped, []);
  // ns/c goes, ns/a and ns/d come: the maps hold b, c, a, d during the write, one more than fits
  const s2: NodeState = { frontends: [fe('ns/a', '10.96.0.1', 2), s1.frontends[0]!, fe('ns/d', '10.96.0.4', 2)] };
  const r2 = tr.fit(s2, cap, () => new Set(['ns/b', 'ns/c']), () => s1);
  t.deepEqual(r2.dropped, ['ns/d']);
  t.true(r2.waitsForRemovals);
  // the next sync, with c gone from the kernel, takes it
  const r3 = tr.fit(s2, cap, () => new Set(['ns/a', 'ns/b']), () => r2.state);
  t.deepEqual(r3.dropped, []);
  t.falsy(r3.waitsForRemovals);
});

test('KeyCounts: the same counts and size as a Map over random adds and removals, through growth and collisions', async (t) => {
  const { KeyCounts } = await import('../../src/plan/capacity.js');
  const kc = new KeyCounts();
  const model = new Map<number | string, number>();
  let seed = 7;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  // keys near 2^50 and small ones, a few text keys; a narrow range so removals hit often
  const keyOf = (i: number): number | string => i % 17 === 0 ? `fd00::${i}|80|TCP` : i % 2 ? 2 ** 49 + i * 262144 : i;
  for (let step = 0; step < 20_000; step++) {
    const k = keyOf(rnd(3000));
    const sign = rnd(3) === 0 ? -1 : 1;
    const have = model.get(k) ?? 0;
    if (sign < 0 && !have) continue;
    kc.add(k, sign);
    if (have + sign) model.set(k, have + sign);
    else model.delete(k);
    if (step % 997 === 0) t.is(kc.size, model.size, `size at step ${step}`);
  }
  t.is(kc.size, model.size);
  // every count reaches 0 exactly when the model's does
  for (const [k, n] of [...model]) for (let i = 0; i < n; i++) kc.add(k, -1);
  t.is(kc.size, 0);
});

test('backend and table keys: equal exactly for the same backend or member set, whatever the order', async (t) => {
  const { backendCountKey, tableKey } = await import('../../src/plan/capacity.js');
  t.is(backendCountKey('10.244.1.2', 8080, 'TCP'), backendCountKey('10.244.1.2', 8080, 'TCP'));
  const distinct = [
    backendCountKey('10.244.1.2', 8080, 'TCP'), backendCountKey('10.244.1.2', 8080, 'UDP'), backendCountKey('10.244.1.2', 8081, 'TCP'),
    backendCountKey('10.244.1.3', 8080, 'TCP'), backendCountKey('255.255.255.255', 65535, 'SCTP'), backendCountKey('0.0.0.0', 0, 'TCP'),
    // not canonical, or not IPv4: text, so never equal to another spelling's number
    backendCountKey('10.244.1.02', 8080, 'TCP'), backendCountKey('fd00::2', 8080, 'TCP'),
  ];
  t.is(new Set(distinct).size, distinct.length);
  t.is(typeof distinct[6], 'string');
  const m = (a: string, port: number) => ({ address: a, port });
  const set = [m('10.0.0.1', 80), m('10.0.0.2', 80), m('10.0.1.1', 443)];
  t.is(tableKey('TCP', set), tableKey('TCP', [...set].reverse()));
  const others = [
    tableKey('TCP', set), tableKey('UDP', set), tableKey('TCP', set.slice(1)), tableKey('TCP', [...set, m('10.0.0.1', 80)]),
    tableKey('TCP', [m('10.0.0.1', 81), m('10.0.0.2', 80), m('10.0.1.1', 443)]), tableKey('TCP', [...set.slice(1), m('fd00::1', 80)]),
    tableKey('TCP', [m('fd00::1', 80)]), tableKey('TCP', [m('fd00::1', 81)]),
  ];
  t.is(new Set(others).size, others.length);
  // a large member set is built in pieces and is still order-free
  const big = Array.from({ length: 5000 }, (_, i) => m(`10.${i >> 8}.${i & 255}.1`, 80));
  t.is(tableKey('TCP', big), tableKey('TCP', [...big].reverse()));
});

test('a change record that does not match the state is recounted afresh: Maglev tables too, as a fresh tracker counts them', async (t) => {
  const { recordStateDelta } = await import('../../src/plan/delta.js');
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 2), c = fe('ns/c', '10.96.0.3', 2);
  const s1: NodeState = { frontends: [a, b] };
  const s2: NodeState = { frontends: [a, c] };
  // the record says c was added and omits b's removal: it does not add up, so the tracker recounts
  recordStateDelta(s2, s1, [c], []);
  const tr = new CapacityTracker();
  tr.fit(s1, UNLIMITED);
  // two tables of 252 slots: exactly what s2 needs
  const cap = { ...UNLIMITED, maglevSlots: 504 };
  const fresh = new CapacityTracker().fit(s2, cap);
  t.deepEqual(fresh.dropped, []);
  const got = tr.fit(s2, cap);
  t.deepEqual(got.dropped, fresh.dropped, 'no table counted twice, none of b left behind');
  t.is(got.limit, fresh.limit);
  // and the counts stay right afterwards: removing ns/a frees its table
  const s3: NodeState = { frontends: [c] };
  recordStateDelta(s3, s2, [], [a]);
  const tight = { ...UNLIMITED, maglevSlots: 252 };
  t.deepEqual(tr.fit(s3, tight).dropped, new CapacityTracker().fit(s3, tight).dropped);
  t.deepEqual(tr.fit(s3, tight).dropped, []);
});

test('the Services kept are the longest run in order that fits, as a count of every prefix finds it (random states, every limit)', (t) => {
  // the reference: count each prefix of the Services afresh (held ones first, then by name) and keep
  // the longest that fits; the fit walks the run once (it once bisected, counting ~log2(n) prefixes)
  let seed = 11;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const count = (fs: readonly NodeFrontend[]) => {
    const backends = new Set<string>(), tables = new Map<string, number>();
    let slots = 0, ranges = 0;
    for (const f of fs) {
      slots += f.backends.length;
      ranges += f.sourceRanges.length;
      for (const b of f.backends) backends.add(`${b.address}|${b.port}|${f.protocol}`);
      if (f.backends.length) tables.set(`${f.protocol}|${f.backends.map((b) => `${b.address}|${b.port}`).sort().join(',')}`, Math.ceil(maglevSize(f.backends.length, 'pow2') / 2) * 2);
    }
    return { frontends: fs.length, backends: backends.size, slots, frontendIds: fs.length + 1, sourceRanges: ranges, maglevSlots: [...tables.values()].reduce((a, b) => a + b, 0) };
  };
  for (let round = 0; round < 60; round++) {
    const frontends: NodeFrontend[] = [];
    const n = 1 + rnd(12);
    for (let i = 0; i < n; i++) {
      for (let p = 0; p <= rnd(2); p++) {
        const f = fe(`ns/s${rnd(8)}`, `10.96.${i}.${p + 1}`, rnd(4));
        // some backends shared between Services (a backend counts once)
        if (rnd(3) === 0) f.backends = f.backends.map((b, j) => ({ ...b, address: `10.244.0.${j + 1}` }));
        if (rnd(4) === 0) f.sourceRanges = ['10.0.0.0/8'];
        frontends.push(f);
      }
    }
    const state: NodeState = { frontends };
    const whole = count(frontends);
    const keys = ['frontends', 'backends', 'slots', 'frontendIds', 'sourceRanges', 'maglevSlots'] as const;
    const limit = keys[rnd(keys.length)]!;
    const cap = { ...UNLIMITED, [limit]: rnd(whole[limit] + 2) };
    const held = new Set([...new Set(frontends.map((f) => f.service))].filter(() => rnd(3) === 0));
    const services = [...new Set(frontends.map((f) => f.service))].sort((a, b) => Number(held.has(b)) - Number(held.has(a)) || (a < b ? -1 : a > b ? 1 : 0));
    let keep = 0;
    while (keep < services.length && count(frontends.filter((f) => services.slice(0, keep + 1).includes(f.service)))[limit] <= cap[limit]) keep++;
    const want = whole[limit] <= cap[limit] ? [] : services.slice(keep);
    const r = fitToCapacity(state, cap, () => held);
    t.deepEqual(r.dropped, want, `round ${round}: ${limit} ${cap[limit]} of ${whole[limit]}`);
    t.deepEqual(r.state.frontends, frontends.filter((f) => !want.includes(f.service)));
    if (want.length) t.is(r.needed, whole[limit]);
    t.deepEqual(new CapacityTracker().fit(state, cap, () => held).dropped, want, 'the tracker keeps the same');
  }
});

test('advice for a limit: the map and a --bpf-map-max size holding every Service with a quarter to spare', (t) => {
  const a = capacityAdvice('maglevSlots', 1001, { ...UNLIMITED, maglevSlots: 504 })!;
  t.deepEqual(a.maps, ['lb_maglev_slots']);
  t.regex(a.text, /map lb_maglev_slots holds 504 Maglev slots, every Service together needs 1001: restart the agent with --bpf-map-max lb_maglev_slots=1252 /);
  // lb_backends counts id 0, which no backend takes
  t.regex(capacityAdvice('backends', 8, { ...UNLIMITED, backends: 3 })!.text, /map lb_backends holds 4, every Service together needs 9: .* --bpf-map-max lb_backends=12 /);
  t.regex(capacityAdvice('slots', 8, { ...UNLIMITED, slots: 3 })!.text, /maps lb_slots and lb_members hold 3, .* --bpf-map-max lb_slots=10 --bpf-map-max lb_members=10 /);
  t.is(capacityAdvice('frontends', 3, { ...UNLIMITED, frontends: 3 }), undefined, 'no advice where every Service fits (one waits for a removal)');
});

test('CapacityTracker over a run of changes with compile\'s records: the same Services kept and left out as without the records (random)', async (t) => {
  // with a record, a change only to Services left out after the first left out reuses the last fit,
  // and a change to a kept Service follows it (#followFit); without one (a copy of the state) every
  // fit walks: the two must agree at every step
  const { recordStateDelta, stateDelta } = await import('../../src/plan/delta.js');
  let followed = 0;
  let seed = 5;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  for (let run = 0; run < 8; run++) {
    const a = new CapacityTracker(), b = new CapacityTracker();
    let state: NodeState = { frontends: Array.from({ length: 10 }, (_, i) => fe(`ns/s${i}`, `10.96.0.${i + 1}`, 1 + rnd(3))) };
    const cap = { ...UNLIMITED, maglevSlots: 252 * (3 + rnd(4)), ...(rnd(2) ? { backends: 8 + rnd(8) } : {}) };
    let heldA: NodeState | undefined, heldB: NodeState | undefined;
    let reused = 0;
    for (let step = 0; step < 120; step++) {
      const prev = state;
      const fs = [...prev.frontends];
      const added: NodeFrontend[] = [], removed: NodeFrontend[] = [];
      const op = rnd(10);
      if (op < 7 && fs.length) {
        // an endpoint change: a new frontend object for one Service
        const k = rnd(fs.length), old = fs[k]!;
        const n = fe(old.service, old.address, 1 + rnd(3));
        fs[k] = n;
        removed.push(old);
        added.push(n);
      } else if (op < 8 && fs.length) {
        // a Service gains a frontend (another port)
        const n = { ...fe(fs[rnd(fs.length)]!.service, `10.96.2.${step}`, 1 + rnd(3)), port: 81 };
        fs.push(n);
        added.push(n);
      } else if (op < 9) {
        const i = 10 + rnd(30);
        const n = fe(`ns/s${i}`, `10.96.1.${i}`, 1 + rnd(3));
        if (!fs.some((f) => f.address === n.address)) {
          fs.push(n);
          added.push(n);
        }
      } else if (fs.length) {
        removed.push(...fs.splice(rnd(fs.length), 1));
      }
      state = { frontends: fs };
      recordStateDelta(state, prev, added, removed);
      const ra = a.fit(state, cap, () => new Set(heldA?.frontends.map((f) => f.service)), () => heldA);
      const rb = b.fit({ frontends: [...fs] }, cap, () => new Set(heldB?.frontends.map((f) => f.service)), () => heldB);
      t.deepEqual(ra.dropped, rb.dropped, `run ${run} step ${step}`);
      t.deepEqual(ra.state.frontends, rb.state.frontends, `run ${run} step ${step}: the frontends kept`);
      t.is(ra.limit, rb.limit);
      t.is(ra.needed, rb.needed);
      t.is(ra.waitsForRemovals, rb.waitsForRemovals);
      if (heldA && ra.state === heldA) reused++;
      // a kept Service's change followed: a new kept state recorded against the held one
      if (heldA && ra.state !== heldA && ra.dropped.length && stateDelta(ra.state, heldA)) followed++;
      heldA = ra.state;
      heldB = rb.state;
    }
    t.true(reused > 0 || run > 0, `run ${run}: the last fit was reused ${reused} times`);
  }
  t.true(followed > 20, `a kept Service's change was followed ${followed} times`);
});

test('tableKey: the same key as the sorted-copy construction it replaced (random member sets, in and out of order, long ones)', async (t) => {
  const { tableKey } = await import('../../src/plan/capacity.js');
  // the construction before session 26: the values copied into an array sorted by a comparator,
  // the units pushed onto a fresh array
  const reference = (protocol: string, members: readonly { address: string; port: number }[]): string => {
    const codes: Record<string, number> = { TCP: 0, UDP: 1, SCTP: 2 };
    const nums: number[] = [];
    let compact = codes[protocol] !== undefined;
    for (const m of members) {
      const parts = m.address.split('.');
      const ok = parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
      if (!ok || !Number.isInteger(m.port) || m.port < 0 || m.port > 65535) { compact = false; break; }
      nums.push(parts.reduce((v, p) => v * 256 + Number(p), 0) * 65536 + m.port);
    }
    if (!compact) return `\u0002${protocol}|${members.map((b) => `${b.address}|${b.port}`).sort().join(',')}`;
    nums.sort((x, y) => x - y);
    const units: number[] = [1, codes[protocol]!];
    for (const x of nums) {
      const ip = Math.floor(x / 65536);
      units.push(ip >>> 16, ip & 0xffff, x % 65536);
    }
    let out = '';
    for (let i = 0; i < units.length; i += 1000) out += String.fromCharCode(...units.slice(i, i + 1000));
    return out;
  };
  let seed = 11;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const addr = () => rnd(40) === 0 ? ['fd00::1', '10.0.0.01', '256.1.1.1', '1.2.3'][rnd(4)]! : `${rnd(256)}.${rnd(256)}.${rnd(256)}.${rnd(256)}`;
  for (let k = 0; k < 2000; k++) {
    const n = k % 100 === 0 ? 1000 + rnd(2000) : 1 + rnd(20);
    // random, or compile's canonical order (ascending, as most states list them), a duplicate now and then
    const base = rnd(1 << 20);
    const members = k % 2
      ? Array.from({ length: n }, () => ({ address: addr(), port: rnd(50) === 0 ? 70000 : rnd(65536) }))
      : Array.from({ length: n }, (_, i) => ({ address: `10.${(base + 3 * i) >> 16 & 255}.${(base + 3 * i) >> 8 & 255}.${(base + 3 * i) & 255}`, port: 8080 }));
    if (k % 7 === 0) members.push({ ...members[0]! });
    const protocol = ['TCP', 'UDP', 'SCTP', 'ICMP'][rnd(4)]!;
    t.is(tableKey(protocol, members), reference(protocol, members), `case ${k} (${n} members, ${protocol})`);
  }
});

test('KeyCounts.reserve: counts and size as before through a reserve on an empty and a filled table', async (t) => {
  const { KeyCounts } = await import('../../src/plan/capacity.js');
  for (const before of [0, 500]) {
    const kc = new KeyCounts(), model = new Map<number, number>();
    const add = (k: number, sign: 1 | -1) => {
      kc.add(k, sign);
      const n = (model.get(k) ?? 0) + sign;
      if (n > 0) model.set(k, n);
      else model.delete(k);
    };
    for (let i = 0; i < before; i++) add(2 ** 49 + (i % 300) * 262144, 1);
    kc.reserve(5000);
    for (let i = 0; i < 6000; i++) add(i % 4000, 1);
    for (let i = 0; i < 3000; i++) add(i % 4000, -1);
    t.is(kc.size, model.size);
    for (const [k, n] of [...model]) {
      t.true(kc.has(k));
      for (let i = 0; i < n; i++) kc.add(k, -1);
    }
    t.is(kc.size, 0);
  }
});

test('a first fit with deferCount whose state fits by the bound returns it whole and counts later: then every fit is a counting tracker\'s', async (t) => {
  const { fitsBound } = await import('../../src/plan/capacity.js');
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 2), c = fe('ns/c', '10.96.0.3', 2);
  const a2 = { ...a, port: 81, backends: a.backends };
  const first: NodeState = { frontends: [a, a2, b, c] };
  const later: NodeState[] = [{ frontends: [a, b] }, { frontends: [a, fe('ns/b', '10.96.0.2', 3), c] }, { frontends: [] }, { frontends: [c, c] }, first];
  const caps = [UNLIMITED, { ...UNLIMITED, backends: 4 }, { ...UNLIMITED, slots: 5 }, { ...UNLIMITED, frontends: 2 }, { ...UNLIMITED, maglevSlots: 756 }];
  // the count made whole, in slices of one frontend, half of it in slices (the next fit makes the rest), or by the next fit
  for (const settle of ['whole', 'slices', 'half', 'none'] as const) {
    const tr = new CapacityTracker(), ref = new CapacityTracker();
    const r = tr.fit(first, UNLIMITED, undefined, () => undefined, { deferCount: true });
    t.is(r.state, first);
    t.deepEqual(r.dropped, []);
    t.true(tr.unsettled, 'the count is put off');
    ref.fit(first, UNLIMITED);
    if (settle === 'whole') {
      t.true(tr.settle());
      t.false(tr.unsettled);
    } else if (settle === 'slices') {
      let calls = 1;
      while (!tr.settle(1)) calls++;
      t.is(calls, first.frontends.length);
      t.false(tr.unsettled);
    } else if (settle === 'half') {
      t.false(tr.settle(2));
      t.true(tr.unsettled);
    }
    for (const s of later) {
      for (const cap of caps) {
        const want = ref.fit(s, cap);
        const got = tr.fit(s, cap);
        t.false(tr.unsettled);
        t.deepEqual(got.dropped, want.dropped);
        t.is(got.limit, want.limit);
        t.is(got.needed, want.needed);
        t.deepEqual(got.state.frontends, want.state.frontends);
      }
    }
  }
  // a2 right after a, with a's backends: one table and one set of backends by the bound too
  t.true(fitsBound(first, { ...UNLIMITED, maglevSlots: 756, backends: 6 }));
  t.false(fitsBound(first, { ...UNLIMITED, maglevSlots: 755 }));
  t.false(fitsBound({ frontends: [a, { ...a2, backends: a.backends.map((x) => ({ ...x, terminating: true })) }, b, c] }, { ...UNLIMITED, maglevSlots: 756 }),
    'the same backends, not the same members: a table of its own by the bound');
  // and apart from it (compile lists the ClusterIPs, then the NodePorts): the same Service's frontends are compared
  t.true(fitsBound({ frontends: [a, b, a2, c] }, { ...UNLIMITED, maglevSlots: 756, backends: 6 }));
  // a bound over the limit (another Service over a's backends shares its table: 4 tables by the bound, 3 counted) counts at once, exactly
  const x = { ...a, service: 'ns/x', address: '10.96.9.9', backends: a.backends };
  const apart: NodeState = { frontends: [a, b, x, c] };
  const cap = { ...UNLIMITED, maglevSlots: 756 };
  t.false(fitsBound(apart, cap));
  const tr = new CapacityTracker();
  t.deepEqual(tr.fit(apart, cap, undefined, undefined, { deferCount: true }).dropped, []);
  t.false(tr.unsettled);
  const tight = { ...UNLIMITED, maglevSlots: 755 };
  t.deepEqual(new CapacityTracker().fit(apart, tight, undefined, undefined, { deferCount: true }).dropped, fitToCapacity(apart, tight).dropped);
  // only a tracker's first fit, on a data plane that holds nothing, is put off
  const held = new CapacityTracker();
  held.fit(first, UNLIMITED, undefined, () => first, { deferCount: true });
  t.false(held.unsettled);
  held.fit(first, UNLIMITED, undefined, undefined, { deferCount: true });
  t.false(held.unsettled);
});

test('fitsBound says yes only where the exact usage fits: random states, every limit, terminating and shared backends', async (t) => {
  const { fitsBound, usage } = await import('../../src/plan/capacity.js');
  let seed = 23;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const keys = ['frontends', 'backends', 'slots', 'frontendIds', 'sourceRanges', 'maglevSlots'] as const;
  let yes = 0;
  for (let round = 0; round < 400; round++) {
    const frontends: NodeFrontend[] = [];
    for (let i = 0, n = 1 + rnd(10); i < n; i++) {
      const f = fe(`ns/s${rnd(6)}`, `10.96.${i}.1`, rnd(5));
      if (rnd(3) === 0) f.backends = f.backends.map((b, j) => ({ ...b, address: `10.244.0.${j + 1}` }));
      if (rnd(3) === 0) f.backends = f.backends.map((b, j) => ({ ...b, terminating: j % 2 === 0 }));
      if (rnd(4) === 0) f.sourceRanges = ['10.0.0.0/8'];
      frontends.push(f);
      if (rnd(4) === 0) frontends.push({ ...f, port: 81 });
    }
    const state: NodeState = { frontends };
    const u = usage(frontends);
    const limit = keys[rnd(keys.length)]!;
    const cap = { ...UNLIMITED, [limit]: rnd(u[limit] * 2 + 3) };
    const fits = fitsBound(state, cap);
    if (fits) yes++;
    if (fits) t.true(u[limit] <= cap[limit], `round ${round}: ${limit} ${u[limit]} over ${cap[limit]}`);
    // where nothing is shared the bound is the count
    if (u[limit] <= cap[limit] && (limit === 'frontends' || limit === 'slots' || limit === 'frontendIds' || limit === 'sourceRanges')) t.true(fits, `round ${round}: ${limit} exact`);
  }
  t.true(yes > 50 && yes < 400, `both answers seen (${yes} yes)`);
});

test('a first fit put off over a state listing a frontend twice: counted afresh at its end, as a counting tracker has it', (t) => {
  const a = fe('ns/a', '10.96.0.1', 2), b = fe('ns/b', '10.96.0.2', 3);
  const first: NodeState = { frontends: [a, a, b] };
  for (const most of [1, Infinity]) {
    const tr = new CapacityTracker(), ref = new CapacityTracker();
    t.deepEqual(tr.fit(first, UNLIMITED, undefined, undefined, { deferCount: true }).dropped, []);
    ref.fit(first, UNLIMITED);
    while (!tr.settle(most));
    for (const s of [{ frontends: [a, b] }, first, { frontends: [b] }]) {
      for (const cap of [UNLIMITED, { ...UNLIMITED, backends: 3 }, { ...UNLIMITED, frontends: 2 }]) {
        const want = ref.fit(s, cap), got = tr.fit(s, cap);
        t.deepEqual(got.dropped, want.dropped);
        t.is(got.needed, want.needed);
        t.deepEqual(got.state.frontends, want.state.frontends);
      }
    }
  }
});
