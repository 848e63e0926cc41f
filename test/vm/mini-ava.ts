// A runner for ava test files inside the test VM, where ava itself (a worker process per file, tsx
// transforming every module with esbuild) spends minutes under software emulation. scripts/test-vm.sh
// bundles a test file on the host with `ava` aliased to this module, so the VM runs the very same
// test code as plain JavaScript. Semantics follow ava 7 where the datapath tests rely on them: serial
// tests first, then the others, one at a time; failing assertions throw; a test without assertions
// fails; a failing before hook fails every test; after.always hooks always run. Anything of ava's API
// not implemented here throws, so a test using it fails loudly instead of passing unchecked.
import { deepStrictEqual, notDeepStrictEqual } from 'node:assert/strict';
import { inspect } from 'node:util';

type Fn = (t: Assertions) => void | Promise<void>;
interface Entry { title: string; fn: Fn; serial: boolean; skip: boolean }

class AssertionFailure extends Error {}

function show(v: unknown): string {
  return inspect(v, { depth: 6, maxStringLength: 400, breakLength: 120 });
}

export interface Assertions {
  pass(message?: string): void;
  fail(message?: string): never;
  is<T>(actual: T, expected: T, message?: string): void;
  not<T>(actual: T, expected: T, message?: string): void;
  true(actual: unknown, message?: string): void;
  false(actual: unknown, message?: string): void;
  truthy(actual: unknown, message?: string): void;
  falsy(actual: unknown, message?: string): void;
  deepEqual<T>(actual: T, expected: T, message?: string): void;
  notDeepEqual<T>(actual: T, expected: T, message?: string): void;
  like<T>(actual: T, selector: unknown, message?: string): void;
  throws(fn: () => unknown, expectations?: { message?: string | RegExp; code?: string | number; instanceOf?: new (...a: never[]) => unknown }, message?: string): Error;
  notThrows(fn: () => unknown, message?: string): void;
  log(...values: unknown[]): void;
  teardown(fn: () => void | Promise<void>): void;
}

class Context implements Assertions {
  assertions = 0;
  readonly teardowns: Array<() => void | Promise<void>> = [];
  readonly logs: string[] = [];

  private check(ok: boolean, what: string, message: string | undefined): void {
    this.assertions++;
    if (!ok) throw new AssertionFailure(message ? `${message}: ${what}` : what);
  }
  pass(): void { this.assertions++; }
  fail(message?: string): never {
    this.assertions++;
    throw new AssertionFailure(message ?? 'Test failed via t.fail()');
  }
  is<T>(a: T, e: T, m?: string): void { this.check(Object.is(a, e), `t.is: ${show(a)} is not ${show(e)}`, m); }
  not<T>(a: T, e: T, m?: string): void { this.check(!Object.is(a, e), `t.not: both are ${show(a)}`, m); }
  true(a: unknown, m?: string): void { this.check(a === true, `t.true: got ${show(a)}`, m); }
  false(a: unknown, m?: string): void { this.check(a === false, `t.false: got ${show(a)}`, m); }
  truthy(a: unknown, m?: string): void { this.check(Boolean(a), `t.truthy: got ${show(a)}`, m); }
  falsy(a: unknown, m?: string): void { this.check(!a, `t.falsy: got ${show(a)}`, m); }
  deepEqual<T>(a: T, e: T, m?: string): void {
    try {
      deepStrictEqual(a, e);
      this.check(true, '', m);
    } catch (err) {
      this.check(false, `t.deepEqual:\n${(err as Error).message}`, m);
    }
  }
  notDeepEqual<T>(a: T, e: T, m?: string): void {
    try {
      notDeepStrictEqual(a, e);
      this.check(true, '', m);
    } catch {
      this.check(false, `t.notDeepEqual: both are ${show(a)}`, m);
    }
  }
  /** ava's t.like: actual's properties that selector names (plain objects selected recursively),
   * deep-equal to selector */
  like<T>(a: T, selector: unknown, m?: string): void {
    const isPlain = (v: unknown): v is Record<string, unknown> =>
      typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
    const select = (v: unknown, sel: unknown): unknown => {
      if (!isPlain(sel) || typeof v !== 'object' || v === null) return v;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(sel)) out[k] = select((v as Record<string, unknown>)[k], sel[k]);
      return out;
    };
    try {
      deepStrictEqual(select(a, selector), selector);
      this.check(true, '', m);
    } catch (err) {
      this.check(false, `t.like:\n${(err as Error).message}`, m);
    }
  }
  throws(fn: () => unknown, exp?: { message?: string | RegExp; code?: string | number; instanceOf?: new (...a: never[]) => unknown }, m?: string): Error {
    let thrown: unknown;
    let threw = false;
    try {
      fn();
    } catch (e) {
      threw = true;
      thrown = e;
    }
    this.check(threw, 't.throws: the function did not throw', m);
    this.assertions--; // one assertion in all, as in ava
    const err = thrown as Error & { code?: string | number };
    if (exp?.message !== undefined) {
      const ok = typeof exp.message === 'string' ? err?.message === exp.message : exp.message.test(String(err?.message));
      this.check(ok, `t.throws: message ${show(err?.message)} does not match ${show(exp.message)}`, m);
      this.assertions--;
    }
    if (exp?.code !== undefined) {
      this.check(err?.code === exp.code, `t.throws: code ${show(err?.code)} is not ${show(exp.code)}`, m);
      this.assertions--;
    }
    if (exp?.instanceOf !== undefined) {
      this.check(err instanceof exp.instanceOf, `t.throws: ${show(err)} is not an instance of ${exp.instanceOf.name}`, m);
      this.assertions--;
    }
    this.assertions++;
    return err;
  }
  notThrows(fn: () => unknown, m?: string): void {
    try {
      fn();
      this.check(true, '', m);
    } catch (e) {
      this.check(false, `t.notThrows: threw ${show(e)}`, m);
    }
  }
  log(...values: unknown[]): void { this.logs.push(values.map((v) => (typeof v === 'string' ? v : show(v))).join(' ')); }
  teardown(fn: () => void | Promise<void>): void { this.teardowns.push(fn); }
}

/** Unknown members of t throw, naming themselves, instead of reading as undefined. */
function strict(c: Context): Assertions {
  return new Proxy(c, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && !(prop in target)) throw new Error(`mini-ava (test/vm/mini-ava.ts): t.${prop} is not supported; add it there`);
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const tests: Entry[] = [];
const before: Fn[] = [];
const after: Fn[] = [];
const afterAlways: Fn[] = [];
const beforeEach: Fn[] = [];
const afterEach: Fn[] = [];

function register(title: string, fn: Fn, serial: boolean, skip = false): void {
  if (typeof title !== 'string' || typeof fn !== 'function') throw new Error(`mini-ava: test(title, fn) expected, got ${show(title)}`);
  tests.push({ title, fn, serial, skip });
}

type TestFn = ((title: string, fn: Fn) => void) & Record<string, unknown>;
const hooks = (list: Fn[]) => (fn: Fn) => { list.push(fn); };
const test = ((title: string, fn: Fn) => register(title, fn, false)) as TestFn;
test.serial = Object.assign((title: string, fn: Fn) => register(title, fn, true), {
  skip: (title: string, fn: Fn) => register(title, fn, true, true),
});
test.skip = (title: string, fn: Fn) => register(title, fn, false, true);
test.before = hooks(before);
test.after = Object.assign(hooks(after), { always: hooks(afterAlways) });
test.beforeEach = hooks(beforeEach);
test.afterEach = hooks(afterEach);

const supported = new Set(Object.keys(test));
const api = new Proxy(test, {
  get(target, prop, receiver) {
    if (typeof prop === 'string' && !supported.has(prop) && !(prop in Function.prototype)) {
      throw new Error(`mini-ava (test/vm/mini-ava.ts): test.${prop} is not supported; add it there`);
    }
    return Reflect.get(target, prop, receiver) as unknown;
  },
});
export default api;

function indent(s: string): string {
  return s.split('\n').map((l) => `    ${l}`).join('\n');
}

async function runHook(fn: Fn): Promise<void> {
  const c = new Context();
  await fn(strict(c));
  for (const td of c.teardowns.reverse()) await td();
}

async function main(): Promise<void> {
  let pass = 0, fail = 0, skipped = 0, n = 0;
  let beforeError: unknown;
  try {
    for (const h of before) await runHook(h);
  } catch (e) {
    beforeError = e;
    fail++;
    console.log(`not ok - before hook\n${indent((e as Error)?.stack ?? String(e))}`);
  }
  // ava runs serial tests before the concurrent ones
  const order = [...tests.filter((t) => t.serial), ...tests.filter((t) => !t.serial)];
  for (const e of order) {
    n++;
    if (e.skip) {
      skipped++;
      console.log(`ok ${n} - ${e.title} # SKIP`);
      continue;
    }
    if (beforeError) {
      fail++;
      console.log(`not ok ${n} - ${e.title} # the before hook failed`);
      continue;
    }
    const c = new Context();
    let error: unknown;
    try {
      for (const h of beforeEach) await runHook(h);
      await e.fn(strict(c));
      if (c.assertions === 0) throw new AssertionFailure('Test finished without running any assertions');
    } catch (err) {
      error = err;
    }
    try {
      for (const td of c.teardowns.reverse()) await td();
      for (const h of afterEach) await runHook(h);
    } catch (err) {
      error ??= err;
    }
    for (const l of c.logs) console.log(`  # ${l}`);
    if (error === undefined) {
      pass++;
      console.log(`ok ${n} - ${e.title}`);
    } else {
      fail++;
      const msg = error instanceof AssertionFailure ? error.message : ((error as Error)?.stack ?? String(error));
      console.log(`not ok ${n} - ${e.title}\n${indent(msg)}`);
    }
  }
  if (!beforeError) {
    for (const h of after) {
      try { await runHook(h); } catch (e) { fail++; console.log(`not ok - after hook\n${indent((e as Error)?.stack ?? String(e))}`); }
    }
  }
  for (const h of afterAlways) {
    try { await runHook(h); } catch (e) { fail++; console.log(`not ok - after.always hook\n${indent((e as Error)?.stack ?? String(e))}`); }
  }
  console.log(`1..${n}\n# tests ${n}\n# pass ${pass}\n# skip ${skipped}\n# fail ${fail}`);
  process.exitCode = fail === 0 && n > 0 ? 0 : 1;
}

// the bundled test file registers its tests while its module body runs; start once that is done
setImmediate(() => {
  main().catch((e: unknown) => {
    console.log(`not ok - mini-ava crashed\n${indent((e as Error)?.stack ?? String(e))}`);
    process.exitCode = 1;
  });
});
