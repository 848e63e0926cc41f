#!/usr/bin/env python3
# Large TCP transfers for test/lab/bigtcp.test.ts, and the BIG TCP device settings (iproute2 6.1 has
# no gso_ipv4_max_size, so they are set by one RTM_NEWLINK here).
#   bigtcp.py gso DEV SIZE          gso/gro_max_size and gso/gro_ipv4_max_size of DEV (this netns);
#                                   prints the four values read back, JSON
#   bigtcp.py serve PORT            one connection at a time: "up N\n" then N bytes -> sha256 hex;
#                                   "down N SEED\n" -> N bytes of random.Random(SEED)
#   bigtcp.py client HOST PORT up|down N SEED   one transfer; prints JSON {ok, bytes, local, remote}
# Every transfer is bounded: N <= 256 MiB, sockets time out after 60 s.
import errno, hashlib, json, random, socket, struct, sys

IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE = 41, 58, 63, 64
RTM_NEWLINK, RTM_GETLINK = 16, 18
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
MAX_BYTES = 256 << 20


def nl_attr(t, payload):
    n = 4 + len(payload)
    return struct.pack('HH', n, t) + payload + b'\0' * ((4 - n % 4) % 4)


def nl_call(msg_type, flags, body):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        s.settimeout(5)
        s.bind((0, 0))
        s.send(struct.pack('IHHII', 16 + len(body), msg_type, flags, 1, 0) + body)
        data = s.recv(65536)
    finally:
        s.close()
    n, t = struct.unpack_from('IH', data, 0)
    if t == NLMSG_ERROR:
        err = struct.unpack_from('i', data, 16)[0]
        if err:
            raise OSError(-err, 'rtnetlink: ' + errno.errorcode.get(-err, str(-err)))
        return None
    return data[16:n]


def gso(dev, size):
    idx = socket.if_nametoindex(dev)
    ifi = struct.pack('BxHiII', socket.AF_UNSPEC, 0, idx, 0, 0)
    attrs = b''.join(nl_attr(t, struct.pack('I', size)) for t in (IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE))
    nl_call(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, ifi + attrs)
    body = nl_call(RTM_GETLINK, NLM_F_REQUEST, ifi)
    got, off = {}, 16
    while off + 4 <= len(body):
        n, t = struct.unpack_from('HH', body, off)
        if n < 4:
            break
        if t in (IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE):
            got[{IFLA_GSO_MAX_SIZE: 'gso_max_size', IFLA_GRO_MAX_SIZE: 'gro_max_size', IFLA_GSO_IPV4_MAX_SIZE: 'gso_ipv4_max_size',
                 IFLA_GRO_IPV4_MAX_SIZE: 'gro_ipv4_max_size'}[t]] = struct.unpack_from('I', body, off + 4)[0]
        off += (n + 3) & ~3
    print(json.dumps(got))


def recv_line(c):
    line = b''
    while not line.endswith(b'\n'):
        b = c.recv(1)
        if not b:
            raise EOFError('connection closed before the command')
        line += b
        if len(line) > 200:
            raise ValueError('command too long')
    return line.decode().split()


def serve(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', port))
    s.listen(8)
    print('listening', flush=True)
    while True:
        c, _ = s.accept()
        c.settimeout(60)
        try:
            cmd = recv_line(c)
            n = int(cmd[1])
            if not 0 < n <= MAX_BYTES:
                raise ValueError('size out of range')
            if cmd[0] == 'up':
                h, left = hashlib.sha256(), n
                while left:
                    b = c.recv(min(left, 1 << 20))
                    if not b:
                        break
                    h.update(b)
                    left -= len(b)
                c.sendall((h.hexdigest() + '\n').encode())
            elif cmd[0] == 'down':
                c.sendall(random.Random(int(cmd[2])).randbytes(n))
        except Exception as e:  # one bad client must not end the server
            print('error', e, flush=True)
        finally:
            c.close()


def client(host, port, way, n, seed):
    if not 0 < n <= MAX_BYTES:
        raise SystemExit('size out of range')
    data = random.Random(seed).randbytes(n)
    local = hashlib.sha256(data).hexdigest()
    c = socket.create_connection((host, port), timeout=60)
    try:
        if way == 'up':
            c.sendall(f'up {n}\n'.encode() + data)
            remote = c.makefile().readline().strip()
            got = n
        else:
            c.sendall(f'down {n} {seed}\n'.encode())
            h, got = hashlib.sha256(), 0
            while got < n:
                b = c.recv(1 << 20)
                if not b:
                    break
                h.update(b)
                got += len(b)
            remote = h.hexdigest()
    finally:
        c.close()
    print(json.dumps({'ok': local == remote and got == n, 'bytes': got, 'local': local, 'remote': remote}))


if __name__ == '__main__':
    a = sys.argv[1:]
    if a[:1] == ['gso'] and len(a) == 3:
        gso(a[1], int(a[2]))
    elif a[:1] == ['serve'] and len(a) == 2:
        serve(int(a[1]))
    elif a[:1] == ['client'] and len(a) == 6 and a[3] in ('up', 'down'):
        client(a[1], int(a[2]), a[3], int(a[4]), int(a[5]))
    else:
        raise SystemExit(__doc__ or 'usage: see the head of bigtcp.py')
