// kbp_netlink: raw netlink sockets for the IPVS data plane (generic netlink family "IPVS", and
// NETLINK_ROUTE for the dummy device and its VIPs: src/dataplane/ipvs/rtnl.ts; UDP
// conntrack entries are deleted by kbp_nft's libnetfilter_conntrack), the device scans
// (src/dataplane/links.ts) and the link events (src/dataplane/link-watch.ts). Requests: open a
// socket of a netlink protocol, and send a buffer of ready-made messages on it, off the event loop,
// returning every byte the kernel answered until each request got its terminal reply (an ACK or
// error, or NLMSG_DONE for a dump). Events: subscribe a socket to multicast groups; a libuv poll
// handle on the agent's loop reads what arrives and hands the bytes to a callback. Messages are
// encoded and decoded in TypeScript (src/dataplane/ipvs/netlink.ts), where they are unit-tested;
// src/dataplane/ipvs/native.ts is the only module that loads this file.
//
// Raw sockets rather than libnl-genl-3: the protocol is a handful of attributes, the encoder is
// testable without a kernel in TypeScript, and the addon stays one system call per step with no
// new library on the host or in the VM's initramfs.
//
// No call from JavaScript may crash the process: every argument is checked here (TypeError or
// RangeError naming the method and the argument), handles carry a type tag, a request's buffer is
// copied before the worker runs, and every receive is bounded by a timeout.
#include <napi.h>
#include <uv.h>

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

const napi_type_tag kSockTag = {0x6b62706e6c736f63ULL, 0x6b65745f68616e64ULL};  // "kbpnlsoc" "ket_hand"

struct Sock {
  int fd = -1;
  int protocol = 0;
  std::mutex mu;  // one request at a time on a socket (TypeScript queues too; this makes it certain)
  ~Sock() {
    if (fd >= 0) close(fd);
  }
};

void FreeSock(Napi::Env, Sock* s) { delete s; }

bool TypeErr(Napi::Env env, const char* method, const char* what) {
  Napi::TypeError::New(env, std::string(method) + ": " + what).ThrowAsJavaScriptException();
  return false;
}

Sock* GetSock(const Napi::CallbackInfo& info, size_t i, const char* method) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsExternal()) {
    TypeErr(env, method, "argument 0 (socket) must be a handle from open()");
    return nullptr;
  }
  bool tagged = false;
  napi_check_object_type_tag(env, info[i], &kSockTag, &tagged);
  if (!tagged) {
    TypeErr(env, method, "argument 0 (socket) is not a netlink socket handle");
    return nullptr;
  }
  return info[i].As<Napi::External<Sock>>().Data();
}

// open(protocol) -> handle; the socket closes when the handle is collected or close() is called
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    TypeErr(env, "open", "argument 0 (protocol) must be a number");
    return env.Undefined();
  }
  double d = info[0].As<Napi::Number>().DoubleValue();
  int64_t proto = static_cast<int64_t>(d);
  if (!(d >= 0 && d <= 31) || static_cast<double>(proto) != d) {
    Napi::RangeError::New(env, "open: argument 0 (protocol) must be a netlink protocol, an integer 0..31").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, static_cast<int>(proto));
  if (fd < 0) {
    Napi::Error e = Napi::Error::New(env, std::string("open: socket(AF_NETLINK, ") + std::to_string(proto) + "): " + strerror(errno));
    e.Set("errno", Napi::Number::New(env, -errno));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // room for the answers of a whole batch; FORCE works as root, the plain one caps at rmem_max
  int rcv = 8 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  int one = 1;
  // ACKs without the request echoed back (a batch's answers stay small), and the kernel's error text
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  struct timeval tv = {5, 0};  // a kernel that never answers must not hold a worker thread forever
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    close(fd);
    Napi::Error e = Napi::Error::New(env, std::string("open: bind: ") + strerror(err));
    e.Set("errno", Napi::Number::New(env, -err));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Sock* s = new Sock();
  s->fd = fd;
  s->protocol = static_cast<int>(proto);
  Napi::External<Sock> ext = Napi::External<Sock>::New(env, s, FreeSock);
  napi_type_tag_object(env, ext, &kSockTag);
  return ext;
}

// Sends the request buffer, then reads until `terminals` terminal messages (NLMSG_ERROR or
// NLMSG_DONE) have arrived. Returns the concatenated answers, or a negative errno.
class RequestWorker : public Napi::AsyncWorker {
 public:
  RequestWorker(Napi::Env env, Napi::Value keep, Sock* s, std::vector<uint8_t> req, uint32_t terminals)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), sock_(s), req_(std::move(req)), terminals_(terminals) {
    keep_ = Napi::Persistent(keep.As<Napi::Object>());  // the socket outlives the call
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    std::lock_guard<std::mutex> lock(sock_->mu);
    if (sock_->fd < 0) {
      err_ = -EBADF;
      step_ = "send";
      return;
    }
    struct sockaddr_nl kernel;
    memset(&kernel, 0, sizeof kernel);
    kernel.nl_family = AF_NETLINK;
    ssize_t n = sendto(sock_->fd, req_.data(), req_.size(), 0, reinterpret_cast<struct sockaddr*>(&kernel), sizeof kernel);
    if (n < 0 || static_cast<size_t>(n) != req_.size()) {
      err_ = n < 0 ? -errno : -EMSGSIZE;
      step_ = "send";
      return;
    }
    std::vector<uint8_t> buf(1 << 16);
    uint32_t seen = 0;
    while (seen < terminals_) {
      ssize_t r = recv(sock_->fd, buf.data(), buf.size(), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        err_ = -errno;
        step_ = "recv";
        return;
      }
      size_t off = 0;
      while (off + sizeof(struct nlmsghdr) <= static_cast<size_t>(r)) {
        auto* h = reinterpret_cast<struct nlmsghdr*>(buf.data() + off);
        if (h->nlmsg_len < sizeof(struct nlmsghdr) || off + h->nlmsg_len > static_cast<size_t>(r)) break;
        if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_DONE) seen++;
        off += NLMSG_ALIGN(h->nlmsg_len);
      }
      out_.insert(out_.end(), buf.data(), buf.data() + r);
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      Napi::Error e = Napi::Error::New(env, std::string("netlink ") + step_ + ": " + strerror(-err_));
      e.Set("errno", Napi::Number::New(env, err_));
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, out_.data(), out_.size()));
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference keep_;
  Sock* sock_;
  std::vector<uint8_t> req_;
  uint32_t terminals_;
  std::vector<uint8_t> out_;
  int err_ = 0;
  const char* step_ = "";
};

// request(socket, buffer, terminals) -> Promise<Buffer>
Napi::Value Request(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sock* s = GetSock(info, 0, "request");
  if (!s) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsBuffer()) {
    TypeErr(env, "request", "argument 1 (messages) must be a Buffer");
    return env.Undefined();
  }
  auto b = info[1].As<Napi::Buffer<uint8_t>>();
  if (b.Length() < sizeof(struct nlmsghdr) || b.Length() > (64u << 20)) {
    Napi::RangeError::New(env, "request: argument 1 (messages) must hold 16 bytes to 64 MiB").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 3 || !info[2].IsNumber()) {
    TypeErr(env, "request", "argument 2 (terminals) must be a number");
    return env.Undefined();
  }
  double td = info[2].As<Napi::Number>().DoubleValue();
  int64_t t = static_cast<int64_t>(td);
  if (!(td >= 1 && td <= 1000000) || static_cast<double>(t) != td) {
    Napi::RangeError::New(env, "request: argument 2 (terminals) must be an integer 1..1000000").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object keep = Napi::Object::New(env);
  keep.Set("sock", info[0]);
  auto* w = new RequestWorker(env, keep, s, std::vector<uint8_t>(b.Data(), b.Data() + b.Length()), static_cast<uint32_t>(t));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// close(socket): closes now rather than at collection; later requests fail with EBADF
Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Sock* s = GetSock(info, 0, "close");
  if (!s) return env.Undefined();
  std::lock_guard<std::mutex> lock(s->mu);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  return env.Undefined();
}

// ---- multicast subscriptions ------------------------------------------------------------------
//
// Why a poll handle on the loop and not a thread: an event is a few hundred bytes, read without
// blocking when the socket is readable, so no worker is held (libuv's pool serves the verifier and
// the batches), and the callback runs where JavaScript runs, with no queue between them. The handle
// does not keep the process alive (the agent's server does).

const napi_type_tag kSubTag = {0x6b62706e6c737562ULL, 0x7363726962655f68ULL};  // "kbpnlsub" "scribe_h"

struct Sub {
  napi_env env = nullptr;
  int fd = -1;
  uv_poll_t poll;
  Napi::FunctionReference cb;
  Napi::AsyncContext* ctx = nullptr;
  bool stopped = false;      // unsubscribed (or finalized): no more callbacks
  bool finalized = false;    // the handle was collected
  bool closed = false;       // libuv is done with the poll handle; the fd is closed
};

// the callback and its async context; not inside a callback (they are in use there)
void ReleaseJs(Sub* s) {
  s->cb.Reset();
  delete s->ctx;
  s->ctx = nullptr;
}

void SubClosed(uv_handle_t* h) {
  Sub* s = static_cast<Sub*>(h->data);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->closed = true;
  if (s->finalized) {
    delete s;
    return;
  }
  Napi::HandleScope scope(Napi::Env(s->env));
  ReleaseJs(s);
}

// stops the callbacks at once (also from inside one); the poll handle, the fd and the callback go when
// libuv has closed the handle, on a later turn of the loop
void StopSub(Sub* s) {
  if (s->stopped) return;
  s->stopped = true;
  uv_poll_stop(&s->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), SubClosed);
}

void FreeSub(Napi::Env, Sub* s) {
  s->finalized = true;
  ReleaseJs(s);
  StopSub(s);
  if (s->closed) delete s;
}

// Reads every message waiting (up to 1 MiB a turn; the rest on the next), then calls back once with
// (bytes or null, errno): errno -ENOBUFS says the kernel dropped events because the receive buffer was
// full (what was lost must be found by a full scan); another errno is the poll's or recv's failure.
void SubReadable(uv_poll_t* h, int status, int events) {
  Sub* s = static_cast<Sub*>(h->data);
  if (s->stopped) return;
  std::vector<uint8_t> out;
  int err = 0;
  if (status < 0) {
    // libuv says EBADF for any POLLERR and stops the handle; a netlink socket's error is most often
    // ENOBUFS (the kernel dropped a multicast message: the buffer was full), read and cleared here
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == ENOBUFS) {
      err = -ENOBUFS;
      int ue = uv_poll_start(&s->poll, UV_READABLE, SubReadable);
      if (ue < 0) err = ue;
    } else {
      err = soerr ? -soerr : status;  // libuv's codes are negative errnos on Linux
    }
  }
  if (err == 0 || err == -ENOBUFS) {
    uint8_t buf[1 << 16];
    while (out.size() < (1u << 20)) {
      ssize_t r = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == ENOBUFS) {  // the socket overflowed: later messages may still be read
          err = -ENOBUFS;
          continue;
        }
        err = -errno;
        break;
      }
      if (r == 0) break;
      out.insert(out.end(), buf, buf + r);
    }
  }
  if (out.empty() && err == 0) return;
  Napi::Env env(s->env);
  Napi::HandleScope scope(env);
  Napi::Value data = out.empty() ? env.Null() : Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()).As<Napi::Value>();
  s->cb.MakeCallback(env.Global(), {data, Napi::Number::New(env, err)}, *s->ctx);
  // a callback that throws is an uncaught exception, as from any event of the loop
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

// subscribe(protocol, groups, callback, rcvbuf?) -> handle: a socket bound to the multicast groups (a
// bit mask, e.g. RTMGRP_LINK | RTMGRP_IPV4_IFADDR), read on the loop; callback(bytes | null, errno).
// rcvbuf: the receive buffer in bytes (default 1 MiB; the kernel drops events beyond it).
Napi::Value Subscribe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto intArg = [&](size_t i, const char* name, double lo, double hi, int64_t* v) {
    if (info.Length() <= i || !info[i].IsNumber()) return TypeErr(env, "subscribe", (std::string("argument ") + std::to_string(i) + " (" + name + ") must be a number").c_str());
    double d = info[i].As<Napi::Number>().DoubleValue();
    *v = static_cast<int64_t>(d);
    if (!(d >= lo && d <= hi) || static_cast<double>(*v) != d) {
      Napi::RangeError::New(env, std::string("subscribe: argument ") + std::to_string(i) + " (" + name + ") must be an integer " +
          std::to_string(static_cast<int64_t>(lo)) + ".." + std::to_string(static_cast<int64_t>(hi))).ThrowAsJavaScriptException();
      return false;
    }
    return true;
  };
  int64_t proto = 0, groups = 0, rcv = 1 << 20;
  if (!intArg(0, "protocol", 0, 31, &proto) || !intArg(1, "groups", 1, 4294967295.0, &groups)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsFunction()) {
    TypeErr(env, "subscribe", "argument 2 (callback) must be a function");
    return env.Undefined();
  }
  if (info.Length() > 3 && !info[3].IsUndefined() && !intArg(3, "rcvbuf", 1024, 64 << 20, &rcv)) return env.Undefined();
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    Napi::Error::New(env, "subscribe: no event loop").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto fail = [&](const char* step, int err, int fd) {
    if (fd >= 0) close(fd);
    Napi::Error e = Napi::Error::New(env, std::string("subscribe: ") + step + ": " + strerror(err));
    e.Set("errno", Napi::Number::New(env, -err));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  };
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, static_cast<int>(proto));
  if (fd < 0) return fail("socket(AF_NETLINK)", errno, -1);
  int r = static_cast<int>(rcv);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &r, sizeof r) < 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r, sizeof r);
  struct sockaddr_nl sa;
  memset(&sa, 0, sizeof sa);
  sa.nl_family = AF_NETLINK;
  sa.nl_groups = static_cast<uint32_t>(groups);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) return fail("bind", errno, fd);
  Sub* s = new Sub();
  s->env = env;
  s->fd = fd;
  s->poll.data = s;
  int ue = uv_poll_init(loop, &s->poll, fd);
  if (ue < 0) {
    delete s;
    return fail("uv_poll_init", -ue, fd);
  }
  s->cb = Napi::Persistent(info[2].As<Napi::Function>());
  s->ctx = new Napi::AsyncContext(env, "kbp:netlink-subscription");
  ue = uv_poll_start(&s->poll, UV_READABLE, SubReadable);
  uv_unref(reinterpret_cast<uv_handle_t*>(&s->poll));
  Napi::External<Sub> ext = Napi::External<Sub>::New(env, s, FreeSub);
  napi_type_tag_object(env, ext, &kSubTag);
  if (ue < 0) {
    StopSub(s);  // the handle's finalizer frees it
    Napi::Error e = Napi::Error::New(env, std::string("subscribe: uv_poll_start: ") + strerror(-ue));
    e.Set("errno", Napi::Number::New(env, ue));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return ext;
}

// unsubscribe(handle): no callback after it returns; the socket closes on the loop's next turn
Napi::Value Unsubscribe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool tagged = false;
  if (info.Length() < 1 || !info[0].IsExternal() || napi_check_object_type_tag(env, info[0], &kSubTag, &tagged) != napi_ok || !tagged) {
    TypeErr(env, "unsubscribe", "argument 0 (subscription) must be a handle from subscribe()");
    return env.Undefined();
  }
  StopSub(info[0].As<Napi::External<Sub>>().Data());
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("subscribe", Napi::Function::New(env, Subscribe));
  exports.Set("unsubscribe", Napi::Function::New(env, Unsubscribe));
  exports.Set("open", Napi::Function::New(env, Open));
  exports.Set("request", Napi::Function::New(env, Request));
  exports.Set("close", Napi::Function::New(env, Close));
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_netlink, Init)
