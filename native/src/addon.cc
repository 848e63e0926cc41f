// kbp_native: a thin Node-API layer over libbpf. Each exported function makes one libbpf (or bpf(2))
// call and reports failure as a negative errno; it never validates, encodes or formats. All of that
// is in src/dataplane/bpf/native.ts, the only module that loads this file. Buffers are allocated by
// the caller, so sizes are checked once, in TypeScript, with messages that name the argument.
#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace {

// ---- libbpf's log ------------------------------------------------------------------------------
// libbpf reports why a load failed (the verifier log above all) only through its print callback.
// We keep what it prints (warnings and info, not debug) so TypeScript can attach it to the error.
std::string g_log;
const size_t kLogMax = 1 << 20;  // keep the tail: the verifier's verdict is at the end

int PrintCallback(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof buf, fmt, copy);
  va_end(copy);
  if (n < 0) return n;
  if (static_cast<size_t>(n) < sizeof buf) {
    g_log.append(buf, n);
  } else {
    std::string big(n + 1, '\0');
    vsnprintf(&big[0], n + 1, fmt, args);
    g_log.append(big.data(), n);
  }
  if (g_log.size() > kLogMax) g_log.erase(0, g_log.size() - kLogMax);
  return n;
}

Napi::Value TakeLog(const Napi::CallbackInfo& info) {
  Napi::String s = Napi::String::New(info.Env(), g_log);
  g_log.clear();
  return s;
}

// ---- helpers -----------------------------------------------------------------------------------
inline int Err(int ret) { return ret < 0 ? (errno ? -errno : ret) : ret; }

inline Napi::Number Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

inline int I32(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }
inline uint32_t U32(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Uint32Value(); }

// A Buffer argument or null/undefined.
inline void* Data(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
  return info[i].As<Napi::Buffer<uint8_t>>().Data();
}
inline size_t Len(const Napi::CallbackInfo& info, size_t i) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return 0;
  return info[i].As<Napi::Buffer<uint8_t>>().Length();
}

// ---- objects -----------------------------------------------------------------------------------
// The bpf_object lives in a holder so that an explicit close and the garbage collector's finalizer
// cannot both free it.
struct ObjectHolder {
  bpf_object* obj;
};

void FinalizeObject(Napi::Env, ObjectHolder* h) {
  if (h->obj) bpf_object__close(h->obj);
  delete h;
}

ObjectHolder* Holder(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::External<ObjectHolder>>().Data();
}

// objectOpen(path, pinRoot | null) -> External | -errno
Napi::Value ObjectOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  std::string pinRoot;
  bool hasPin = info[1].IsString();
  if (hasPin) pinRoot = info[1].As<Napi::String>().Utf8Value();
  struct bpf_object_open_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  if (hasPin) opts.pin_root_path = pinRoot.c_str();
  errno = 0;
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  long err = libbpf_get_error(obj);
  if (err) return Num(env, err < 0 ? err : -err);
  return Napi::External<ObjectHolder>::New(env, new ObjectHolder{obj}, FinalizeObject);
}

Napi::Value ObjectLoad(const Napi::CallbackInfo& info) {
  ObjectHolder* h = Holder(info, 0);
  if (!h->obj) return Num(info.Env(), -EBADF);
  errno = 0;
  return Num(info.Env(), Err(bpf_object__load(h->obj)));
}

// objectClearPins(h): before load, makes LIBBPF_PIN_BY_NAME maps private (no pin, no reuse); without
// this, an object opened without a pin root would pin into libbpf's default, /sys/fs/bpf itself.
Napi::Value ObjectClearPins(const Napi::CallbackInfo& info) {
  ObjectHolder* h = Holder(info, 0);
  if (!h->obj) return Num(info.Env(), -EBADF);
  bpf_map* m;
  bpf_object__for_each_map(m, h->obj) {
    int ret = bpf_map__set_pin_path(m, nullptr);
    if (ret < 0) return Num(info.Env(), ret);
  }
  return Num(info.Env(), 0);
}

Napi::Value ObjectClose(const Napi::CallbackInfo& info) {
  ObjectHolder* h = Holder(info, 0);
  if (h->obj) bpf_object__close(h->obj);
  h->obj = nullptr;
  return info.Env().Undefined();
}

// objectMaps(h) -> [{ name, fd, type, keySize, valueSize, maxEntries, flags }]; fd is -1 before load
Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHolder* h = Holder(info, 0);
  Napi::Array out = Napi::Array::New(env);
  if (!h->obj) return out;
  uint32_t i = 0;
  bpf_map* m;
  bpf_object__for_each_map(m, h->obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_map__name(m));
    o.Set("fd", Num(env, bpf_map__fd(m)));
    o.Set("type", Num(env, bpf_map__type(m)));
    o.Set("keySize", Num(env, bpf_map__key_size(m)));
    o.Set("valueSize", Num(env, bpf_map__value_size(m)));
    o.Set("maxEntries", Num(env, bpf_map__max_entries(m)));
    o.Set("flags", Num(env, bpf_map__map_flags(m)));
    o.Set("pinPath", bpf_map__pin_path(m) ? Napi::Value(Napi::String::New(env, bpf_map__pin_path(m))) : env.Null());
    out.Set(i++, o);
  }
  return out;
}

// objectPrograms(h) -> [{ name, fd, type, section }]
Napi::Value ObjectPrograms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ObjectHolder* h = Holder(info, 0);
  Napi::Array out = Napi::Array::New(env);
  if (!h->obj) return out;
  uint32_t i = 0;
  bpf_program* p;
  bpf_object__for_each_program(p, h->obj) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", bpf_program__name(p));
    o.Set("fd", Num(env, bpf_program__fd(p)));
    o.Set("type", Num(env, bpf_program__type(p)));
    o.Set("section", bpf_program__section_name(p));
    out.Set(i++, o);
  }
  return out;
}

// ---- maps --------------------------------------------------------------------------------------
// mapLookup(fd, key, value, flags) -> 0 | -errno
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_map_lookup_elem_flags(I32(info, 0), Data(info, 1), Data(info, 2), U32(info, 3))));
}

// mapUpdate(fd, key, value, flags) -> 0 | -errno
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_map_update_elem(I32(info, 0), Data(info, 1), Data(info, 2), U32(info, 3))));
}

// mapDelete(fd, key) -> 0 | -errno
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_map_delete_elem(I32(info, 0), Data(info, 1))));
}

// mapGetNextKey(fd, key | null, next) -> 0 | -errno (-ENOENT after the last key)
Napi::Value MapGetNextKey(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_map_get_next_key(I32(info, 0), Data(info, 1), Data(info, 2))));
}

// mapUpdateBatch(fd, keys, values, count, elemFlags) -> [ret, processed]
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map_batch_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.elem_flags = U32(info, 4);
  uint32_t count = U32(info, 3);
  errno = 0;
  int ret = Err(bpf_map_update_batch(I32(info, 0), Data(info, 1), Data(info, 2), &count, &opts));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, count));
  return out;
}

// mapDeleteBatch(fd, keys, count) -> [ret, processed]
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map_batch_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  uint32_t count = U32(info, 2);
  errno = 0;
  int ret = Err(bpf_map_delete_batch(I32(info, 0), Data(info, 1), &count, &opts));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, count));
  return out;
}

// mapLookupBatch(fd, inBatch | null, outBatch, keys, values, count) -> [ret, processed]
// inBatch/outBatch are opaque cursors of the map's key size (hash maps use a bucket index, 4 bytes,
// but the kernel accepts key-sized buffers for every map type).
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map_batch_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  uint32_t count = U32(info, 5);
  errno = 0;
  int ret = Err(bpf_map_lookup_batch(I32(info, 0), Data(info, 1), Data(info, 2), Data(info, 3), Data(info, 4),
                                     &count, &opts));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, count));
  return out;
}

// mapCreate(type, name, keySize, valueSize, maxEntries, flags, innerMapFd) -> fd | -errno
Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  std::string name = info[1].As<Napi::String>();
  struct bpf_map_create_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.map_flags = U32(info, 5);
  int inner = I32(info, 6);
  if (inner >= 0) opts.inner_map_fd = inner;
  errno = 0;
  return Num(info.Env(), Err(bpf_map_create(static_cast<enum bpf_map_type>(U32(info, 0)), name.c_str(), U32(info, 2),
                                            U32(info, 3), U32(info, 4), &opts)));
}

// mapMmapWrite(fd, data, offset) -> 0 | -errno: copies data into a BPF_F_MMAPABLE array's values at a
// byte offset (a whole Maglev table in one memcpy instead of one update per element).
Napi::Value MapMmapWrite(const Napi::CallbackInfo& info) {
  size_t len = Len(info, 1);
  size_t off = U32(info, 2);
  long page = sysconf(_SC_PAGESIZE);
  size_t mapLen = ((off + len + page - 1) / page) * page;
  errno = 0;
  void* p = mmap(nullptr, mapLen, PROT_READ | PROT_WRITE, MAP_SHARED, I32(info, 0), 0);
  if (p == MAP_FAILED) return Num(info.Env(), -errno);
  memcpy(static_cast<char*>(p) + off, Data(info, 1), len);
  munmap(p, mapLen);
  return Num(info.Env(), 0);
}

// mapInfo(fd) -> { type, id, keySize, valueSize, maxEntries, flags, name } | -errno
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  uint32_t len = sizeof mi;
  errno = 0;
  int ret = Err(bpf_obj_get_info_by_fd(I32(info, 0), &mi, &len));
  if (ret < 0) return Num(env, ret);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Num(env, mi.type));
  o.Set("id", Num(env, mi.id));
  o.Set("keySize", Num(env, mi.key_size));
  o.Set("valueSize", Num(env, mi.value_size));
  o.Set("maxEntries", Num(env, mi.max_entries));
  o.Set("flags", Num(env, mi.map_flags));
  o.Set("name", Napi::String::New(env, mi.name));
  return o;
}

// progInfo(fd) -> { type, id, name } | -errno
Napi::Value ProgInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof pi);
  uint32_t len = sizeof pi;
  errno = 0;
  int ret = Err(bpf_obj_get_info_by_fd(I32(info, 0), &pi, &len));
  if (ret < 0) return Num(env, ret);
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Num(env, pi.type));
  o.Set("id", Num(env, pi.id));
  o.Set("name", Napi::String::New(env, pi.name));
  return o;
}

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  std::string path = info[0].As<Napi::String>();
  errno = 0;
  return Num(info.Env(), Err(bpf_obj_get(path.c_str())));
}

Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  std::string path = info[1].As<Napi::String>();
  errno = 0;
  return Num(info.Env(), Err(bpf_obj_pin(I32(info, 0), path.c_str())));
}

Napi::Value MapGetFdById(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_map_get_fd_by_id(U32(info, 0))));
}

Napi::Value ProgGetFdById(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_get_fd_by_id(U32(info, 0))));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(close(I32(info, 0))));
}

// ---- programs ----------------------------------------------------------------------------------
// progTestRun(fd, dataIn, dataOut | null, ctxIn | null, ctxOut | null, repeat)
//   -> [ret, retval, dataSizeOut, ctxSizeOut, durationNs]
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct bpf_test_run_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.data_in = Data(info, 1);
  opts.data_size_in = Len(info, 1);
  opts.data_out = Data(info, 2);
  opts.data_size_out = Len(info, 2);
  opts.ctx_in = Data(info, 3);
  opts.ctx_size_in = Len(info, 3);
  opts.ctx_out = Data(info, 4);
  opts.ctx_size_out = Len(info, 4);
  opts.repeat = I32(info, 5);
  errno = 0;
  int ret = Err(bpf_prog_test_run_opts(I32(info, 0), &opts));
  Napi::Array out = Napi::Array::New(env, 5);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, opts.retval));
  out.Set(2u, Num(env, opts.data_size_out));
  out.Set(3u, Num(env, opts.ctx_size_out));
  out.Set(4u, Num(env, opts.duration));
  return out;
}

void TcHook(const Napi::CallbackInfo& info, struct bpf_tc_hook* hook) {
  memset(hook, 0, sizeof *hook);
  hook->sz = sizeof *hook;
  hook->ifindex = I32(info, 0);
  hook->attach_point = U32(info, 1) == 1 ? BPF_TC_EGRESS : BPF_TC_INGRESS;
}

// tcHookCreate(ifindex, point 0=ingress 1=egress) -> 0 | -errno (-EEXIST when clsact is there)
Napi::Value TcHookCreate(const Napi::CallbackInfo& info) {
  struct bpf_tc_hook hook;
  TcHook(info, &hook);
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_hook_create(&hook)));
}

// tcHookDestroy(ifindex) -> 0 | -errno: removes the clsact qdisc with every filter on it
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  struct bpf_tc_hook hook;
  memset(&hook, 0, sizeof hook);
  hook.sz = sizeof hook;
  hook.ifindex = I32(info, 0);
  hook.attach_point = static_cast<enum bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_hook_destroy(&hook)));
}

void TcOpts(const Napi::CallbackInfo& info, size_t i, struct bpf_tc_opts* opts) {
  memset(opts, 0, sizeof *opts);
  opts->sz = sizeof *opts;
  opts->priority = U32(info, i);
  opts->handle = U32(info, i + 1);
}

// tcAttach(ifindex, point, progFd, priority, handle, replace) -> 0 | -errno
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  struct bpf_tc_hook hook;
  TcHook(info, &hook);
  struct bpf_tc_opts opts;
  TcOpts(info, 3, &opts);
  opts.prog_fd = I32(info, 2);
  if (info[5].ToBoolean()) opts.flags = BPF_TC_F_REPLACE;
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_attach(&hook, &opts)));
}

// tcDetach(ifindex, point, priority, handle) -> 0 | -errno
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  struct bpf_tc_hook hook;
  TcHook(info, &hook);
  struct bpf_tc_opts opts;
  TcOpts(info, 2, &opts);
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_detach(&hook, &opts)));
}

// tcQuery(ifindex, point, priority, handle) -> prog id | -errno (-ENOENT when nothing is there)
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  struct bpf_tc_hook hook;
  TcHook(info, &hook);
  struct bpf_tc_opts opts;
  TcOpts(info, 2, &opts);
  errno = 0;
  int ret = Err(bpf_tc_query(&hook, &opts));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(opts.prog_id));
}

// xdpAttach(ifindex, progFd, flags) -> 0 | -errno
Napi::Value XdpAttach(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_xdp_attach(I32(info, 0), I32(info, 1), U32(info, 2), nullptr)));
}

// xdpDetach(ifindex, flags) -> 0 | -errno
Napi::Value XdpDetach(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_xdp_detach(I32(info, 0), U32(info, 1), nullptr)));
}

// xdpQueryId(ifindex, flags) -> prog id (0 = none) | -errno
Napi::Value XdpQueryId(const Napi::CallbackInfo& info) {
  uint32_t id = 0;
  errno = 0;
  int ret = Err(bpf_xdp_query_id(I32(info, 0), I32(info, 1), &id));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(id));
}

// progAttach(progFd, targetFd, attachType, flags, replaceFd) -> 0 | -errno
// replaceFd >= 0 swaps that program for this one in one step (BPF_F_REPLACE, with BPF_F_ALLOW_MULTI).
Napi::Value ProgAttach(const Napi::CallbackInfo& info) {
  struct bpf_prog_attach_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.flags = U32(info, 3);
  int replace = I32(info, 4);
  if (replace >= 0) {
    opts.flags |= BPF_F_REPLACE;
    opts.replace_prog_fd = replace;
  }
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_attach_opts(I32(info, 0), I32(info, 1),
                                                  static_cast<enum bpf_attach_type>(U32(info, 2)), &opts)));
}

// progDetach(progFd, targetFd, attachType) -> 0 | -errno
Napi::Value ProgDetach(const Napi::CallbackInfo& info) {
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_detach2(I32(info, 0), I32(info, 1), static_cast<enum bpf_attach_type>(U32(info, 2)))));
}

// progQuery(targetFd, attachType, ids: Buffer of u32) -> count | -errno
Napi::Value ProgQuery(const Napi::CallbackInfo& info) {
  uint32_t count = Len(info, 2) / 4;
  uint32_t flags = 0;
  errno = 0;
  int ret = Err(bpf_prog_query(I32(info, 0), static_cast<enum bpf_attach_type>(U32(info, 1)), 0, &flags,
                               static_cast<uint32_t*>(Data(info, 2)), &count));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(count));
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  return Num(info.Env(), libbpf_num_possible_cpus());
}

Napi::Value StrError(const Napi::CallbackInfo& info) {
  char buf[256];
  libbpf_strerror(I32(info, 0), buf, sizeof buf);
  return Napi::String::New(info.Env(), buf);
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  Napi::Object at = Napi::Object::New(env);
  // the cgroup attach points the agent may use, by the names bpftool gives them
  at.Set("connect4", Num(env, BPF_CGROUP_INET4_CONNECT));
  at.Set("connect6", Num(env, BPF_CGROUP_INET6_CONNECT));
  at.Set("sendmsg4", Num(env, BPF_CGROUP_UDP4_SENDMSG));
  at.Set("sendmsg6", Num(env, BPF_CGROUP_UDP6_SENDMSG));
  at.Set("recvmsg4", Num(env, BPF_CGROUP_UDP4_RECVMSG));
  at.Set("recvmsg6", Num(env, BPF_CGROUP_UDP6_RECVMSG));
  at.Set("getpeername4", Num(env, BPF_CGROUP_INET4_GETPEERNAME));
  at.Set("getpeername6", Num(env, BPF_CGROUP_INET6_GETPEERNAME));
  at.Set("getsockname4", Num(env, BPF_CGROUP_INET4_GETSOCKNAME));
  at.Set("getsockname6", Num(env, BPF_CGROUP_INET6_GETSOCKNAME));
  at.Set("bind4", Num(env, BPF_CGROUP_INET4_BIND));
  at.Set("bind6", Num(env, BPF_CGROUP_INET6_BIND));
  at.Set("post_bind4", Num(env, BPF_CGROUP_INET4_POST_BIND));
  at.Set("post_bind6", Num(env, BPF_CGROUP_INET6_POST_BIND));
  at.Set("sock_create", Num(env, BPF_CGROUP_INET_SOCK_CREATE));
  at.Set("sock_release", Num(env, BPF_CGROUP_INET_SOCK_RELEASE));
  at.Set("sock_ops", Num(env, BPF_CGROUP_SOCK_OPS));
  at.Set("ingress", Num(env, BPF_CGROUP_INET_INGRESS));
  at.Set("egress", Num(env, BPF_CGROUP_INET_EGRESS));
  c.Set("attachTypes", at);
  c.Set("BPF_F_ALLOW_MULTI", Num(env, BPF_F_ALLOW_MULTI));
  c.Set("XDP_FLAGS_UPDATE_IF_NOEXIST", Num(env, XDP_FLAGS_UPDATE_IF_NOEXIST));
  c.Set("XDP_FLAGS_SKB_MODE", Num(env, XDP_FLAGS_SKB_MODE));
  c.Set("XDP_FLAGS_DRV_MODE", Num(env, XDP_FLAGS_DRV_MODE));
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(PrintCallback);
  // Kernel 5.11+ accounts BPF memory to the cgroup; no RLIMIT_MEMLOCK bump is needed, but libbpf 1.x
  // does it lazily by itself when required.
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New(env, fn, name))
  EXPORT("takeLog", TakeLog);
  EXPORT("objectOpen", ObjectOpen);
  EXPORT("objectLoad", ObjectLoad);
  EXPORT("objectClose", ObjectClose);
  EXPORT("objectClearPins", ObjectClearPins);
  EXPORT("objectMaps", ObjectMaps);
  EXPORT("objectPrograms", ObjectPrograms);
  EXPORT("mapLookup", MapLookup);
  EXPORT("mapUpdate", MapUpdate);
  EXPORT("mapDelete", MapDelete);
  EXPORT("mapGetNextKey", MapGetNextKey);
  EXPORT("mapUpdateBatch", MapUpdateBatch);
  EXPORT("mapDeleteBatch", MapDeleteBatch);
  EXPORT("mapLookupBatch", MapLookupBatch);
  EXPORT("mapCreate", MapCreate);
  EXPORT("mapInfo", MapInfo);
  EXPORT("mapMmapWrite", MapMmapWrite);
  EXPORT("progInfo", ProgInfo);
  EXPORT("objGet", ObjGet);
  EXPORT("objPin", ObjPin);
  EXPORT("mapGetFdById", MapGetFdById);
  EXPORT("progGetFdById", ProgGetFdById);
  EXPORT("closeFd", CloseFd);
  EXPORT("progTestRun", ProgTestRun);
  EXPORT("tcHookCreate", TcHookCreate);
  EXPORT("tcHookDestroy", TcHookDestroy);
  EXPORT("tcAttach", TcAttach);
  EXPORT("tcDetach", TcDetach);
  EXPORT("tcQuery", TcQuery);
  EXPORT("xdpAttach", XdpAttach);
  EXPORT("xdpDetach", XdpDetach);
  EXPORT("xdpQueryId", XdpQueryId);
  EXPORT("progAttach", ProgAttach);
  EXPORT("progDetach", ProgDetach);
  EXPORT("progQuery", ProgQuery);
  EXPORT("numPossibleCpus", NumPossibleCpus);
  EXPORT("strerror", StrError);
#undef EXPORT
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_native, Init)
