// A bounded load for the reliability scenarios: sequential requests (HTTP with a new connection each,
// or a DNS-like UDP exchange), each with a timeout, until --duration-ms has passed, --max requests
// were sent, or SIGTERM arrives. Prints one JSON line: sent, failed, the longest gap without a
// successful answer, answers by pod (and when the last request each pod answered was sent), and the
// first failures with their time and error, and the first requests answered only after 900 ms.
//
//   node load.mjs --proto http|udp --host ADDR --port PORT [--duration-ms D] [--max N]
//                 [--timeout-ms T] [--interval-ms I] [--keep-alive true]   (http: one connection for all)
import net from 'node:net';
import dgram from 'node:dgram';

const o = { proto: 'http', host: '', port: 0, durationMs: 10_000, max: 100_000, timeoutMs: 1000, intervalMs: 0, keepAlive: false };
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (v === undefined) throw new Error(`load: ${k} needs a value`);
  if (k === '--proto') o.proto = v;
  else if (k === '--host') o.host = v;
  else if (k === '--port') o.port = Number(v);
  else if (k === '--duration-ms') o.durationMs = Number(v);
  else if (k === '--max') o.max = Number(v);
  else if (k === '--timeout-ms') o.timeoutMs = Number(v);
  else if (k === '--interval-ms') o.intervalMs = Number(v);
  else if (k === '--keep-alive') o.keepAlive = v === 'true';
  else throw new Error(`load: unknown option ${k}`);
}
if (o.proto !== 'http' && o.proto !== 'udp') throw new Error('load: --proto must be http or udp');
if (net.isIP(o.host) === 0 || !(o.port > 0 && o.port < 65536)) throw new Error('load: --host ADDR --port PORT');
if (!(o.durationMs > 0 && o.durationMs <= 600_000) || !(o.max > 0 && o.max <= 1_000_000)) throw new Error('load: duration 1..600000 ms, max 1..1e6');

// --keep-alive true: every request on one HTTP/1.1 connection (an established flow); a new one only
// after that one failed, counted in "connections"
let kaSock = null, kaBuf = '', kaWaiter = null, connections = 0;
function keepAliveRequest() {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r) => { if (done) return; done = true; clearTimeout(timer); kaWaiter = null; if (!r.ok && kaSock) { kaSock.destroy(); kaSock = null; } resolve(r); };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), o.timeoutMs);
    if (!kaSock) {
      connections++;
      kaBuf = '';
      const s = net.connect({ host: o.host, port: o.port });
      kaSock = s;
      s.on('data', (d) => { kaBuf += d; kaWaiter?.(); });
      s.on('error', (e) => { if (kaSock === s) { kaSock = null; kaWaiter?.(e); } });
      s.on('close', () => { if (kaSock === s) { kaSock = null; kaWaiter?.(new Error('closed')); } });
    }
    kaWaiter = (err) => {
      if (err) return finish({ ok: false, error: err.code ?? err.message });
      const m = /^HTTP\/1\.[01] (\d+)[^]*?\r\nContent-Length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(kaBuf);
      if (!m) return;
      const bodyStart = m[0].length, len = Number(m[2]);
      if (kaBuf.length < bodyStart + len) return;
      const body = kaBuf.slice(bodyStart, bodyStart + len);
      kaBuf = kaBuf.slice(bodyStart + len);
      finish(m[1] === '200' ? { ok: true, reply: body.trim() } : { ok: false, error: `status ${m[1]}` });
    };
    kaSock.write(`GET / HTTP/1.1\r\nHost: ${o.host}\r\nConnection: keep-alive\r\n\r\n`);
  });
}

function http() {
  if (o.keepAlive) return keepAliveRequest();
  return new Promise((resolve) => {
    let data = '', done = false;
    const sock = net.connect({ host: o.host, port: o.port });
    const finish = (r) => { if (done) return; done = true; clearTimeout(timer); sock.destroy(); resolve(r); };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), o.timeoutMs);
    sock.on('connect', () => sock.write(`GET / HTTP/1.1\r\nHost: ${o.host}\r\nConnection: close\r\n\r\n`));
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => {
      const m = /^HTTP\/1\.[01] (\d+)[^]*?\r\n\r\n([^]*)$/.exec(data);
      finish(m && m[1] === '200' ? { ok: true, reply: m[2].trim() } : { ok: false, error: `bad answer ${JSON.stringify(data.slice(0, 60))}` });
    });
    sock.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
  });
}

function udp() {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(o.host) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (r) => { if (done) return; done = true; clearTimeout(timer); sock.close(); resolve(r); };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), o.timeoutMs);
    sock.on('message', (msg) => finish({ ok: true, reply: msg.toString().trim() }));
    sock.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
    sock.send('query', o.port, o.host);
  });
}

let stop = false;
process.on('SIGTERM', () => { stop = true; });
const start = Date.now();
let sent = 0, failed = 0, lastOk = start, longestGapMs = 0;
const answers = {};
/** per pod, the send time (epoch ms) of the last request it answered: "no removed backend answered after X" */
const lastSentAt = {};
const failures = [];
/** the first 20 requests answered only after more than 900 ms (a SYN sent again, 1 s later): when sent, how long */
const slow = [];
while (!stop && sent < o.max && Date.now() - start < o.durationMs) {
  const at = Date.now();
  const r = await (o.proto === 'http' ? http() : udp());
  sent++;
  if (r.ok) {
    const took = Date.now() - at;
    if (took > 900 && slow.length < 20) slow.push({ at, ms: took });
    const pod = r.reply.split(' ')[0];
    answers[pod] = (answers[pod] ?? 0) + 1;
    lastSentAt[pod] = at;
    longestGapMs = Math.max(longestGapMs, Date.now() - lastOk);
    lastOk = Date.now();
  } else {
    failed++;
    if (failures.length < 20) failures.push({ atMs: at - start, at, error: r.error });
  }
  if (o.intervalMs) await new Promise((res) => setTimeout(res, o.intervalMs));
}
longestGapMs = Math.max(longestGapMs, Date.now() - lastOk);
kaSock?.destroy();
process.stdout.write(JSON.stringify({ sent, failed, longestGapMs, durationMs: Date.now() - start, answers, lastSentAt, failures, slow, ...(o.keepAlive && { connections }) }) + '\n');
