// A lab client that keeps one connected UDP socket to host:port and sends a datagram every
// --interval-ms until --duration-ms, as a DNS client or a game client would. When the socket reports
// an error (ECONNABORTED when the data plane closes it, or EDESTADDRREQ when a send comes first;
// ECONNREFUSED...), it records the error and
// connects a new socket, as such clients do. Prints each event as it happens, one JSON line
// { t, kind: 'reply', reply, from, peer } | { t, kind: 'error', error } (t: ms since start, from: the
// reply's source as recvmsg() reports it, peer: getpeername()), and at the end (or on SIGTERM) one
// line { events: [...] } with all of them.
//
//   node udp-stream.mjs --host ADDR --port PORT [--interval-ms N] [--duration-ms N]
import net from 'node:net';
import dgram from 'node:dgram';

const o = { host: '', port: 0, intervalMs: 100, durationMs: 10000 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i], v = argv[i + 1];
  if (v === undefined) throw new Error(`udp-stream: option ${k} needs a value`);
  if (k === '--host') o.host = v;
  else if (k === '--port') o.port = Number(v);
  else if (k === '--interval-ms') o.intervalMs = Number(v);
  else if (k === '--duration-ms') o.durationMs = Number(v);
  else throw new Error(`udp-stream: unknown option ${k}`);
}
if (net.isIP(o.host) === 0) throw new Error('udp-stream: --host must be an IP address');
if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new Error('udp-stream: bad --port');
if (!(o.intervalMs >= 10 && o.intervalMs <= 10000)) throw new Error('udp-stream: --interval-ms must be 10..10000');
if (!(o.durationMs >= 100 && o.durationMs <= 120000)) throw new Error('udp-stream: --duration-ms must be 100..120000');

const start = Date.now();
const events = [];
const record = (e) => { events.push(e); process.stdout.write(JSON.stringify(e) + '\n'); };
const fmt = (a, p) => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
let sock, peer, connecting = false, done = false;

function open() {
  connecting = true;
  const s = dgram.createSocket({ type: net.isIPv6(o.host) ? 'udp6' : 'udp4' });
  sock = s;
  s.on('message', (msg, rinfo) => {
    record({ t: Date.now() - start, kind: 'reply', reply: msg.toString(), from: fmt(rinfo.address, rinfo.port), peer });
  });
  s.on('error', (e) => {
    if (s !== sock) return;
    record({ t: Date.now() - start, kind: 'error', error: e.code ?? e.message });
    try { s.close(); } catch { /* closed */ }
    sock = undefined;
  });
  s.connect(o.port, o.host, (err) => {
    connecting = false;
    if (err) {
      record({ t: Date.now() - start, kind: 'error', error: err.code ?? err.message });
      try { s.close(); } catch { /* closed */ }
      if (s === sock) sock = undefined;
      return;
    }
    const ra = s.remoteAddress();
    peer = fmt(ra.address, ra.port);
  });
}

function tick() {
  if (done) return;
  if (!sock && !connecting) open();
  else if (sock && !connecting) {
    const s = sock;
    s.send('stream', (err) => {
      if (err && s === sock) {
        record({ t: Date.now() - start, kind: 'error', error: err.code ?? err.message });
        try { s.close(); } catch { /* closed */ }
        sock = undefined;
      }
    });
  }
}

function finish() {
  if (done) return;
  done = true;
  clearInterval(timer);
  try { sock?.close(); } catch { /* closed */ }
  process.stdout.write(JSON.stringify({ events }) + '\n');
  process.exit(0);
}

const timer = setInterval(tick, o.intervalMs);
setTimeout(finish, o.durationMs);
process.on('SIGTERM', finish);
console.error('ready');
