// A bounded load for the reliability scenarios: sequential requests (HTTP with a new connection each,
// or a DNS-like UDP exchange), each with a timeout, until --duration-ms has passed, --max requests
// were sent, or SIGTERM arrives. Prints one JSON line: sent, failed, the longest gap without a
// successful answer, answers by pod, and the first failures with their time and error.
//
//   node load.mjs --proto http|udp --host ADDR --port PORT [--duration-ms D] [--max N]
//                 [--timeout-ms T] [--interval-ms I]
import net from 'node:net';
import dgram from 'node:dgram';

const o = { proto: 'http', host: '', port: 0, durationMs: 10_000, max: 100_000, timeoutMs: 1000, intervalMs: 0 };
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
  else throw new Error(`load: unknown option ${k}`);
}
if (o.proto !== 'http' && o.proto !== 'udp') throw new Error('load: --proto must be http or udp');
if (net.isIP(o.host) === 0 || !(o.port > 0 && o.port < 65536)) throw new Error('load: --host ADDR --port PORT');
if (!(o.durationMs > 0 && o.durationMs <= 600_000) || !(o.max > 0 && o.max <= 1_000_000)) throw new Error('load: duration 1..600000 ms, max 1..1e6');

function http() {
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
const failures = [];
while (!stop && sent < o.max && Date.now() - start < o.durationMs) {
  const at = Date.now();
  const r = await (o.proto === 'http' ? http() : udp());
  sent++;
  if (r.ok) {
    const pod = r.reply.split(' ')[0];
    answers[pod] = (answers[pod] ?? 0) + 1;
    longestGapMs = Math.max(longestGapMs, Date.now() - lastOk);
    lastOk = Date.now();
  } else {
    failed++;
    if (failures.length < 20) failures.push({ atMs: at - start, error: r.error });
  }
  if (o.intervalMs) await new Promise((res) => setTimeout(res, o.intervalMs));
}
longestGapMs = Math.max(longestGapMs, Date.now() - lastOk);
process.stdout.write(JSON.stringify({ sent, failed, longestGapMs, durationMs: Date.now() - start, answers, failures }) + '\n');
