// The only module that loads kbp_netlink.node (native/src/netlink.cc): netlink sockets that send a
// batch of requests in one system call, on a worker thread, and hand back every answer (requests are
// numbered here; the answers are sorted back to their request by sequence number), and multicast
// subscriptions read on the event loop.
import { createRequire } from 'node:module';
import { findAddon } from '../../util/addon-path.js';
import { KbpError } from '../../util/errors.js';
import { decodeError, decodeMessages, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, type Message } from './netlink.js';

interface NetlinkAddon {
  open(protocol: number): object;
  request(sock: object, messages: Buffer, terminals: number): Promise<Buffer>;
  close(sock: object): void;
  subscribe(protocol: number, groups: number, onData: (data: Buffer | null, errno: number) => void, rcvbuf?: number): object;
  unsubscribe(sub: object): void;
}

let addon: NetlinkAddon | undefined;
let addonError: string | undefined;

function loadAddon(): NetlinkAddon {
  if (addon) return addon;
  if (!addonError) {
    const { file, found } = findAddon('kbp_netlink.node', 'KBP_NETLINK_ADDON', import.meta.url);
    if (!found) addonError = `${file} not found (npm run build:native builds it)`;
    else {
      try {
        addon = createRequire(import.meta.url)(found) as NetlinkAddon;
        return addon;
      } catch (e) {
        addonError = `${found} could not be loaded: ${(e as Error).message}`;
      }
    }
  }
  throw new KbpError('KBP_ERR_KERNEL_FEATURE', `netlink addon: ${addonError}`);
}

/** Why the netlink addon cannot be used here (undefined when it loads). */
export function netlinkAddonMissing(): string | undefined {
  try {
    loadAddon();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** One request of a batch: its message type, flags beyond REQUEST (ACK or DUMP), and payload. */
export interface NlRequest {
  type: number;
  dump?: boolean;
  /** more NLM_F_* flags (CREATE, EXCL, ...) */
  flags?: number;
  payload: Buffer;
}

/** What the kernel answered one request: its data messages, and the errno (0 = success). */
export interface NlReply {
  errno: number;
  message?: string;
  data: Message[];
}

const align4 = (n: number) => (n + 3) & ~3;

/** Messages per system call: a batch's answers must fit the socket's receive buffer. */
const CHUNK = 256;

export class NetlinkSocket {
  readonly #a: NetlinkAddon;
  readonly #sock: object;
  #seq = Math.floor(Math.random() * 0x7fffffff);
  #queue: Promise<unknown> = Promise.resolve();

  constructor(protocol: number) {
    this.#a = loadAddon();
    try {
      this.#sock = this.#a.open(protocol);
    } catch (e) {
      throw new KbpError('KBP_ERR_KERNEL_FEATURE', `netlink protocol ${protocol}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Sends the requests in order and returns one reply per request. Never throws on errno. Writes go
   * in chunks of CHUNK per system call; a dump goes alone, since the kernel runs one dump per socket
   * at a time (a second one in the same batch gets EBUSY).
   */
  request(reqs: NlRequest[]): Promise<NlReply[]> {
    const go = async () => {
      const out: NlReply[] = [];
      let i = 0;
      while (i < reqs.length) {
        let j = i + 1;
        if (!reqs[i]!.dump) while (j < reqs.length && j - i < CHUNK && !reqs[j]!.dump) j++;
        out.push(...await this.#chunk(reqs.slice(i, j)));
        i = j;
      }
      return out;
    };
    const p = this.#queue.then(go, go);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  async #chunk(reqs: NlRequest[]): Promise<NlReply[]> {
    const first = this.#seq;
    // every message of the chunk written into one buffer (encodeMessage's layout; a copy per
    // message and one more for the whole chunk were a third of a 10,000-Service sync's encoding)
    let total = 0;
    for (const r of reqs) total += align4(16 + r.payload.length);
    const out = Buffer.alloc(total);
    let off = 0;
    reqs.forEach((r, i) => {
      const len = 16 + r.payload.length;
      out.writeUInt32LE(len, off);
      out.writeUInt16LE(r.type, off + 4);
      out.writeUInt16LE(NLM_F_REQUEST | (r.dump ? NLM_F_DUMP : NLM_F_ACK) | (r.flags ?? 0), off + 6);
      out.writeUInt32LE((first + i) >>> 0, off + 8);
      r.payload.copy(out, off + 16);
      off += align4(len);
    });
    this.#seq = (this.#seq + reqs.length) % 0x7fffffff;
    const raw = await this.#a.request(this.#sock, out, reqs.length);
    const replies: NlReply[] = reqs.map(() => ({ errno: 0, data: [] }));
    for (const m of decodeMessages(raw)) {
      const r = replies[(m.seq - first + 0x7fffffff) % 0x7fffffff];
      if (!r) continue; // an answer to an earlier, abandoned request
      if (m.type === NLMSG_ERROR) Object.assign(r, decodeError(m));
      else if (m.type !== NLMSG_DONE) r.data.push(m);
    }
    return replies;
  }

  close(): void {
    this.#a.close(this.#sock);
  }
}

const ENOBUFS = 105;

/**
 * A socket subscribed to netlink multicast groups, read on the event loop (a libuv poll handle: no
 * thread, no process). `onMessages` gets every message that arrived, decoded; `onLoss` says that
 * events were lost (the kernel dropped them when the receive buffer was full: ENOBUFS), so whatever
 * they described must be found another way (a full scan); `onError` that the socket failed and no
 * more messages will come (close() it and subscribe again). No callback runs after close().
 */
export class NetlinkSubscription {
  readonly #a: NetlinkAddon;
  #sub: object | undefined;

  constructor(protocol: number, groups: number, handlers: { onMessages: (m: Message[]) => void; onLoss: () => void; onError: (e: Error) => void }, rcvbuf?: number) {
    this.#a = loadAddon();
    const onData = (data: Buffer | null, errno: number): void => {
      if (!this.#sub) return;
      let messages: Message[] = [];
      let bad: Error | undefined;
      if (data) {
        try {
          messages = decodeMessages(data);
        } catch (e) {
          bad = e as Error;
        }
      }
      // messages first: a loss or an error after them does not undo what they said
      if (messages.length) handlers.onMessages(messages);
      if (errno === -ENOBUFS || bad) handlers.onLoss();
      else if (errno !== 0) handlers.onError(new KbpError('KBP_ERR_DATAPLANE', `netlink subscription (protocol ${protocol}, groups 0x${groups.toString(16)}): errno ${-errno}`));
    };
    try {
      this.#sub = this.#a.subscribe(protocol, groups, onData, rcvbuf);
    } catch (e) {
      throw new KbpError('KBP_ERR_KERNEL_FEATURE', `netlink subscription (protocol ${protocol}, groups 0x${groups.toString(16)}): ${(e as Error).message}`, { cause: e });
    }
  }

  close(): void {
    const s = this.#sub;
    this.#sub = undefined;
    if (s) this.#a.unsubscribe(s);
  }
}
