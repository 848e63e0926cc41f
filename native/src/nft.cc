// kbp_nft: a thin Node-API layer over libnftables, built apart from kbp_native so the nftables data
// plane loads on hosts where libbpf (or BPF itself) is missing. Two calls: make a context (output
// flags given by TypeScript) and run a buffer of nft commands on it, off the event loop, returning
// libnftables' return code and what it printed. Everything else (building the commands, validating,
// serializing calls on one context) is in src/dataplane/nftables/native.ts, the only module that
// loads this file.
//
// A third call deletes stale UDP conntrack entries (kube-proxy's conntrack.CleanStaleEntries) with
// libnetfilter_conntrack: one filtered dump per address family, the matching entries deleted one
// netlink request each, all on a worker thread. No `conntrack` process per entry. The IPVS mode
// uses it too (removed UDP real servers): one conntrack deleter for both fallback modes.
#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

// libnfnetlink's copy of nfnetlink.h (pulled in by libnetfilter_conntrack) predates these
#ifndef NFNL_SUBSYS_NFTABLES
#define NFNL_SUBSYS_NFTABLES 10
#endif
#ifndef NFNL_MSG_BATCH_BEGIN
#define NFNL_MSG_BATCH_BEGIN NLMSG_MIN_TYPE
#define NFNL_MSG_BATCH_END (NLMSG_MIN_TYPE + 1)
#endif

namespace {

void FreeCtx(Napi::Env, struct nft_ctx* ctx) { nft_ctx_free(ctx); }

// newContext(outputFlags) -> External<nft_ctx>, freed by the garbage collector
Napi::Value NewContext(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx) {
    Napi::Error::New(env, "nft_ctx_new failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  nft_ctx_output_set_flags(ctx, info[0].As<Napi::Number>().Uint32Value());
  nft_ctx_buffer_output(ctx);
  nft_ctx_buffer_error(ctx);
  return Napi::External<struct nft_ctx>::New(env, ctx, FreeCtx);
}

class RunWorker : public Napi::AsyncWorker {
 public:
  RunWorker(Napi::Env env, Napi::Object keep, struct nft_ctx* ctx, std::string buf)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), ctx_(ctx), buf_(std::move(buf)) {
    keep_ = Napi::Persistent(keep);  // the context outlives the call
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    rc_ = nft_run_cmd_from_buffer(ctx_, buf_.c_str());
    const char* out = nft_ctx_get_output_buffer(ctx_);
    const char* err = nft_ctx_get_error_buffer(ctx_);
    out_ = out ? out : "";
    err_ = err ? err : "";
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("rc", Napi::Number::New(env, rc_));
    r.Set("output", Napi::String::New(env, out_));
    r.Set("error", Napi::String::New(env, err_));
    deferred_.Resolve(r);
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  struct nft_ctx* ctx_;
  std::string buf_;
  int rc_ = 0;
  std::string out_, err_;
};

// A frontend whose UDP entries are checked: entries to dst:port (any local address when `any`, as
// kube-proxy matches NodePorts by port) whose reply source is not in `keep` are deleted.
struct CtRule {
  std::unordered_set<std::string> keep;  // raw address bytes (4 or 16)
};

std::string CtKey(int family, bool any, const void* dst, uint16_t port) {
  std::string k(1, static_cast<char>(family));
  k.push_back(any ? 1 : 0);
  k.append(reinterpret_cast<const char*>(&port), sizeof port);
  if (!any) k.append(static_cast<const char*>(dst), family == AF_INET ? 4 : 16);
  return k;
}

class CtFlushWorker : public Napi::AsyncWorker {
 public:
  CtFlushWorker(Napi::Env env, std::unordered_map<std::string, CtRule> rules, bool v4, bool v6)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), rules_(std::move(rules)), v4_(v4), v6_(v6) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  static int OnEntry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
    auto* self = static_cast<CtFlushWorker*>(data);
    if (nfct_get_attr_u8(ct, ATTR_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
    self->seen_++;
    int family = nfct_get_attr_u8(ct, ATTR_L3PROTO);
    uint16_t port = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
    const void* dst = nfct_get_attr(ct, family == AF_INET ? ATTR_ORIG_IPV4_DST : ATTR_ORIG_IPV6_DST);
    const void* rsrc = nfct_get_attr(ct, family == AF_INET ? ATTR_REPL_IPV4_SRC : ATTR_REPL_IPV6_SRC);
    if (!dst || !rsrc) return NFCT_CB_CONTINUE;
    std::string from(static_cast<const char*>(rsrc), family == AF_INET ? 4 : 16);
    // the exact frontend decides when there is one; a NodePort (any address) otherwise
    for (bool any : {false, true}) {
      auto it = self->rules_.find(CtKey(family, any, dst, port));
      if (it == self->rules_.end()) continue;
      if (!it->second.keep.count(from)) self->stale_.push_back(nfct_clone(ct));
      break;
    }
    return NFCT_CB_CONTINUE;
  }

  void Execute() override {
    struct nfct_handle* h = nfct_open(CONNTRACK, 0);
    if (!h) {
      SetError(std::string("nfct_open: ") + strerror(errno));
      return;
    }
    for (int family : {AF_INET, AF_INET6}) {
      if ((family == AF_INET && !v4_) || (family == AF_INET6 && !v6_)) continue;
      nfct_callback_register(h, NFCT_T_ALL, OnEntry, this);
      struct nfct_filter_dump* fd = nfct_filter_dump_create();
      nfct_filter_dump_set_attr_u8(fd, NFCT_FILTER_DUMP_L3NUM, family);
      int rc = nfct_query(h, NFCT_Q_DUMP_FILTER, fd);
      int err = errno;
      nfct_filter_dump_destroy(fd);
      nfct_callback_unregister(h);
      if (rc < 0) {
        error_ = std::string("conntrack dump: ") + strerror(err);
        break;
      }
    }
    // deleted after the dump: a request on the handle in the middle of its dump is refused
    for (struct nf_conntrack* ct : stale_) {
      if (nfct_query(h, NFCT_Q_DESTROY, ct) == 0) deleted_++;
      else if (errno != ENOENT && error_.empty()) error_ = std::string("conntrack delete: ") + strerror(errno);
      nfct_destroy(ct);
    }
    stale_.clear();
    nfct_close(h);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("deleted", Napi::Number::New(env, deleted_));
    r.Set("seen", Napi::Number::New(env, seen_));
    r.Set("error", Napi::String::New(env, error_));
    deferred_.Resolve(r);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::unordered_map<std::string, CtRule> rules_;
  bool v4_, v6_;
  std::vector<struct nf_conntrack*> stale_;
  uint32_t deleted_ = 0, seen_ = 0;
  std::string error_;
};

bool ParseAddr(const std::string& text, int* family, unsigned char out[16]) {
  if (inet_pton(AF_INET, text.c_str(), out) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text.c_str(), out) == 1) {
    *family = AF_INET6;
    return true;
  }
  return false;
}

// ctFlushUdp([{ dst, port, any, keep: [address] }]) -> Promise<{ deleted, seen, error }>
// dst names the family also when `any` (0.0.0.0 or ::).
Napi::Value CtFlushUdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array specs = info[0].As<Napi::Array>();
  std::unordered_map<std::string, CtRule> rules;
  bool v4 = false, v6 = false;
  for (uint32_t i = 0; i < specs.Length(); i++) {
    Napi::Object o = specs.Get(i).As<Napi::Object>();
    std::string dst = o.Get("dst").As<Napi::String>().Utf8Value();
    int family;
    unsigned char a[16];
    if (!ParseAddr(dst, &family, a)) {
      Napi::TypeError::New(env, "ctFlushUdp: bad address " + dst).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    (family == AF_INET ? v4 : v6) = true;
    bool any = o.Get("any").ToBoolean().Value();
    uint16_t port = static_cast<uint16_t>(o.Get("port").As<Napi::Number>().Uint32Value());
    CtRule& r = rules[CtKey(family, any, a, port)];
    Napi::Array keep = o.Get("keep").As<Napi::Array>();
    for (uint32_t j = 0; j < keep.Length(); j++) {
      std::string k = keep.Get(j).As<Napi::String>().Utf8Value();
      int kf;
      unsigned char kb[16];
      if (!ParseAddr(k, &kf, kb)) {
        Napi::TypeError::New(env, "ctFlushUdp: bad address " + k).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      r.keep.insert(std::string(reinterpret_cast<char*>(kb), kf == AF_INET ? 4 : 16));
    }
  }
  auto* w = new CtFlushWorker(env, std::move(rules), v4, v6);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---- set elements in bulk ------------------------------------------------------------------------
// libnftables parses, evaluates and keeps ~1-2 KB per element: 210,000 elements (10,000 Services x
// 10 endpoints) cost it ~2.3 s of CPU. Elements are plain data, though: here they are encoded
// straight into one netlink batch (NEWSETELEM / DELSETELEM, one atomic nf_tables transaction),
// from the same text nft would read, for the few types the table uses. Tables, sets and chains stay
// with libnftables.

struct Field {
  enum Kind { V4, V6, PROTO, PORT, MARK, IFNAME } kind;
  size_t len;  // bytes the value takes before padding
};

bool ParseType(const std::string& t, std::vector<Field>* out, std::string* err) {
  size_t i = 0;
  while (i <= t.size()) {
    size_t j = t.find(" . ", i);
    std::string f = t.substr(i, j == std::string::npos ? std::string::npos : j - i);
    if (f == "ipv4_addr") out->push_back({Field::V4, 4});
    else if (f == "ipv6_addr") out->push_back({Field::V6, 16});
    else if (f == "inet_proto") out->push_back({Field::PROTO, 1});
    else if (f == "inet_service") out->push_back({Field::PORT, 2});
    else if (f == "mark") out->push_back({Field::MARK, 4});
    else if (f == "ifname") out->push_back({Field::IFNAME, IFNAMSIZ});
    else {
      *err = "element type " + f + " is not encoded here";
      return false;
    }
    if (j == std::string::npos) break;
    i = j + 3;
  }
  return !out->empty();
}

// one field's text -> lower (and upper, for a prefix in an interval set) value
bool EncodeField(const Field& f, const std::string& text, bool concat, std::string* lo, std::string* hi, std::string* err) {
  size_t pad = concat ? ((f.len + 3) & ~size_t(3)) : f.len;
  std::string a(pad, '\0'), b;
  unsigned char* p = reinterpret_cast<unsigned char*>(&a[0]);
  char* end = nullptr;
  switch (f.kind) {
    case Field::V4:
    case Field::V6: {
      std::string addr = text;
      int plen = -1;
      size_t slash = text.find('/');
      if (slash != std::string::npos) {
        addr = text.substr(0, slash);
        plen = static_cast<int>(strtol(text.c_str() + slash + 1, &end, 10));
      }
      if (inet_pton(f.kind == Field::V4 ? AF_INET : AF_INET6, addr.c_str(), p) != 1 || plen > static_cast<int>(f.len * 8)) {
        *err = "bad address " + text;
        return false;
      }
      if (plen >= 0) {
        b = a;
        unsigned char* q = reinterpret_cast<unsigned char*>(&b[0]);
        for (int bit = plen; bit < static_cast<int>(f.len * 8); bit++) {
          p[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
          q[bit / 8] |= static_cast<unsigned char>(0x80 >> (bit % 8));
        }
      }
      break;
    }
    case Field::PROTO:
      if (text == "tcp") p[0] = IPPROTO_TCP;
      else if (text == "udp") p[0] = IPPROTO_UDP;
      else if (text == "sctp") p[0] = IPPROTO_SCTP;
      else {
        unsigned long v = strtoul(text.c_str(), &end, 10);
        if (!end || *end || v > 255) {
          *err = "bad protocol " + text;
          return false;
        }
        p[0] = static_cast<unsigned char>(v);
      }
      break;
    case Field::PORT: {
      unsigned long v = strtoul(text.c_str(), &end, 10);
      if (!end || *end || v > 65535) {
        *err = "bad port " + text;
        return false;
      }
      uint16_t n = htons(static_cast<uint16_t>(v));
      memcpy(p, &n, 2);
      break;
    }
    case Field::MARK: {
      unsigned long v = strtoul(text.c_str(), &end, 0);
      if (!end || *end || v > 0xffffffffUL) {
        *err = "bad mark " + text;
        return false;
      }
      uint32_t n = static_cast<uint32_t>(v);  // host byte order, as nft's mark type
      memcpy(p, &n, 4);
      break;
    }
    case Field::IFNAME: {
      std::string n = text;
      if (n.size() >= 2 && n.front() == '"' && n.back() == '"') n = n.substr(1, n.size() - 2);
      if (n.empty() || n.size() >= IFNAMSIZ) {
        *err = "bad interface name " + text;
        return false;
      }
      memcpy(p, n.data(), n.size());
      break;
    }
  }
  lo->append(a);
  hi->append(b.empty() ? a : b);
  return true;
}

bool EncodeValue(const std::vector<Field>& type, const std::string& text, std::string* lo, std::string* hi, std::string* err) {
  size_t i = 0, k = 0;
  bool concat = type.size() > 1;
  for (; k < type.size(); k++) {
    size_t j = k + 1 < type.size() ? text.find(" . ", i) : std::string::npos;
    if (k + 1 < type.size() && j == std::string::npos) break;
    if (!EncodeField(type[k], text.substr(i, j == std::string::npos ? std::string::npos : j - i), concat, lo, hi, err)) return false;
    i = j == std::string::npos ? text.size() : j + 3;
  }
  if (k != type.size()) {
    *err = "element " + text + " has fewer fields than its type";
    return false;
  }
  return true;
}

struct ElemGroup {
  bool del = false;
  std::string set, keyType, dataType;
  bool interval = false;
  std::string elems;  // one element per line: KEY or KEY : VALUE
  // when not empty: line i is element i's VALUE, and elems holds keys only (a full sync's maps: the
  // caller joins the keys and the values it already has, instead of building a string per element)
  std::string values;
  // fan-out (a full sync's backend maps, of type address . port): elems holds N keys, each encoded
  // once; key i goes into the maps fanSets[0..fanK[i]-1], into fanSets[j] with dictionary value
  // x = fanIdx[off_i + j] (off_i: the sum of fanK before i): line x of fanAddrs and port fanPorts[x].
  // A backend's value is encoded once, however many frontends name it, and no "key : value" text
  // exists per element.
  bool fan = false;
  std::vector<std::string> fanSets;
  std::vector<uint32_t> fanK, fanIdx;
  std::string fanAddrs;
  std::vector<uint16_t> fanPorts;
};

// The element transactions' netlink socket, one for the process and kept open (under NlMutex; the
// sequence numbers go on from one transaction to the next, so an answer to an earlier one is told
// apart). Closing a NETLINK_NETFILTER socket (NETLINK_URELEASE) makes nf_tables flush its deferred
// release of the transactions just committed (nft_rcv_nl_event -> nf_tables_trans_destroy_flush_work),
// which waits for an RCU grace period: a socket per transaction spent 5-15 ms of a one-element
// sync's wall in close(), with no CPU (docs/perf-log.md, session 31, p31nft). After any error the
// socket is closed and the next transaction opens another: nothing of an aborted batch is left to read.
std::mutex& NlMutex() {
  static std::mutex mu;
  return mu;
}
struct mnl_socket* g_nl = nullptr;
int g_nlSndBuf = 0;
uint32_t g_nlSeq = 0;

void NlReset() {
  if (g_nl) mnl_socket_close(g_nl);
  g_nl = nullptr;
  g_nlSndBuf = 0;
}

class ElementsWorker : public Napi::AsyncWorker {
 public:
  ElementsWorker(Napi::Env env, std::string table, std::vector<ElemGroup> groups)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), table_(std::move(table)), groups_(std::move(groups)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::lock_guard<std::mutex> lock(NlMutex());
    // CPU time of this thread per step: encoding here, and the kernel taking the batch (nf_tables
    // processes a batch in the sender's context), for the bench's profile
    double t0 = ThreadCpuMs();
    seq0_ = seq_ = g_nlSeq;
    if (!Build()) return;
    g_nlSeq = seq_;
    double t1 = ThreadCpuMs();
    Send();
    buildMs_ = t1 - t0;
    sendMs_ = ThreadCpuMs() - t1;
  }
  static double ThreadCpuMs() {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object r = Napi::Object::New(env);
    r.Set("error", Napi::String::New(env, error_));
    r.Set("messages", Napi::Number::New(env, msgs_));
    r.Set("bytes", Napi::Number::New(env, static_cast<double>(buf_.size())));
    r.Set("encodeCpuMs", Napi::Number::New(env, buildMs_));
    r.Set("kernelCpuMs", Napi::Number::New(env, sendMs_));
    deferred_.Resolve(r);
  }

 private:
  // appends a netlink message (header + nfgenmsg) to buf_, returns its offset
  size_t Begin(uint16_t type, uint16_t flags, uint8_t family, uint16_t resId) {
    size_t off = buf_.size();
    buf_.resize(off + MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg)));
    auto* nlh = reinterpret_cast<struct nlmsghdr*>(&buf_[off]);
    nlh->nlmsg_len = static_cast<uint32_t>(buf_.size() - off);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = ++seq_;
    nlh->nlmsg_pid = 0;
    auto* nfg = reinterpret_cast<struct nfgenmsg*>(&buf_[off + MNL_ALIGN(sizeof(struct nlmsghdr))]);
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(resId);
    return off;
  }
  void End(size_t off) { reinterpret_cast<struct nlmsghdr*>(&buf_[off])->nlmsg_len = static_cast<uint32_t>(buf_.size() - off); }
  size_t NestStart(uint16_t type) {
    size_t off = buf_.size();
    buf_.resize(off + MNL_ATTR_HDRLEN);
    auto* a = reinterpret_cast<struct nlattr*>(&buf_[off]);
    a->nla_type = type | NLA_F_NESTED;
    return off;
  }
  void NestEnd(size_t off) { reinterpret_cast<struct nlattr*>(&buf_[off])->nla_len = static_cast<uint16_t>(buf_.size() - off); }
  void Attr(uint16_t type, const void* data, size_t len) {
    size_t off = buf_.size();
    buf_.resize(off + MNL_ALIGN(MNL_ATTR_HDRLEN + len));
    auto* a = reinterpret_cast<struct nlattr*>(&buf_[off]);
    a->nla_type = type;
    a->nla_len = static_cast<uint16_t>(MNL_ATTR_HDRLEN + len);
    memcpy(&buf_[off + MNL_ATTR_HDRLEN], data, len);
  }
  void Str(uint16_t type, const std::string& s) { Attr(type, s.c_str(), s.size() + 1); }
  void Data(uint16_t type, const std::string& v) {
    size_t n = NestStart(type);
    Attr(NFTA_DATA_VALUE, v.data(), v.size());
    NestEnd(n);
  }

  // lines of a text, without copying (the last line may lack its newline)
  static void Lines(const std::string& text, std::vector<std::pair<size_t, size_t>>* out) {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      size_t end = nl == std::string::npos ? text.size() : nl;
      out->emplace_back(pos, end - pos);
      pos = end + 1;
    }
  }

  // the fan-out form of a group (ElemGroup::fan): every key and every dictionary value encoded once
  // one NEWSETELEM/DELSETELEM message being filled: at most 512 elements, and well under the 64 KB
  // an attribute length can say
  struct ElemMsg {
    size_t msg = 0, list = 0, count = 0;
  };
  void ElemOpen(ElemMsg& m, const std::string& set, bool del) {
    if (m.count) return;
    uint16_t type = (NFNL_SUBSYS_NFTABLES << 8) | (del ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM);
    m.msg = Begin(type, NLM_F_REQUEST | NLM_F_ACK | (del ? 0 : NLM_F_CREATE), NFPROTO_INET, 0);
    Str(NFTA_SET_ELEM_LIST_TABLE, table_);
    Str(NFTA_SET_ELEM_LIST_SET, set);
    m.list = NestStart(NFTA_SET_ELEM_LIST_ELEMENTS);
    msgs_++;
  }
  void ElemClose(ElemMsg& m) {
    if (!m.count) return;
    NestEnd(m.list);
    End(m.msg);
    m.count = 0;
  }
  // after each element: the message is closed once full
  void ElemAdded(ElemMsg& m) {
    if (++m.count == 512 || buf_.size() - m.list > 48 * 1024) ElemClose(m);
  }
  bool BuildFan(const ElemGroup& g, const std::vector<Field>& kt, const std::vector<Field>& dt) {
    std::vector<std::pair<size_t, size_t>> kl, dl;
    Lines(g.elems, &kl);
    Lines(g.fanAddrs, &dl);
    if (kl.size() != g.fanK.size()) {
      error_ = "set " + g.set + ": " + std::to_string(kl.size()) + " keys but " + std::to_string(g.fanK.size()) + " counts";
      return false;
    }
    std::vector<std::string> keys(kl.size()), vals(dl.size());
    std::vector<size_t> off(kl.size());
    size_t total = 0;
    uint32_t maxK = 0;
    for (size_t i = 0; i < kl.size(); i++) {
      std::string hi;
      if (!EncodeValue(kt, g.elems.substr(kl[i].first, kl[i].second), &keys[i], &hi, &error_)) {
        error_ = "set " + g.set + ": " + error_;
        return false;
      }
      off[i] = total;
      total += g.fanK[i];
      if (g.fanK[i] > maxK) maxK = g.fanK[i];
    }
    if (total != g.fanIdx.size() || maxK > g.fanSets.size()) {
      error_ = "set " + g.set + ": fan-out counts do not match its indices or sets";
      return false;
    }
    if (dt.size() != 2 || (dt[0].kind != Field::V4 && dt[0].kind != Field::V6) || dt[1].kind != Field::PORT || dl.size() != g.fanPorts.size()) {
      error_ = "set " + g.set + ": fan-out values are address . port, one port per address";
      return false;
    }
    for (size_t v = 0; v < dl.size(); v++) {
      std::string hi;
      if (!EncodeField(dt[0], g.fanAddrs.substr(dl[v].first, dl[v].second), true, &vals[v], &hi, &error_)) {
        error_ = "set " + g.set + ": " + error_;
        return false;
      }
      std::string port(4, '\0');  // a concatenation's field is padded to 4 bytes
      uint16_t n = htons(g.fanPorts[v]);
      memcpy(&port[0], &n, 2);
      vals[v] += port;
    }
    for (uint32_t j = 0; j < maxK; j++) {
      ElemMsg m;
      for (size_t i = 0; i < keys.size(); i++) {
        if (g.fanK[i] <= j) continue;
        uint32_t x = g.fanIdx[off[i] + j];
        if (x >= vals.size()) {
          error_ = "set " + g.fanSets[j] + ": value index " + std::to_string(x) + " beyond the dictionary";
          return false;
        }
        ElemOpen(m, g.fanSets[j], false);
        size_t item = NestStart(NFTA_LIST_ELEM);
        Data(NFTA_SET_ELEM_KEY, keys[i]);
        Data(NFTA_SET_ELEM_DATA, vals[x]);
        NestEnd(item);
        ElemAdded(m);
      }
      ElemClose(m);
    }
    return true;
  }

  bool Build() {
    buf_.reserve(1 << 20);
    size_t b = Begin(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    End(b);
    for (const ElemGroup& g : groups_) {
      std::vector<Field> kt, dt;
      bool verdict = g.dataType == "verdict";
      if (!ParseType(g.keyType, &kt, &error_) || (!verdict && !g.dataType.empty() && !ParseType(g.dataType, &dt, &error_))) {
        error_ = "set " + g.set + ": " + error_;
        return false;
      }
      if (g.fan) {
        if (g.del || verdict || g.interval || dt.empty()) {
          error_ = "set " + g.set + ": fan-out is for adding elements to plain maps";
          return false;
        }
        if (!BuildFan(g, kt, dt)) return false;
        continue;
      }
      size_t pos = 0, vpos = 0;
      ElemMsg m;
      bool split = !g.values.empty();
      while (pos < g.elems.size()) {
        size_t nl = g.elems.find('\n', pos);
        std::string e = g.elems.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? g.elems.size() : nl + 1;
        std::string sv;
        if (split) {
          if (vpos > g.values.size()) {
            error_ = "set " + g.set + ": fewer values than keys";
            return false;
          }
          size_t vnl = g.values.find('\n', vpos);
          sv = g.values.substr(vpos, vnl == std::string::npos ? std::string::npos : vnl - vpos);
          vpos = vnl == std::string::npos ? g.values.size() + 1 : vnl + 1;
        }
        if (e.empty()) continue;
        ElemOpen(m, g.set, g.del);
        size_t colon = split ? std::string::npos : e.find(" : ");
        std::string key = e.substr(0, colon), lo, hi;
        if (!EncodeValue(kt, key, &lo, &hi, &error_)) {
          error_ = "set " + g.set + ": " + error_;
          return false;
        }
        size_t item = NestStart(NFTA_LIST_ELEM);
        Data(NFTA_SET_ELEM_KEY, lo);
        if (g.interval) Data(NFTA_SET_ELEM_KEY_END, hi);
        if ((split || colon != std::string::npos) && !g.del) {
          std::string v = split ? sv : e.substr(colon + 3);
          if (verdict) {
            size_t d = NestStart(NFTA_SET_ELEM_DATA);
            size_t vn = NestStart(NFTA_DATA_VERDICT);
            uint32_t code;
            std::string chain;
            if (v.rfind("goto ", 0) == 0) code = NFT_GOTO, chain = v.substr(5);
            else if (v.rfind("jump ", 0) == 0) code = NFT_JUMP, chain = v.substr(5);
            // a Local-policy frontend with endpoints elsewhere only: drop (kube-proxy)
            else if (v == "drop") code = NF_DROP;
            else if (v == "accept") code = NF_ACCEPT;
            else {
              error_ = "set " + g.set + ": verdict " + v + " is not encoded here";
              return false;
            }
            uint32_t be = htonl(code);
            Attr(NFTA_VERDICT_CODE, &be, 4);
            if (!chain.empty()) Str(NFTA_VERDICT_CHAIN, chain);
            NestEnd(vn);
            NestEnd(d);
          } else {
            std::string vlo, vhi;
            if (!EncodeValue(dt, v, &vlo, &vhi, &error_)) {
              error_ = "set " + g.set + ": " + error_;
              return false;
            }
            Data(NFTA_SET_ELEM_DATA, vlo);
          }
        }
        NestEnd(item);
        ElemAdded(m);
      }
      ElemClose(m);
    }
    size_t e = Begin(NFNL_MSG_BATCH_END, NLM_F_REQUEST, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    End(e);
    return true;
  }

  void Send() {
    if (!g_nl) {
      struct mnl_socket* nl = mnl_socket_open(NETLINK_NETFILTER);
      if (!nl) {
        error_ = std::string("netlink socket: ") + strerror(errno);
        return;
      }
      int fd = mnl_socket_get_fd(nl);
      int one = 1;
      setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);  // errors without the request echoed
      int rcv = 4 << 20;
      if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
      struct timeval tv = {60, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        error_ = std::string("netlink bind: ") + strerror(errno);
        mnl_socket_close(nl);
        return;
      }
      g_nl = nl;
    }
    struct mnl_socket* nl = g_nl;
    int fd = mnl_socket_get_fd(nl);
    // the batch goes in one sendmsg, which the send buffer must hold
    int snd = static_cast<int>(buf_.size() + 4096);
    if (snd > g_nlSndBuf) {
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd) < 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
      g_nlSndBuf = snd;
    }
    if (mnl_socket_sendto(nl, buf_.data(), buf_.size()) < 0) {
      error_ = std::string("netlink send: ") + strerror(errno);
      NlReset();
      return;
    }
    // one answer per element message: an ack, or the error that aborted the batch
    std::vector<char> rb(MNL_SOCKET_BUFFER_SIZE * 4);
    size_t answers = 0;
    while (answers < msgs_) {
      ssize_t n = mnl_socket_recvfrom(nl, rb.data(), rb.size());
      if (n < 0) {
        if (error_.empty()) error_ = std::string("netlink receive: ") + strerror(errno);
        break;
      }
      for (auto* h = reinterpret_cast<struct nlmsghdr*>(rb.data()); mnl_nlmsg_ok(h, static_cast<int>(n)); h = mnl_nlmsg_next(h, reinterpret_cast<int*>(&n))) {
        // this batch's answers only (sequence numbers seq0_ + 1 .. seq_)
        if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq - seq0_ - 1 >= seq_ - seq0_) continue;
        answers++;
        auto* err = static_cast<struct nlmsgerr*>(mnl_nlmsg_get_payload(h));
        if (err->error && error_.empty()) error_ = std::string("nf_tables refused the elements: ") + strerror(-err->error);
      }
      if (!error_.empty()) break;  // the batch was aborted as a whole
    }
    if (!error_.empty()) NlReset();
  }

  double buildMs_ = 0, sendMs_ = 0;
  Napi::Promise::Deferred deferred_;
  std::string table_;
  std::vector<ElemGroup> groups_;
  std::vector<char> buf_;
  uint32_t seq0_ = 0, seq_ = 0;
  size_t msgs_ = 0;
  std::string error_;
};

// elements(table, [{ del, set, keyType, dataType, interval, elems }]) -> Promise<{ error, messages, bytes }>
// One nf_tables transaction. keyType / dataType in nft's words ("ipv4_addr . inet_proto . inet_service",
// "verdict", "" for a plain set); elems one per line, in nft's element syntax; or, with values (a string,
// one per line), elems the keys and values the values, line by line; or, with fanout: { sets, k:
// Uint32Array, idx: Uint32Array, addrs, ports: Uint16Array } (ElemGroup::fan), elems the keys of
// several maps of type address . port, each key and dictionary value encoded once.
Napi::Value Elements(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string table = info[0].As<Napi::String>().Utf8Value();
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<ElemGroup> groups;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    groups.emplace_back();
    ElemGroup& e = groups.back();
    e.del = o.Get("del").ToBoolean().Value();
    e.set = o.Get("set").As<Napi::String>().Utf8Value();
    e.keyType = o.Get("keyType").As<Napi::String>().Utf8Value();
    e.dataType = o.Get("dataType").As<Napi::String>().Utf8Value();
    e.interval = o.Get("interval").ToBoolean().Value();
    e.elems = o.Get("elems").As<Napi::String>().Utf8Value();
    if (o.Has("values") && o.Get("values").IsString()) e.values = o.Get("values").As<Napi::String>().Utf8Value();
    Napi::Value fv = o.Get("fanout");
    if (fv.IsObject()) {
      Napi::Object f = fv.As<Napi::Object>();
      ElemGroup& g = groups.back();
      Napi::Value sets = f.Get("sets"), k = f.Get("k"), idx = f.Get("idx"), addrs = f.Get("addrs"), ports = f.Get("ports");
      if (!sets.IsArray() || !k.IsTypedArray() || !idx.IsTypedArray() || !addrs.IsString() || !ports.IsTypedArray() ||
          k.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array || idx.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
          ports.As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array) {
        Napi::TypeError::New(env, "elements: set " + g.set + ": fanout needs { sets: string[], k: Uint32Array, idx: Uint32Array, addrs: string, ports: Uint16Array }").ThrowAsJavaScriptException();
        return env.Undefined();
      }
      g.fan = true;
      Napi::Array sa = sets.As<Napi::Array>();
      for (uint32_t j = 0; j < sa.Length(); j++) g.fanSets.push_back(sa.Get(j).As<Napi::String>().Utf8Value());
      Napi::Uint32Array ka = k.As<Napi::Uint32Array>(), ia = idx.As<Napi::Uint32Array>();
      g.fanK.assign(ka.Data(), ka.Data() + ka.ElementLength());
      g.fanIdx.assign(ia.Data(), ia.Data() + ia.ElementLength());
      g.fanAddrs = addrs.As<Napi::String>().Utf8Value();
      Napi::Uint16Array pa = ports.As<Napi::Uint16Array>();
      g.fanPorts.assign(pa.Data(), pa.Data() + pa.ElementLength());
    }
  }
  auto* w = new ElementsWorker(env, std::move(table), std::move(groups));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// run(ctx, commands) -> Promise<{ rc, output, error }>
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ext = info[0].As<Napi::External<struct nft_ctx>>();
  Napi::Object keep = Napi::Object::New(env);
  keep.Set("ctx", ext);
  auto* w = new RunWorker(env, keep, ext.Data(), info[1].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("newContext", Napi::Function::New(env, NewContext));
  exports.Set("run", Napi::Function::New(env, Run));
  exports.Set("ctFlushUdp", Napi::Function::New(env, CtFlushUdp));
  exports.Set("elements", Napi::Function::New(env, Elements));
  exports.Set("elementsSplitValues", Napi::Boolean::New(env, true));
  exports.Set("elementsFanout", Napi::Boolean::New(env, true));
  Napi::Object c = Napi::Object::New(env);
  c.Set("NFT_CTX_OUTPUT_JSON", Napi::Number::New(env, NFT_CTX_OUTPUT_JSON));
  c.Set("NFT_CTX_OUTPUT_HANDLE", Napi::Number::New(env, NFT_CTX_OUTPUT_HANDLE));
  c.Set("NFT_CTX_OUTPUT_NUMERIC_ALL", Napi::Number::New(env, NFT_CTX_OUTPUT_NUMERIC_ALL));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_nft, Init)
