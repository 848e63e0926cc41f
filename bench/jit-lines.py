# Source lines of offsets in a loaded BPF program's JIT image: `python3 bench/jit-lines.py PROG_ID 0x3c63 ...`
# prints, for each offset (e.g. bpf_prog_<tag>_lb_tc_ingress+0x3c63 in `perf script`), the line whose
# code holds it (a call's return address: the line of the call). It reads the program's jited_line_info
# and BTF strings itself: this machine's bpftool has no libbfd, so `bpftool prog dump jited linum`
# fails. CTX=0x3a00-0x3e70 also lists every line record in that range. Needs root (BPF_PROG_GET_FD_BY_ID).
import ctypes, struct, sys, os
libc = ctypes.CDLL(None, use_errno=True)
SYS_bpf = 321
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = libc.syscall(SYS_bpf, cmd, buf, len(attr))
    if r < 0: raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return r
def info(fd, size=256, fill=None):
    b = ctypes.create_string_buffer(size)
    if fill:
        for off, fmt, val in fill: struct.pack_into(fmt, b, off, val)
    attr = struct.pack('IIQ', fd, size, ctypes.addressof(b))
    bpf(15, attr + b'\0' * 8)
    return b
pid = int(sys.argv[1])
fd = bpf(13, struct.pack('III', pid, 0, 0) + b'\0' * 20)
i = info(fd)
nlines = struct.unpack_from('I', i, 148)[0]; njl = struct.unpack_from('I', i, 168)[0]
btf_id = struct.unpack_from('I', i, 128)[0]; nks = struct.unpack_from('I', i, 104)[0]
li = ctypes.create_string_buffer(16 * nlines); jl = ctypes.create_string_buffer(8 * njl); ks = ctypes.create_string_buffer(8 * nks)
info(fd, fill=[(148, 'I', nlines), (152, 'Q', ctypes.addressof(li)), (160, 'Q', ctypes.addressof(jl)), (168, 'I', njl), (172, 'I', 16), (176, 'I', 8), (104, 'I', nks), (112, 'Q', ctypes.addressof(ks))])
start = struct.unpack_from('Q', ks, 0)[0]
bfd = bpf(19, struct.pack('III', btf_id, 0, 0) + b'\0' * 20)
bi = info(bfd, 64)
bsize = struct.unpack_from('I', bi, 8)[0]
raw = ctypes.create_string_buffer(bsize)
info(bfd, 64, fill=[(0, 'Q', ctypes.addressof(raw)), (8, 'I', bsize)])
hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from('IIIII', raw, 4)
strs = raw.raw[hdr_len + str_off: hdr_len + str_off + str_len]
def s(off): return strs[off: strs.index(b'\0', off)].decode()
recs = []
for k in range(nlines):
    insn, fn, lo, col = struct.unpack_from('IIII', li, 16 * k)
    addr = struct.unpack_from('Q', jl, 8 * k)[0]
    recs.append((addr - start, insn, s(fn).split('/')[-1], col >> 10, s(lo).strip()))
recs.sort()
for t in [int(x, 16) for x in sys.argv[2:]]:
    prev = [r for r in recs if r[0] < t]
    r = prev[-1] if prev else None
    print(hex(t), r[2:] if r else None)
if os.environ.get('CTX'):
    lo, hi = [int(x, 16) for x in os.environ['CTX'].split('-')]
    for r in recs:
        if lo <= r[0] <= hi: print(hex(r[0]), r[1], r[2], r[3], r[4][:110])
