// A lab client: N requests, each on a new socket (so socket LB and Maglev see N distinct sockets),
// each bounded by a timeout. Prints one JSON line: { results: [ { ok, reply?, peer?, from?, error? } ] }
// where peer is what getpeername() returned (net.Socket.remoteAddress, dgram remoteAddress()) and
// from is the source of the UDP reply as recvmsg() reported it.
//
//   node client.mjs --proto http|udp --host ADDR --port PORT [--count N] [--timeout-ms T]
//                   [--udp-connect] [--payload TEXT] [--path /PATH] [--bind ADDR] [--sport P]
//
// --sport P: request i leaves from port P + i (a 5-tuple no earlier exchange used: conntrack holds a
// reused one's backend, as the kernel's does for kube-proxy)
import net from 'node:net';
import dgram from 'node:dgram';

function parseArgs(argv) {
  const o = { proto: '', host: '', port: 0, count: 1, timeoutMs: 2000, udpConnect: false, payload: 'hello', path: '/', bind: '', sport: 0 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    if (key === '--udp-connect') { o.udpConnect = true; continue; }
    const val = argv[++i];
    if (val === undefined) throw new Error(`client: option ${key} needs a value`);
    if (key === '--proto') o.proto = val;
    else if (key === '--host') o.host = val;
    else if (key === '--port') o.port = Number(val);
    else if (key === '--count') o.count = Number(val);
    else if (key === '--timeout-ms') o.timeoutMs = Number(val);
    else if (key === '--payload') o.payload = val;
    else if (key === '--path') o.path = val;
    else if (key === '--bind') o.bind = val;
    else if (key === '--sport') o.sport = Number(val);
    else throw new Error(`client: unknown option ${key}`);
  }
  if (o.proto !== 'http' && o.proto !== 'udp') throw new Error(`client: --proto must be http or udp, not ${JSON.stringify(o.proto)}`);
  if (net.isIP(o.host) === 0) throw new Error(`client: --host must be an IP address, not ${JSON.stringify(o.host)}`);
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new Error(`client: bad --port`);
  if (!Number.isInteger(o.count) || o.count < 1 || o.count > 10000) throw new Error(`client: --count must be 1..10000`);
  if (!Number.isInteger(o.timeoutMs) || o.timeoutMs < 1 || o.timeoutMs > 60000) throw new Error(`client: --timeout-ms must be 1..60000`);
  if (!Number.isInteger(o.sport) || o.sport < 0 || o.sport + o.count > 65536) throw new Error(`client: --sport must leave room for --count ports below 65536`);
  return o;
}

const fmt = (addr, port) => (addr && addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);

function httpOnce(o, i) {
  return new Promise((resolve) => {
    let peer, data = '', done = false;
    const sock = net.connect({ host: o.host, port: o.port, ...(o.bind && { localAddress: o.bind }), ...(o.sport && { localPort: o.sport + i }) });
    const finish = (r) => { if (done) return; done = true; clearTimeout(timer); sock.destroy(); resolve(r); };
    const timer = setTimeout(() => finish({ ok: false, error: 'ETIMEDOUT' }), o.timeoutMs);
    sock.on('connect', () => {
      peer = fmt(sock.remoteAddress, sock.remotePort);
      sock.write(`GET ${o.path} HTTP/1.0\r\nHost: lab\r\n\r\n`);
    });
    sock.on('data', (d) => { data += d.toString(); });
    sock.on('end', () => {
      const body = data.split('\r\n\r\n').slice(1).join('\r\n\r\n').trim();
      finish(data.startsWith('HTTP/1.1 200') ? { ok: true, reply: body, peer } : { ok: false, error: `bad reply ${JSON.stringify(data.slice(0, 40))}`, peer });
    });
    sock.on('error', (e) => finish({ ok: false, error: e.code ?? e.message, peer }));
  });
}

function udpOnce(o, i) {
  return new Promise((resolve) => {
    let peer, done = false;
    const sock = dgram.createSocket({ type: net.isIPv6(o.host) ? 'udp6' : 'udp4' });
    const finish = (r) => { if (done) return; done = true; clearTimeout(timer); try { sock.close(); } catch { /* already closed */ } resolve(r); };
    const timer = setTimeout(() => finish({ ok: false, error: 'ETIMEDOUT', peer }), o.timeoutMs);
    sock.on('message', (msg, rinfo) => finish({ ok: true, reply: msg.toString(), from: fmt(rinfo.address, rinfo.port), peer }));
    sock.on('error', (e) => finish({ ok: false, error: e.code ?? e.message, peer }));
    const sent = (err) => { if (err) finish({ ok: false, error: err.code ?? err.message, peer }); };
    const go = () => { if (o.udpConnect) {
      sock.connect(o.port, o.host, (err) => {
        if (err) return finish({ ok: false, error: err.code ?? err.message });
        const ra = sock.remoteAddress();
        peer = fmt(ra.address, ra.port);
        sock.send(o.payload, sent);
      });
    } else {
      sock.send(o.payload, o.port, o.host, sent);
    } };
    // a bound source (the socket hooks see it: loadBalancerSourceRanges), or a chosen source port
    if (o.bind || o.sport) sock.bind(o.sport ? o.sport + i : 0, o.bind || undefined, go);
    else go();
  });
}

const o = parseArgs(process.argv.slice(2));
const results = [];
for (let i = 0; i < o.count; i++) results.push(await (o.proto === 'http' ? httpOnce(o, i) : udpOnce(o, i)));
process.stdout.write(JSON.stringify({ results }) + '\n');
