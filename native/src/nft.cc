// kbp_nft: a thin Node-API layer over libnftables, built apart from kbp_native so the nftables data
// plane loads on hosts where libbpf (or BPF itself) is missing. Two calls: make a context (output
// flags given by TypeScript) and run a buffer of nft commands on it, off the event loop, returning
// libnftables' return code and what it printed. Everything else (building the commands, validating,
// serializing calls on one context) is in src/dataplane/nftables/native.ts, the only module that
// loads this file.
//
// A third call deletes stale UDP conntrack entries (kube-proxy's conntrack.CleanStaleEntries) with
// libnetfilter_conntrack: one filtered dump per address family, the matching entries deleted one
// netlink request each, all on a worker thread. No `conntrack` process per entry.
#include <napi.h>

#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <string.h>

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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
  Napi::Object c = Napi::Object::New(env);
  c.Set("NFT_CTX_OUTPUT_JSON", Napi::Number::New(env, NFT_CTX_OUTPUT_JSON));
  c.Set("NFT_CTX_OUTPUT_HANDLE", Napi::Number::New(env, NFT_CTX_OUTPUT_HANDLE));
  c.Set("NFT_CTX_OUTPUT_NUMERIC_ALL", Napi::Number::New(env, NFT_CTX_OUTPUT_NUMERIC_ALL));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_nft, Init)
