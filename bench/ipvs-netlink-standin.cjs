// A stand-in for kbp_netlink.node (bench/ipvs-write.ts, through KBP_NETLINK_ADDON): answers every
// request as a kernel with an empty IPVS would (GETFAMILY: a family id; a dump: DONE; a write: ACK),
// so IpvsClient encodes, sends and decodes as on a kernel, on a host without IPVS.
exports.open = () => ({});
exports.close = () => {};
exports.request = async (_sock, buf) => {
  const out = [];
  let off = 0;
  while (off + 16 <= buf.length) {
    const len = buf.readUInt32LE(off), type = buf.readUInt16LE(off + 4), flags = buf.readUInt16LE(off + 6), seq = buf.readUInt32LE(off + 8);
    const msg = (t, payload) => { const h = Buffer.alloc(16); h.writeUInt32LE(16 + payload.length, 0); h.writeUInt16LE(t, 4); h.writeUInt32LE(seq, 8); out.push(h, payload); };
    if (type === 0x10) {
      const p = Buffer.alloc(4 + 8); p[0] = 1; p.writeUInt16LE(6, 4); p.writeUInt16LE(1, 6); p.writeUInt16LE(0x30, 8);
      msg(0x10, p);
    }
    if (flags & 0x300) msg(3, Buffer.alloc(4));
    else { const p = Buffer.alloc(20); buf.copy(p, 4, off, off + 16); msg(2, p); }
    off += (len + 3) & ~3;
  }
  return Buffer.concat(out);
};
