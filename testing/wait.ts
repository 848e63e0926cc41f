// Waiting on a condition in tests, never on the clock: `until` polls `cond` every `stepMs` and
// returns as soon as it holds, or false after `timeoutMs`, a bound for a machine under load (the
// test then asserts the condition and fails with what it saw). A fixed sleep before a check fails
// whenever a child process takes longer than the sleep to start, as CI's loaded runs showed.
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** until, for a step that must come: throws naming what it waited for, so the test fails there */
export async function waitFor(cond: () => boolean | Promise<boolean>, what = 'condition', timeoutMs = 20_000, stepMs = 10): Promise<void> {
  if (!(await until(cond, timeoutMs, stepMs))) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
