// A lab pod's servers: HTTP and UDP echo, each answering the pod's name, so a client can tell which
// backend it reached. Plain JavaScript so the host's node starts it in a network namespace without a
// loader. Prints one line "ready" on stdout once every socket listens; exits on SIGTERM.
//
//   node pod-server.mjs --name NAME [--bind ADDR]... [--http PORT] [--udp PORT]
//
// HTTP: GET / -> "NAME\n"; GET /client -> "NAME CLIENT_ADDR CLIENT_PORT\n" (the source address the
// server saw, for source-IP checks). UDP: any datagram -> "NAME"; the datagram "client" -> "NAME ADDR PORT".
import http from 'node:http';
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';

function parseArgs(argv) {
  const opts = { name: '', bind: [], http: 0, udp: 0 };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i], val = argv[i + 1];
    if (val === undefined) throw new Error(`pod-server: option ${key} needs a value`);
    i++;
    if (key === '--name') opts.name = val;
    else if (key === '--bind') opts.bind.push(val);
    else if (key === '--http' || key === '--udp') {
      const port = Number(val);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`pod-server: bad port ${val} for ${key}`);
      opts[key.slice(2)] = port;
    } else throw new Error(`pod-server: unknown option ${key}`);
  }
  if (!opts.name) throw new Error('pod-server: --name is required');
  if (!opts.http && !opts.udp) throw new Error('pod-server: give --http and/or --udp');
  if (opts.bind.length === 0) opts.bind.push('::');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const closers = [];

function listenHttp(addr) {
  return new Promise((resolve, reject) => {
    const server = http.createServer((req, res) => {
      const body = req.url === '/client'
        ? `${opts.name} ${req.socket.remoteAddress} ${req.socket.remotePort}\n`
        : `${opts.name}\n`;
      // keep-alive when the client asks for it (draining tests hold one connection across changes);
      // curl and the lab client open a new connection per request anyway
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    server.once('error', reject);
    // '::' without ipv6Only takes IPv4 too (dual-stack socket)
    server.listen({ host: addr, port: opts.http, ipv6Only: false }, () => resolve(server));
    closers.push(() => server.close());
  });
}

function listenUdp(addr) {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: isIPv6(addr) ? 'udp6' : 'udp4', ipv6Only: false });
    sock.on('message', (msg, rinfo) => {
      // 'big:...': an answer as long as the question (IP fragments both ways for one over the MTU)
      const text = msg.toString() === 'client' ? `${opts.name} ${rinfo.address} ${rinfo.port}`
        : msg.toString('latin1', 0, 4) === 'big:' ? `${opts.name} `.padEnd(msg.length, '.') : opts.name;
      sock.send(text, rinfo.port, rinfo.address);
    });
    sock.once('error', reject);
    sock.bind({ address: addr, port: opts.udp }, () => resolve(sock));
    closers.push(() => sock.close());
  });
}

const pending = [];
for (const addr of opts.bind) {
  if (opts.http) pending.push(listenHttp(addr));
  if (opts.udp) pending.push(listenUdp(addr));
}
Promise.all(pending).then(
  () => process.stdout.write('ready\n'),
  (err) => { process.stderr.write(`pod-server ${opts.name}: ${err.message}\n`); process.exit(1); },
);
process.on('SIGTERM', () => { for (const c of closers) c(); process.exit(0); });
