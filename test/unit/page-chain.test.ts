// A paged LIST's requests (src/source/page-chain.ts): page k+1 is asked for the moment page k comes,
// not when the loop takes page k; at most `depth` pages are asked for or held; a wrong guess drops
// what was asked for on it. Fake requests settled by hand: no timing.
import test from 'ava';
import { PageChain, type Flight } from '../../src/source/page-chain.js';

/** a page's answer as the fake server gives it: the token its head says */
interface Page { n: number; next?: string }

function fakes() {
  const asked: { token: string | undefined; cancelled: boolean; come(p: Page): void; fail(e: Error): void }[] = [];
  const ask = (token: string | undefined): Flight<Page> => {
    const { promise, resolve, reject } = Promise.withResolvers<Page>();
    const a = { token, cancelled: false, come: resolve, fail: reject };
    asked.push(a);
    return { sent: Promise.resolve(), received: promise, cancel: () => { a.cancelled = true; reject(new Error('cancelled')); } };
  };
  return { asked, ask };
}
const tick = () => new Promise<void>((r) => setImmediate(r));

test('page k+1 is asked for when page k comes, before the loop takes it, up to depth pages held', async (t) => {
  const { asked, ask } = fakes();
  const chain = new PageChain<Page>(ask, (p) => p.next, 3);
  t.deepEqual(asked.map((a) => a.token), [undefined]);
  asked[0]!.come({ n: 0, next: 't1' });
  await tick();
  t.deepEqual(asked.map((a) => a.token), [undefined, 't1'], 'page 1 asked for with nothing taken');
  asked[1]!.come({ n: 1, next: 't2' });
  await tick();
  asked[2]!.come({ n: 2, next: 't3' });
  await tick();
  t.deepEqual(asked.map((a) => a.token), [undefined, 't1', 't2'], 'three held: the fourth waits');
  t.is(chain.held, 3);
  const first = await chain.take();
  t.deepEqual(first, { page: { n: 0, next: 't1' }, guess: 't1', ready: true });
  t.deepEqual(asked.map((a) => a.token), [undefined, 't1', 't2', 't3'], 'a page taken makes room');
  t.deepEqual((await chain.take()).page.n, 1);
  t.deepEqual((await chain.take()).page.n, 2);
  const last = chain.take();
  asked[3]!.come({ n: 3 });
  t.deepEqual(await last, { page: { n: 3 }, guess: undefined, ready: false }, 'asked for before it came');
  t.is(asked.length, 4, 'no token: nothing more asked for');
  t.is(chain.held, 0);
});

test('a guess found wrong: the pages asked for on it are cancelled and the right one asked for', async (t) => {
  const { asked, ask } = fakes();
  const chain = new PageChain<Page>(ask, (p) => p.next, 4);
  asked[0]!.come({ n: 0, next: 'wrong' });
  await tick();
  asked[1]!.come({ n: 1, next: 'wrong2' });
  await tick();
  t.is((await chain.take()).guess, 'wrong');
  chain.restart('right');
  t.deepEqual(asked.map((a) => [a.token, a.cancelled]), [[undefined, false], ['wrong', true], ['wrong2', true], ['right', false]]);
  // an answer to a cancelled page asks for nothing
  t.is(chain.held, 1);
  asked[3]!.come({ n: 1 });
  t.deepEqual((await chain.take()).page, { n: 1 });
  chain.cancel();
  t.is(asked.length, 4);
});

test('a request that fails: take rejects with its error and nothing is asked for after it', async (t) => {
  const { asked, ask } = fakes();
  const chain = new PageChain<Page>(ask, (p) => p.next, 2);
  asked[0]!.fail(new Error('HTTP 410 Expired'));
  await tick();
  await t.throwsAsync(chain.take(), { message: 'HTTP 410 Expired' });
  t.is(asked.length, 1);
  t.throws(() => new PageChain<Page>(ask, (p) => p.next, 0), { message: /depth must be an integer >= 1/ });
});
