// kbp_native: a thin Node-API layer over libbpf. Each exported function makes one libbpf (or bpf(2))
// call and reports failure as a negative errno; encoding, policy and friendly messages are the
// wrappers' (src/dataplane/bpf/native/*.ts; native/addon.ts alone loads this file).
//
// The wrappers check every argument first, but this file does not trust them: no call from
// JavaScript, however wrong, may crash the process (issue 7). Every argument's type and range is
// checked here too (a TypeError or RangeError naming the method and the argument), handles carry a
// type tag, and a buffer the kernel writes into or reads from is checked against the map's own key
// and value sizes, read from the fd (BPF_OBJ_GET_INFO_BY_FD) on each call: that is the one extra
// system call a map method makes. Built with NAPI_DISABLE_CPP_EXCEPTIONS, so every check returns early.
#include <napi.h>
#include <v8.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <fcntl.h>
#include <malloc.h>
#include <memory>
#include <mutex>
#include <sched.h>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "maglev-fill.h"
#include "threads.h"

namespace {

// ---- libbpf's log ------------------------------------------------------------------------------
// libbpf reports why a load failed (the verifier log above all) only through its print callback.
// We keep what it prints (warnings and info, not debug) so TypeScript can attach it to the error.
std::string g_log;
// objectLoadAsync runs libbpf on a pool thread while the main thread may call libbpf too
std::mutex g_logMutex;
const size_t kLogMax = 1 << 20;  // keep the tail: the verifier's verdict is at the end

int PrintCallback(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(buf, sizeof buf, fmt, copy);
  va_end(copy);
  if (n < 0) return n;
  std::lock_guard<std::mutex> lock(g_logMutex);
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
  std::lock_guard<std::mutex> lock(g_logMutex);
  Napi::String s = Napi::String::New(info.Env(), g_log);
  g_log.clear();
  return s;
}

// ---- helpers -----------------------------------------------------------------------------------
inline int Err(int ret) { return ret < 0 ? (errno ? -errno : ret) : ret; }

inline Napi::Number Num(Napi::Env env, double v) { return Napi::Number::New(env, v); }

// ---- argument checks ---------------------------------------------------------------------------
// One Args per call: each getter checks one argument; the first failure throws (TypeError for a wrong
// type, RangeError for a wrong value or size) naming the method and the argument, and every later
// getter returns a harmless default. A method reads all its arguments, then returns if !ok().
struct ObjectHolder;
const napi_type_tag kObjectTag = {0x6b62707870726f78ULL, 0x626a6563745f6831ULL};  // "kbpxprox" "bject_h1"

struct BufArg {
  uint8_t* data = nullptr;
  size_t len = 0;
  bool present = false;  // false: null or undefined (where allowed)
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* method) : info_(info), method_(method) {}
  bool ok() const { return ok_; }
  Napi::Env env() const { return info_.Env(); }
  // an optional argument given (not missing, not undefined)
  bool Has(size_t i) const { return i < info_.Length() && !info_[i].IsUndefined(); }

  void TypeFail(size_t i, const char* name, const std::string& want) { Fail(false, i, name, want); }
  void RangeFail(size_t i, const char* name, const std::string& want) { Fail(true, i, name, want); }

  // an integral Number in [lo, hi]
  double Int(size_t i, const char* name, double lo, double hi) {
    if (!ok_) return 0;
    Napi::Value v = At(i);
    if (!v.IsNumber()) {
      TypeFail(i, name, "must be a number");
      return 0;
    }
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::trunc(d) || d < lo || d > hi) {
      RangeFail(i, name, "must be an integer in " + Fmt(lo) + ".." + Fmt(hi) + ", got " + Fmt(d));
      return 0;
    }
    return d;
  }
  int32_t I32(size_t i, const char* name, int32_t lo = INT32_MIN) { return static_cast<int32_t>(Int(i, name, lo, INT32_MAX)); }
  uint32_t U32(size_t i, const char* name) { return static_cast<uint32_t>(Int(i, name, 0, UINT32_MAX)); }
  // an fd: -1 allowed only where `optional`
  int Fd(size_t i, const char* name, bool optional = false) { return I32(i, name, optional ? -1 : 0); }

  bool Bool(size_t i, const char* name) {
    if (!ok_) return false;
    Napi::Value v = At(i);
    if (!v.IsBoolean()) {
      TypeFail(i, name, "must be a boolean");
      return false;
    }
    return v.As<Napi::Boolean>().Value();
  }

  // a string without NUL bytes (the library takes C strings)
  std::string Str(size_t i, const char* name, bool* present = nullptr) {
    if (!ok_) return std::string();
    Napi::Value v = At(i);
    if (present) {
      *present = !(v.IsNull() || v.IsUndefined());
      if (!*present) return std::string();
    }
    if (!v.IsString()) {
      TypeFail(i, name, present ? "must be a string or null" : "must be a string");
      return std::string();
    }
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.empty() || s.find('\0') != std::string::npos) {
      RangeFail(i, name, "must be a non-empty string without NUL characters");
      return std::string();
    }
    return s;
  }

  BufArg Buf(size_t i, const char* name, bool nullable) {
    BufArg b;
    if (!ok_) return b;
    Napi::Value v = At(i);
    if (nullable && (v.IsNull() || v.IsUndefined())) return b;
    if (!v.IsBuffer()) {
      TypeFail(i, name, nullable ? "must be a Buffer or null" : "must be a Buffer");
      return b;
    }
    Napi::Buffer<uint8_t> buf = v.As<Napi::Buffer<uint8_t>>();
    b.data = buf.Data();
    b.len = buf.Length();
    b.present = true;
    // a detached or empty buffer has no memory behind it: treat it as too short below
    if (b.data == nullptr) b.len = 0;
    return b;
  }

  // The buffer must hold at least `need` bytes (what the kernel reads or writes there).
  void AtLeast(size_t i, const char* name, const BufArg& b, uint64_t need, const char* why) {
    if (!ok_ || !b.present) return;
    if (b.len < need) RangeFail(i, name, "must be at least " + Fmt(static_cast<double>(need)) + " bytes (" + why + "), got " + Fmt(static_cast<double>(b.len)));
  }

  ObjectHolder* Holder(size_t i, const char* name);

 private:
  Napi::Value At(size_t i) const { return i < info_.Length() ? info_[i] : info_.Env().Undefined(); }

  static std::string Fmt(double d) {
    char buf[64];
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 1e18) snprintf(buf, sizeof buf, "%lld", static_cast<long long>(d));
    else snprintf(buf, sizeof buf, "%g", d);
    return buf;
  }

  void Fail(bool range, size_t i, const char* name, const std::string& want) {
    if (!ok_) return;
    ok_ = false;
    std::string msg = std::string(method_) + ": " + name + " (argument " + std::to_string(i + 1) + ") " + want;
    if (range) Napi::RangeError::New(info_.Env(), msg).ThrowAsJavaScriptException();
    else Napi::TypeError::New(info_.Env(), msg).ThrowAsJavaScriptException();
  }

  const Napi::CallbackInfo& info_;
  const char* method_;
  bool ok_ = true;
};

// What the kernel reads and writes for one element of a map, from the map's fd.
struct MapSizes {
  uint32_t type = 0, flags = 0, maxEntries = 0;
  uint64_t key = 0;
  uint64_t value = 0;  // as user space sees it: per-CPU maps hold one 8-byte-aligned copy per possible CPU
  uint64_t rawValue = 0;
};

inline bool PerCpu(uint32_t type) {
  return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
         type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

// 0, or -errno when fd is not a BPF map this process can read (EBADF, EINVAL): returned as the call's result.
int GetMapSizes(int fd, MapSizes* out) {
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  uint32_t len = sizeof mi;
  errno = 0;
  int ret = Err(bpf_obj_get_info_by_fd(fd, &mi, &len));
  if (ret < 0) return ret;
  // an fd of a program or link also answers BPF_OBJ_GET_INFO_BY_FD, with other fields: a map has a type
  if (len < offsetof(struct bpf_map_info, map_flags) + sizeof mi.map_flags || mi.type == BPF_MAP_TYPE_UNSPEC) return -EINVAL;
  out->type = mi.type;
  out->flags = mi.map_flags;
  out->maxEntries = mi.max_entries;
  out->key = mi.key_size;
  out->rawValue = mi.value_size;
  out->value = mi.value_size;
  if (PerCpu(mi.type)) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 0) return cpus;
    out->value = ((static_cast<uint64_t>(mi.value_size) + 7) & ~7ULL) * static_cast<uint64_t>(cpus);
  }
  return 0;
}

// ---- objects -----------------------------------------------------------------------------------
// The bpf_object lives in a holder so that an explicit close and the garbage collector's finalizer
// cannot both free it. The External carries a type tag: a handle from elsewhere is refused.
struct ObjectHolder {
  bpf_object* obj;
  // objectLoadAsync in flight: a pool thread uses obj, so no other call may touch it
  bool loading = false;
};

// a call on an object whose load runs on the thread pool: an Error, never a use of obj meanwhile
bool Loading(const Napi::CallbackInfo& info, ObjectHolder* h, const char* method) {
  if (!h->loading) return false;
  Napi::Error::New(info.Env(), std::string(method) + ": the object is being loaded (objectLoadAsync)").ThrowAsJavaScriptException();
  return true;
}

void FinalizeObject(Napi::Env, ObjectHolder* h) {
  // never while loading: the load's worker holds a reference to the handle
  if (h->obj) bpf_object__close(h->obj);
  delete h;
}

ObjectHolder* Args::Holder(size_t i, const char* name) {
  if (!ok_) return nullptr;
  Napi::Value v = At(i);
  if (!v.IsExternal() || !v.As<Napi::External<ObjectHolder>>().CheckTypeTag(&kObjectTag)) {
    TypeFail(i, name, "must be a handle returned by objectOpen");
    return nullptr;
  }
  ObjectHolder* h = v.As<Napi::External<ObjectHolder>>().Data();
  if (h == nullptr) TypeFail(i, name, "must be a handle returned by objectOpen");
  return h;
}

// objectOpen(path, pinRoot | null) -> External | -errno
Napi::Value ObjectOpen(const Napi::CallbackInfo& info) {
  Args a(info, "objectOpen");
  std::string path = a.Str(0, "path");
  bool hasPin = false;
  std::string pinRoot = a.Str(1, "pinRoot", &hasPin);
  if (!a.ok()) return info.Env().Undefined();
  Napi::Env env = info.Env();
  struct bpf_object_open_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  if (hasPin) opts.pin_root_path = pinRoot.c_str();
  errno = 0;
  bpf_object* obj = bpf_object__open_file(path.c_str(), &opts);
  long err = libbpf_get_error(obj);
  if (err) return Num(env, err < 0 ? err : -err);
  // without a pin root libbpf gives every LIBBPF_PIN_BY_NAME map its default pin path,
  // /sys/fs/bpf/<name>: a load would pin (or reuse) maps in the bpffs root itself, beside every
  // other agent's. No pin root here means no pin at all, whoever calls.
  if (!hasPin) {
    bpf_map* m;
    bpf_object__for_each_map(m, obj) {
      int ret = bpf_map__set_pin_path(m, nullptr);
      if (ret < 0) {
        bpf_object__close(obj);
        return Num(env, ret);
      }
    }
  }
  ObjectHolder* h = new ObjectHolder{obj};
  Napi::External<ObjectHolder> ext = Napi::External<ObjectHolder>::New(env, h, FinalizeObject);
  ext.TypeTag(&kObjectTag);
  return ext;
}

Napi::Value ObjectLoad(const Napi::CallbackInfo& info) {
  Args a(info, "objectLoad");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectLoad")) return info.Env().Undefined();
  if (!h->obj) return Num(info.Env(), -EBADF);
  errno = 0;
  return Num(info.Env(), Err(bpf_object__load(h->obj)));
}

// objectClearPins(h): before load, makes LIBBPF_PIN_BY_NAME maps private (no pin, no reuse); without
// this, an object opened without a pin root would pin into libbpf's default, /sys/fs/bpf itself.
Napi::Value ObjectClearPins(const Napi::CallbackInfo& info) {
  Args a(info, "objectClearPins");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectClearPins")) return info.Env().Undefined();
  if (!h->obj) return Num(info.Env(), -EBADF);
  bpf_map* m;
  bpf_object__for_each_map(m, h->obj) {
    int ret = bpf_map__set_pin_path(m, nullptr);
    if (ret < 0) return Num(info.Env(), ret);
  }
  return Num(info.Env(), 0);
}

// objectSetMaxEntries(h, name, n) -> 0 | -errno: before load, the capacity a map is created with
// (--bpf-map-max); a pinned map of another capacity is moved aside first (loader.ts, migrate.ts)
Napi::Value ObjectSetMaxEntries(const Napi::CallbackInfo& info) {
  Args a(info, "objectSetMaxEntries");
  ObjectHolder* h = a.Holder(0, "handle");
  std::string name = a.Str(1, "name");
  uint32_t n = a.U32(2, "maxEntries");
  if (!a.ok() || Loading(info, h, "objectSetMaxEntries")) return info.Env().Undefined();
  if (!h->obj) return Num(info.Env(), -EBADF);
  bpf_map* m = bpf_object__find_map_by_name(h->obj, name.c_str());
  if (!m) return Num(info.Env(), -ENOENT);
  return Num(info.Env(), bpf_map__set_max_entries(m, n));
}

Napi::Value ObjectClose(const Napi::CallbackInfo& info) {
  Args a(info, "objectClose");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectClose")) return info.Env().Undefined();
  if (h->obj) bpf_object__close(h->obj);
  h->obj = nullptr;
  return info.Env().Undefined();
}

// objectMaps(h) -> [{ name, fd, type, keySize, valueSize, maxEntries, flags }]; fd is -1 before load
Napi::Value ObjectMaps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "objectMaps");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectMaps")) return env.Undefined();
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
  Args a(info, "objectPrograms");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectPrograms")) return env.Undefined();
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
// Every map method reads the map's sizes from its fd first (GetMapSizes): a wrong fd returns that
// call's -errno, a buffer shorter than what the kernel reads or writes throws.

// The calls of one key and one value sized by the map, and flags: (fd, key, value, flags) -> 0 | -errno.
// A map without keys (a queue) takes null for the key.
template <typename Op>
Napi::Value KeyValueCall(const Napi::CallbackInfo& info, const char* method, Op op) {
  Args a(info, method);
  int fd = a.Fd(0, "fd");
  BufArg key = a.Buf(1, "key", true);
  BufArg value = a.Buf(2, "value", false);
  uint32_t flags = a.U32(3, "flags");
  if (!a.ok()) return info.Env().Undefined();
  MapSizes ms;
  int ret = GetMapSizes(fd, &ms);
  if (ret < 0) return Num(info.Env(), ret);
  if (ms.key > 0 && !key.present) a.TypeFail(1, "key", "must be a Buffer (the map has keys)");
  a.AtLeast(1, "key", key, ms.key, "the map's key size");
  a.AtLeast(2, "value", value, ms.value, "the map's value size");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(op(fd, key.data, value.data, flags)));
}

// mapLookup(fd, key, value, flags) -> 0 | -errno
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  return KeyValueCall(info, "mapLookup", [](int fd, uint8_t* k, uint8_t* v, uint32_t f) { return bpf_map_lookup_elem_flags(fd, k, v, f); });
}

// mapUpdate(fd, key, value, flags) -> 0 | -errno
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  return KeyValueCall(info, "mapUpdate", [](int fd, uint8_t* k, uint8_t* v, uint32_t f) { return bpf_map_update_elem(fd, k, v, f); });
}

// mapDelete(fd, key) -> 0 | -errno
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Args a(info, "mapDelete");
  int fd = a.Fd(0, "fd");
  BufArg key = a.Buf(1, "key", false);
  if (!a.ok()) return info.Env().Undefined();
  MapSizes ms;
  int ret = GetMapSizes(fd, &ms);
  if (ret < 0) return Num(info.Env(), ret);
  a.AtLeast(1, "key", key, ms.key, "the map's key size");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_map_delete_elem(fd, key.data)));
}

// mapGetNextKey(fd, key | null, next) -> 0 | -errno (-ENOENT after the last key)
Napi::Value MapGetNextKey(const Napi::CallbackInfo& info) {
  Args a(info, "mapGetNextKey");
  int fd = a.Fd(0, "fd");
  BufArg key = a.Buf(1, "key", true);
  BufArg next = a.Buf(2, "next", false);
  if (!a.ok()) return info.Env().Undefined();
  MapSizes ms;
  int ret = GetMapSizes(fd, &ms);
  if (ret < 0) return Num(info.Env(), ret);
  a.AtLeast(1, "key", key, ms.key, "the map's key size");
  a.AtLeast(2, "next", next, ms.key, "the map's key size");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_map_get_next_key(fd, key.data, next.data)));
}

Napi::Array Pair(Napi::Env env, int ret, uint32_t count) {
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, count));
  return out;
}

// The checks of a batch write: keys and values hold `count` elements of the map's sizes.
struct BatchArgs {
  int fd = -1;
  BufArg keys, values;
  uint32_t count = 0, elemFlags = 0;
  // update only: at most this many threads (mapUpdateBatch's optional last argument, default 1)
  uint32_t threads = 1;
  uint64_t keySize = 0, valueSize = 0;
};

// bpf_map_update_batch over count entries, split into up to `threads` contiguous slices written at
// once, each by its own call on its own thread (slices of at least kSpreadMin entries). A hash map's
// inserts are independent and locked per bucket, ~0.6 us each in the kernel: a first sync at 10,000
// Services inserts ~110,000 into lb_slots and as many into lb_members. Returns 0, or the error of
// the first slice (in order) that failed with *processed the entries before it plus those it wrote
// (entries of later slices may be written too).
const uint32_t kSpreadMin = 16384;
int UpdateBatchSpread(int fd, const uint8_t* keys, uint64_t keySize, const uint8_t* values, uint64_t valueSize, uint32_t count, uint32_t elemFlags,
                      uint32_t threads, uint32_t* processed) {
  struct Slice {
    uint32_t from, n, done;
    int ret;
  };
  uint32_t slices = std::max<uint32_t>(1, std::min<uint32_t>(threads, count / kSpreadMin));
  std::vector<Slice> sl(slices);
  for (uint32_t i = 0; i < slices; i++) {
    uint32_t from = static_cast<uint32_t>(static_cast<uint64_t>(count) * i / slices);
    uint32_t to = static_cast<uint32_t>(static_cast<uint64_t>(count) * (i + 1) / slices);
    sl[i] = Slice{from, to - from, 0, 0};
  }
  auto run = [&](Slice* x) {
    struct bpf_map_batch_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.sz = sizeof opts;
    opts.elem_flags = elemFlags;
    x->done = x->n;
    errno = 0;  // thread-local: Err reads this thread's
    x->ret = Err(bpf_map_update_batch(fd, keys + x->from * keySize, values + x->from * valueSize, &x->done, &opts));
  };
  // a slice whose thread cannot start (threads.h) is written here, after the first
  std::vector<kbp_threads::Worker> workers(slices - 1);
  std::vector<Slice*> here;
  for (uint32_t i = 1; i < slices; i++) {
    Slice* x = &sl[i];
    if (!workers[i - 1].Start([&run, x] { run(x); })) here.push_back(x);
  }
  run(&sl[0]);
  for (Slice* x : here) run(x);
  for (auto& w : workers) w.Join();
  for (const Slice& x : sl) {
    if (x.ret < 0) {
      *processed = x.from + std::min(x.done, x.n);
      return x.ret;
    }
  }
  *processed = count;
  return 0;
}

// mapUpdateBatch(fd, keys, values, count, elemFlags) and mapDeleteBatch(fd, keys, count): reads and
// checks the arguments; returns 0 (checked, or a JS exception is pending: see a.ok()) or -errno of the fd.
int ReadBatchArgs(Args& a, bool update, BatchArgs* b, int maxThreads = 64) {
  b->fd = a.Fd(0, "fd");
  b->keys = a.Buf(1, "keys", false);
  if (update) {
    b->values = a.Buf(2, "values", false);
    b->count = a.U32(3, "count");
    b->elemFlags = a.U32(4, "elemFlags");
    if (a.ok() && a.Has(5)) b->threads = static_cast<uint32_t>(a.Int(5, "threads", 1, maxThreads));
  } else {
    b->count = a.U32(2, "count");
  }
  if (!a.ok()) return 0;
  MapSizes ms;
  int ret = GetMapSizes(b->fd, &ms);
  if (ret < 0) return ret;
  b->keySize = ms.key;
  b->valueSize = ms.value;
  a.AtLeast(1, "keys", b->keys, ms.key * b->count, "count times the map's key size");
  if (update) a.AtLeast(2, "values", b->values, ms.value * b->count, "count times the map's value size");
  return 0;
}

// mapUpdateBatch(fd, keys, values, count, elemFlags[, threads]) -> [ret, processed]
Napi::Value MapUpdateBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapUpdateBatch");
  BatchArgs b;
  int bad = ReadBatchArgs(a, true, &b);
  if (!a.ok()) return env.Undefined();
  if (bad < 0) return Pair(env, bad, 0);
  uint32_t count = 0;
  int ret = UpdateBatchSpread(b.fd, b.keys.data, b.keySize, b.values.data, b.valueSize, b.count, b.elemFlags, b.threads, &count);
  return Pair(env, ret, count);
}

// One bpf_map_update_elem per entry of [from, to): counts written, existing (EEXIST) and failed, and
// the first failure.
struct EachCount {
  uint32_t updated = 0, existed = 0, failed = 0;
  int first = 0;
};
void UpdateEachRange(const BatchArgs& b, uint32_t from, uint32_t to, EachCount* c) {
  for (uint32_t i = from; i < to; i++) {
    errno = 0;  // thread-local: Err reads this thread's
    int r = Err(bpf_map_update_elem(b.fd, b.keys.data + i * b.keySize, b.values.data + i * b.valueSize, b.elemFlags));
    if (r == 0) {
      c->updated++;
    } else if (r == -EEXIST) {
      c->existed++;
    } else {
      if (c->failed++ == 0) c->first = r;
    }
  }
}

// mapUpdateEach(fd, keys, values, count, flags[, cpus]) -> [updated, existed, failed, firstError]:
// one bpf_map_update_elem per entry with `flags`, going on past an entry that fails. For BPF_NOEXIST
// copies (an upgrade's migration of conntrack, migrate.ts carry): the kernel's batch update takes no
// BPF_NOEXIST, and a call per entry from JavaScript cost ~9 us an entry (~12 us where it exists),
// 2-3 s for a full lb_ct while the new programs already run without the old flows.
// cpus > 1: the entries in even slices, each written by a thread pinned to one of the first `cpus`
// CPUs this thread may run on. For an LRU hash with BPF_F_NO_COMMON_LRU (lb_ct_syn): an insert takes
// a free element from the list of the CPU it runs on and, that list empty, evicts from it, so the
// inserts of one thread hold at most capacity / possible CPUs entries and evict the ones before (each
// counted as written). A slice whose thread cannot start (threads.h) is written here, unpinned.
Napi::Value MapUpdateEach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapUpdateEach");
  BatchArgs b;
  int bad = ReadBatchArgs(a, true, &b, CPU_SETSIZE);
  if (!a.ok()) return env.Undefined();
  EachCount total;
  if (bad < 0) {
    total.failed = b.count;
    total.first = bad;
  } else {
    std::vector<int> cpus;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (b.threads > 1 && b.count > 1 && sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
      for (int c = 0; c < CPU_SETSIZE && cpus.size() < b.threads; c++) {
        if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
      }
    }
    uint32_t slices = std::max<uint32_t>(1, std::min<uint32_t>(static_cast<uint32_t>(cpus.size()), b.count));
    std::vector<EachCount> counts(slices);
    auto from = [&](uint32_t i) { return static_cast<uint32_t>(static_cast<uint64_t>(b.count) * i / slices); };
    if (slices == 1) {
      UpdateEachRange(b, 0, b.count, &counts[0]);
    } else {
      std::vector<kbp_threads::Worker> workers(slices);
      std::vector<uint32_t> here;
      for (uint32_t i = 0; i < slices; i++) {
        int cpu = cpus[i];
        EachCount* c = &counts[i];
        uint32_t lo = from(i), hi = from(i + 1);
        bool started = workers[i].Start([&b, cpu, c, lo, hi] {
          cpu_set_t one;
          CPU_ZERO(&one);
          CPU_SET(cpu, &one);
          pthread_setaffinity_np(pthread_self(), sizeof one, &one);  // refused: written where it runs
          UpdateEachRange(b, lo, hi, c);
        });
        if (!started) here.push_back(i);
      }
      for (uint32_t i : here) UpdateEachRange(b, from(i), from(i + 1), &counts[i]);
      for (auto& w : workers) w.Join();
    }
    for (const EachCount& c : counts) {
      total.updated += c.updated;
      total.existed += c.existed;
      if (c.failed && total.failed == 0) total.first = c.first;
      total.failed += c.failed;
    }
  }
  Napi::Array out = Napi::Array::New(env, 4);
  out.Set(0u, Num(env, total.updated));
  out.Set(1u, Num(env, total.existed));
  out.Set(2u, Num(env, total.failed));
  out.Set(3u, Num(env, total.first));
  return out;
}

// mapDeleteBatch(fd, keys, count) -> [ret, processed]
Napi::Value MapDeleteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapDeleteBatch");
  BatchArgs b;
  int bad = ReadBatchArgs(a, false, &b);
  if (!a.ok()) return env.Undefined();
  if (bad < 0) return Pair(env, bad, 0);
  struct bpf_map_batch_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  uint32_t count = b.count;
  errno = 0;
  int ret = Err(bpf_map_delete_batch(b.fd, b.keys.data, &count, &opts));
  return Pair(env, ret, count);
}

// mapLookupBatch(fd, inBatch | null, outBatch, keys, values, count) -> [ret, processed]
// inBatch/outBatch are opaque cursors: hash maps use a u32 bucket index, arrays a key; the kernel
// reads and writes max(4, key size) bytes at most.
Napi::Value MapLookupBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapLookupBatch");
  int fd = a.Fd(0, "fd");
  BufArg inBatch = a.Buf(1, "inBatch", true);
  BufArg outBatch = a.Buf(2, "outBatch", false);
  BufArg keys = a.Buf(3, "keys", false);
  BufArg values = a.Buf(4, "values", false);
  uint32_t count = a.U32(5, "count");
  if (!a.ok()) return env.Undefined();
  MapSizes ms;
  int bad = GetMapSizes(fd, &ms);
  if (bad < 0) return Pair(env, bad, 0);
  uint64_t cursor = ms.key > 4 ? ms.key : 4;
  a.AtLeast(1, "inBatch", inBatch, cursor, "max(4, the map's key size)");
  a.AtLeast(2, "outBatch", outBatch, cursor, "max(4, the map's key size)");
  a.AtLeast(3, "keys", keys, ms.key * count, "count times the map's key size");
  a.AtLeast(4, "values", values, ms.value * count, "count times the map's value size");
  if (!a.ok()) return env.Undefined();
  struct bpf_map_batch_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  errno = 0;
  int ret = Err(bpf_map_lookup_batch(fd, inBatch.data, outBatch.data, keys.data, values.data, &count, &opts));
  return Pair(env, ret, count);
}

// mapCreate(type, name, keySize, valueSize, maxEntries, flags, innerMapFd) -> fd | -errno
Napi::Value MapCreate(const Napi::CallbackInfo& info) {
  Args a(info, "mapCreate");
  uint32_t type = a.U32(0, "type");
  std::string name = a.Str(1, "name");
  uint32_t keySize = a.U32(2, "keySize");
  uint32_t valueSize = a.U32(3, "valueSize");
  uint32_t maxEntries = a.U32(4, "maxEntries");
  uint32_t flags = a.U32(5, "flags");
  int inner = a.Fd(6, "innerMapFd", true);
  if (!a.ok()) return info.Env().Undefined();
  struct bpf_map_create_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.map_flags = flags;
  if (inner >= 0) opts.inner_map_fd = inner;
  errno = 0;
  return Num(info.Env(), Err(bpf_map_create(static_cast<enum bpf_map_type>(type), name.c_str(), keySize, valueSize, maxEntries, &opts)));
}

// /proc/self/mem of this process, for CopyIntoMapping: -1 when it cannot be written (a kernel built or
// booted with proc_mem.force_override=never, a sandbox without /proc), then memcpy serves. Reopened
// after a fork (the fd names the mm of the process that opened it).
int g_procMem = -1;
pid_t g_procMemPid = 0;
bool g_procMemBroken = false;

int ProcMem() {
  pid_t pid = getpid();
  // KBP_ADDON_NO_PROC_MEM set: memcpy only, as on a kernel that refuses the write (tests the fallback)
  if (g_procMemBroken || getenv("KBP_ADDON_NO_PROC_MEM") != nullptr) return -1;
  if (g_procMemPid != pid) {
    if (g_procMem >= 0 && g_procMemPid != 0) close(g_procMem);
    g_procMem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    g_procMemPid = pid;
    if (g_procMem < 0) g_procMemBroken = true;
  }
  return g_procMem;
}

// Copies len bytes into a fresh shared mapping of a BPF array at dst. The first write to each page
// through a new user mapping is what a copy costs on some hypervisors (this VM: ~7 us a page,
// 100-150 ms of CPU for the 64 MiB of Maglev slots at 10,000 Services, whatever populate flags ask),
// while the kernel writes the same pages through its own mapping of them at memory speed: a write
// to /proc/self/mem at dst's address does that (~30 ms for the same 64 MiB, measured with a C probe).
// Any failure falls back to memcpy for what is left.
void CopyIntoMapping(char* dst, const uint8_t* src, size_t len) {
  size_t done = 0;
  int mem = ProcMem();
  while (mem >= 0 && done < len) {
    ssize_t w = pwrite(mem, src + done, len - done, static_cast<off_t>(reinterpret_cast<uintptr_t>(dst + done)));
    if (w > 0) {
      done += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    // refused (EPERM, EACCES, EIO): not tried again in this process
    g_procMemBroken = true;
    break;
  }
  if (done < len) memcpy(dst + done, src + done, len - done);
}

// mapMmapWrite(fd, data, offset[, or]) -> 0 | -errno: copies data into a BPF_F_MMAPABLE array's values at a
// byte offset (a whole Maglev table in one copy, CopyIntoMapping, instead of one update per element). Only a
// mappable BPF array, and only within its values: a mapping of anything else could fault on the copy.
// With or true, data's non-zero 8-byte words are ORed into the array's with an atomic OR each (the
// words of a bitmap the programs set bits of at the same time: lb_rev_filter); offset and length 8-aligned.
Napi::Value MapMmapWrite(const Napi::CallbackInfo& info) {
  Args a(info, "mapMmapWrite");
  int fd = a.Fd(0, "fd");
  BufArg data = a.Buf(1, "data", false);
  uint32_t off32 = a.U32(2, "offset");
  bool orWords = info.Length() > 3 && a.Bool(3, "or");
  if (!a.ok()) return info.Env().Undefined();
  if (orWords && ((off32 | data.len) & 7)) return Num(info.Env(), -EINVAL);
  MapSizes ms;
  int bad = GetMapSizes(fd, &ms);
  if (bad < 0) return Num(info.Env(), bad);
  if (ms.type != BPF_MAP_TYPE_ARRAY || !(ms.flags & BPF_F_MMAPABLE)) return Num(info.Env(), -EINVAL);
  uint64_t size = static_cast<uint64_t>(ms.maxEntries) * ((ms.rawValue + 7) & ~7ULL);
  uint64_t off = off32, len = data.len;
  if (off + len > size) {
    a.RangeFail(2, "offset", "plus the length of data must be at most the array's " + std::to_string(size) + " bytes of values");
    return info.Env().Undefined();
  }
  if (len == 0) return Num(info.Env(), 0);
  // only the pages the data lands on: mapping a 64 MiB array whole costs milliseconds per write
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t first = off / page * page;
  size_t mapLen = ((off + len - first + page - 1) / page) * page;
  errno = 0;
  void* p = mmap(nullptr, mapLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(first));
  if (p == MAP_FAILED) return Num(info.Env(), -errno);
  if (orWords) {
    uint64_t* dst = reinterpret_cast<uint64_t*>(static_cast<char*>(p) + (off - first));
    const uint8_t* src = data.data;
    for (uint64_t i = 0; i < len / 8; i++) {
      uint64_t w;
      memcpy(&w, src + i * 8, 8);
      if (w) __atomic_fetch_or(&dst[i], w, __ATOMIC_SEQ_CST);
    }
  } else {
    CopyIntoMapping(static_cast<char*>(p) + (off - first), data.data, len);
  }
  munmap(p, mapLen);
  return Num(info.Env(), 0);
}

// ---- the Maglev fill on background threads ------------------------------------------------------
// A full sync's Maglev tables (10,000 of ~1,600 slots at 10,000 Services: ~250 ms of CPU) are filled
// and copied into lb_maglev_slots by threads of their own while the main thread goes on with the
// apply's other writes (lb_slots, lb_revnat, the frontends' names); the main thread joins them (and
// takes what chunks are left) before any frontend may point at a table. Memory stays bounded: each
// thread fills one reused chunk (512 KiB) of adjacent regions and copies it (CopyIntoMapping) before the next.
const napi_type_tag kFillTag = {0x6b62707866696c6cULL, 0x5f6a6f625f763031ULL};  // "kbpxfill" "_job_v01"
// 512 KiB a thread: the largest region (LB_MAGLEV_M_MAX 131071, padded), and little fresh memory to
// touch (a page's first write costs ~7-13 us on this VM, docs/perf-log.md, p11full)
const uint32_t kFillChunkSlots = 1u << 17;

struct FillRegion {
  uint32_t first, n, m, off, size;  // members in h1/h2/ids; M; first slot and slots of its region
};

// A window of the map the job maps for as long as a thread writes in it: consecutive chunks spanning
// at most the job's window (32 MiB by default). Mapped by the first thread to reach one of its chunks,
// unmapped by the one that finishes its last, so at most a window or two per thread are mapped at a
// time. The mapping is what the process's RSS counts (the map's pages, inserted at mmap: a mapping of
// the whole span, ~760 MiB at 100,000 Services, took the agent's peak RSS from 1.3 to 1.95 GiB), and
// a mapping per chunk made every thread's mmap and munmap (the mm's lock held for writing, a TLB
// flush of every CPU running the process) contend with the main thread's page faults: a window is a
// few mmaps per job.
struct FillWindow {
  uint64_t mapFirst = 0;  // the byte offset in the map where the window's mapping starts (page-aligned)
  size_t mapLen = 0;
  std::mutex mu;
  char* mapping = nullptr;  // under mu
  bool failed = false;      // under mu: its mmap failed (the job's err says why)
  std::atomic<size_t> left{0};  // chunks of the window not yet done
};

struct FillJob {
  int fd = -1;  // a dup of the map's fd, the job's own for its life (windows are mapped late)
  std::vector<uint32_t> h1, h2, ids;
  std::vector<FillRegion> regions;                      // by offset
  std::vector<std::pair<size_t, size_t>> chunks;        // [from, to) of regions, adjacent, <= kFillChunkSlots
  std::vector<uint32_t> chunkWindow;                    // per chunk, its window
  std::vector<std::unique_ptr<FillWindow>> windows;
  std::atomic<size_t> next{0};
  std::atomic<int> err{0};  // the first -errno of a window's mmap: its chunks were not written
  std::vector<kbp_threads::Worker> workers;
  bool joined = false;

  // the caller's scratch for Step (the main thread's share)
  std::vector<uint32_t> buf, cur, skip;

  char* Map(FillWindow& w) {
    std::lock_guard<std::mutex> lock(w.mu);
    if (!w.mapping && !w.failed) {
      void* p = mmap(nullptr, w.mapLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(w.mapFirst));
      if (p == MAP_FAILED) {
        int e = -errno;
        int none = 0;
        err.compare_exchange_strong(none, e ? e : -ENOMEM);
        w.failed = true;
      } else {
        w.mapping = static_cast<char*>(p);
      }
    }
    return w.mapping;
  }

  void Done(FillWindow& w) {
    if (w.left.fetch_sub(1) != 1) return;
    std::lock_guard<std::mutex> lock(w.mu);
    if (w.mapping) munmap(w.mapping, w.mapLen);
    w.mapping = nullptr;
  }

  // fills chunk c into out and copies it into the map (nothing can fail but its window's mmap: every
  // argument was checked, and CopyIntoMapping falls back to memcpy)
  void Chunk(size_t c, std::vector<uint32_t>& out, std::vector<uint32_t>& cur, std::vector<uint32_t>& skip) {
    FillWindow& w = *windows[chunkWindow[c]];
    char* mapping = Map(w);
    if (mapping) {
      const FillRegion* r = regions.data() + chunks[c].first;
      const FillRegion* end = regions.data() + chunks[c].second;
      const uint32_t start = r->off;
      const uint32_t slots = end[-1].off + end[-1].size - start;
      out.resize(kFillChunkSlots);
      for (; r < end; r++) {
        uint32_t* at = out.data() + (r->off - start);
        kbp_maglev::FillOne(h1.data(), h2.data(), ids.data(), r->first, r->n, r->m, at, cur, skip);
        std::fill(at + r->m, at + r->size, 0u);
      }
      const uint64_t off = static_cast<uint64_t>(start) * 4, len = static_cast<uint64_t>(slots) * 4;
      CopyIntoMapping(mapping + (off - w.mapFirst), reinterpret_cast<const uint8_t*>(out.data()), len);
    }
    Done(w);
  }

  void Work() {
    std::vector<uint32_t> out, cur, skip;
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) Chunk(c, out, cur, skip);
  }

  // one chunk on the caller's thread: false when none was left to take
  bool Step() {
    if (joined) return false;
    size_t c = next.fetch_add(1);
    if (c >= chunks.size()) return false;
    Chunk(c, buf, cur, skip);
    return true;
  }

  // 0, or the first -errno of a window's mmap (its slots were not written)
  int Join() {
    if (!joined) {
      Work();  // the caller takes what is left
      for (auto& w : workers) w.Join();
      workers.clear();
      joined = true;
      for (auto& w : windows) {
        if (w->mapping) munmap(w->mapping, w->mapLen);  // none left when every chunk ran; kept safe anyway
        w->mapping = nullptr;
      }
      if (fd >= 0) close(fd);
      fd = -1;
    }
    return err.load();
  }
};

void FinalizeFill(Napi::Env, FillJob* job) {
  job->Join();  // never free memory threads still read
  delete job;
}

// mapMaglevFillStart(fd, h1, h2, ids, regions, threads) -> External (the job) | -errno
//   fd:      a BPF_F_MMAPABLE array of u32 slots (lb_maglev_slots)
//   h1, h2, ids: Buffers of u32 per member (maglev-native.ts's fill: members of a table contiguous)
//   regions: Buffer of 5 u32 per table, ordered by offset: first member, member count n, M (a prime),
//            the region's first slot and its size in slots (>= M; slots past M are written 0)
//   threads: background threads (0: all of it at mapMaglevFillWait, on the caller's thread)
//   windowSlots (optional, default 2^23: 32 MiB): the most of the map mapped for one window (FillWindow)
// Every argument is checked before a thread starts. The inputs are copied: the job owns what it reads.
Napi::Value MapMaglevFillStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapMaglevFillStart");
  int fd = a.Fd(0, "fd");
  BufArg h1 = a.Buf(1, "h1", false), h2 = a.Buf(2, "h2", false), ids = a.Buf(3, "ids", false), regs = a.Buf(4, "regions", false);
  uint32_t threads = static_cast<uint32_t>(a.Int(5, "threads", 0, 64));
  uint32_t windowSlots = info.Length() > 6 ? a.U32(6, "windowSlots") : (1u << 23);
  if (!a.ok()) return env.Undefined();
  if (h1.len % 4 || h2.len != h1.len || ids.len != h1.len) {
    a.RangeFail(1, "h1", "h2 and ids must be Buffers of u32 of the same length");
    return env.Undefined();
  }
  if (regs.len % 20) {
    a.RangeFail(4, "regions", "must hold 5 u32 per table");
    return env.Undefined();
  }
  MapSizes ms;
  int bad = GetMapSizes(fd, &ms);
  if (bad < 0) return Num(env, bad);
  if (ms.type != BPF_MAP_TYPE_ARRAY || !(ms.flags & BPF_F_MMAPABLE)) return Num(env, -EINVAL);
  const uint64_t mapSlots = static_cast<uint64_t>(ms.maxEntries) * ((ms.rawValue + 7) & ~7ULL) / 4;
  std::unique_ptr<FillJob> job(new FillJob());
  const size_t members = h1.len / 4;
  job->h1.resize(members);
  job->h2.resize(members);
  job->ids.resize(members);
  memcpy(job->h1.data(), h1.data, h1.len);
  memcpy(job->h2.data(), h2.data, h2.len);
  memcpy(job->ids.data(), ids.data, ids.len);
  job->regions.resize(regs.len / 20);
  memcpy(job->regions.data(), regs.data, regs.len);
  uint64_t prevEnd = 0;
  for (size_t k = 0; k < job->regions.size(); k++) {
    const FillRegion& r = job->regions[k];
    std::string why;
    if (r.n < 1) why = "has no members";
    else if (static_cast<uint64_t>(r.first) + r.n > members) why = "names members past the end of h1";
    else if (r.n > r.m) why = "has more members than slots";
    else if (r.m > kFillChunkSlots || r.size < r.m || r.size > kFillChunkSlots) why = "has a region smaller than M or larger than a chunk";
    else if (!kbp_maglev::IsPrime(r.m)) why = "has a size M that is not prime";
    else if (r.off < prevEnd) why = "overlaps the region before it (regions go by offset)";
    else if (static_cast<uint64_t>(r.off) + r.size > mapSlots) why = "ends past the end of the map";
    else if (std::find(job->ids.begin() + r.first, job->ids.begin() + r.first + r.n, 0u) != job->ids.begin() + r.first + r.n) why = "has a member of id 0";
    if (!why.empty()) {
      a.RangeFail(4, "regions", "table " + std::to_string(k) + " " + why);
      return env.Undefined();
    }
    prevEnd = static_cast<uint64_t>(r.off) + r.size;
  }
  for (size_t i = 0; i < job->regions.size();) {
    size_t j = i + 1;
    uint64_t end = static_cast<uint64_t>(job->regions[i].off) + job->regions[i].size;
    while (j < job->regions.size() && job->regions[j].off == end && end + job->regions[j].size - job->regions[i].off <= kFillChunkSlots)
      end += job->regions[j++].size;
    job->chunks.emplace_back(i, j);
    i = j;
  }
  // windows: consecutive chunks spanning at most windowSlots (a chunk alone when it is larger)
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  job->chunkWindow.resize(job->chunks.size());
  for (size_t c = 0; c < job->chunks.size();) {
    const uint64_t from = job->regions[job->chunks[c].first].off;
    size_t d = c + 1;
    auto endOf = [&](size_t k) {
      const FillRegion& last = job->regions[job->chunks[k].second - 1];
      return static_cast<uint64_t>(last.off) + last.size;
    };
    while (d < job->chunks.size() && endOf(d) - from <= windowSlots) d++;
    std::unique_ptr<FillWindow> w(new FillWindow());
    w->mapFirst = from * 4 / page * page;
    w->mapLen = ((endOf(d - 1) * 4 - w->mapFirst + page - 1) / page) * page;
    w->left.store(d - c);
    for (size_t k = c; k < d; k++) job->chunkWindow[k] = static_cast<uint32_t>(job->windows.size());
    job->windows.push_back(std::move(w));
    c = d;
  }
  if (!job->chunks.empty()) {
    errno = 0;
    job->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (job->fd < 0) return Num(env, -errno);
    // the first window here: a map that cannot be mapped fails the start, before any thread
    if (!job->Map(*job->windows[0])) {
      close(job->fd);
      return Num(env, job->err.load());
    }
  }
  ProcMem();  // opened here, on this thread, before any worker copies through it
  size_t nt = std::min<size_t>(threads, job->chunks.size());
  // a thread that cannot start (threads.h) leaves its chunks to the others and to the joining thread
  job->workers.resize(nt);
  FillJob* j = job.get();
  for (size_t t = 0; t < nt; t++) {
    if (!job->workers[t].Start([j] { j->Work(); })) break;
  }
  Napi::External<FillJob> ext = Napi::External<FillJob>::New(env, job.release(), FinalizeFill);
  ext.TypeTag(&kFillTag);
  return ext;
}

// mapMaglevFillStep(job) -> boolean: fills and copies one chunk no thread has begun, on the caller's
// thread (an event loop's turn, not the whole fill); false when none was left.
Napi::Value MapMaglevFillStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal() || !info[0].As<Napi::External<FillJob>>().CheckTypeTag(&kFillTag)) {
    Napi::TypeError::New(env, "mapMaglevFillStep: job (argument 1) must be a handle from mapMaglevFillStart").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Boolean::New(env, info[0].As<Napi::External<FillJob>>().Data()->Step());
}

// mapMaglevFillWait(job) -> 0 | -errno: takes the chunks no thread has begun, waits for the threads (the
// same again on the same job); -errno when a window of the map could not be mapped (its slots unwritten).
Napi::Value MapMaglevFillWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsExternal() || !info[0].As<Napi::External<FillJob>>().CheckTypeTag(&kFillTag)) {
    Napi::TypeError::New(env, "mapMaglevFillWait: job (argument 1) must be a handle from mapMaglevFillStart").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Num(env, info[0].As<Napi::External<FillJob>>().Data()->Join());
}

// mapInfo(fd) -> { type, id, keySize, valueSize, maxEntries, flags, name } | -errno
Napi::Value MapInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "mapInfo");
  int fd = a.Fd(0, "fd");
  if (!a.ok()) return env.Undefined();
  struct bpf_map_info mi;
  memset(&mi, 0, sizeof mi);
  uint32_t len = sizeof mi;
  errno = 0;
  int ret = Err(bpf_obj_get_info_by_fd(fd, &mi, &len));
  if (ret < 0) return Num(env, ret);
  mi.name[sizeof mi.name - 1] = '\0';
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
  Args a(info, "progInfo");
  int fd = a.Fd(0, "fd");
  if (!a.ok()) return env.Undefined();
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof pi);
  uint32_t len = sizeof pi;
  errno = 0;
  int ret = Err(bpf_obj_get_info_by_fd(fd, &pi, &len));
  if (ret < 0) return Num(env, ret);
  pi.name[sizeof pi.name - 1] = '\0';
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", Num(env, pi.type));
  o.Set("id", Num(env, pi.id));
  o.Set("name", Napi::String::New(env, pi.name));
  return o;
}

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Args a(info, "objGet");
  std::string path = a.Str(0, "path");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_obj_get(path.c_str())));
}

Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Args a(info, "objPin");
  int fd = a.Fd(0, "fd");
  std::string path = a.Str(1, "path");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_obj_pin(fd, path.c_str())));
}

Napi::Value MapGetFdById(const Napi::CallbackInfo& info) {
  Args a(info, "mapGetFdById");
  uint32_t id = a.U32(0, "id");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_map_get_fd_by_id(id)));
}

Napi::Value ProgGetFdById(const Napi::CallbackInfo& info) {
  Args a(info, "progGetFdById");
  uint32_t id = a.U32(0, "id");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_get_fd_by_id(id)));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Args a(info, "closeFd");
  int fd = a.Fd(0, "fd");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(close(fd)));
}

// ---- programs ----------------------------------------------------------------------------------
// progTestRun(fd, dataIn, dataOut | null, ctxIn | null, ctxOut | null, repeat)
//   -> [ret, retval, dataSizeOut, ctxSizeOut, durationNs]
// Every buffer goes with its length: the kernel writes no more than data_size_out / ctx_size_out.
Napi::Value ProgTestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "progTestRun");
  int fd = a.Fd(0, "fd");
  BufArg dataIn = a.Buf(1, "dataIn", false);
  BufArg dataOut = a.Buf(2, "dataOut", true);
  BufArg ctxIn = a.Buf(3, "ctxIn", true);
  BufArg ctxOut = a.Buf(4, "ctxOut", true);
  uint32_t repeat = a.U32(5, "repeat");
  if (!a.ok()) return env.Undefined();
  if (dataIn.len > UINT32_MAX || dataOut.len > UINT32_MAX || ctxIn.len > UINT32_MAX || ctxOut.len > UINT32_MAX) {
    a.RangeFail(1, "dataIn", "and the other buffers must be smaller than 4 GiB");
    return env.Undefined();
  }
  struct bpf_test_run_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.data_in = dataIn.data;
  opts.data_size_in = dataIn.len;
  opts.data_out = dataOut.len ? dataOut.data : nullptr;
  opts.data_size_out = dataOut.len;
  opts.ctx_in = ctxIn.len ? ctxIn.data : nullptr;
  opts.ctx_size_in = ctxIn.len;
  opts.ctx_out = ctxOut.len ? ctxOut.data : nullptr;
  opts.ctx_size_out = ctxOut.len;
  opts.repeat = repeat;
  errno = 0;
  int ret = Err(bpf_prog_test_run_opts(fd, &opts));
  Napi::Array out = Napi::Array::New(env, 5);
  out.Set(0u, Num(env, ret));
  out.Set(1u, Num(env, opts.retval));
  out.Set(2u, Num(env, opts.data_size_out));
  out.Set(3u, Num(env, opts.ctx_size_out));
  out.Set(4u, Num(env, opts.duration));
  return out;
}

void TcHook(Args& a, struct bpf_tc_hook* hook) {
  memset(hook, 0, sizeof *hook);
  hook->sz = sizeof *hook;
  hook->ifindex = a.I32(0, "ifindex", 1);
  uint32_t point = static_cast<uint32_t>(a.Int(1, "point", 0, 1));
  hook->attach_point = point == 1 ? BPF_TC_EGRESS : BPF_TC_INGRESS;
}

// tcHookCreate(ifindex, point 0=ingress 1=egress) -> 0 | -errno (-EEXIST when clsact is there)
Napi::Value TcHookCreate(const Napi::CallbackInfo& info) {
  Args a(info, "tcHookCreate");
  struct bpf_tc_hook hook;
  TcHook(a, &hook);
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_hook_create(&hook)));
}

// tcHookDestroy(ifindex) -> 0 | -errno: removes the clsact qdisc with every filter on it
Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  Args a(info, "tcHookDestroy");
  int ifindex = a.I32(0, "ifindex", 1);
  if (!a.ok()) return info.Env().Undefined();
  struct bpf_tc_hook hook;
  memset(&hook, 0, sizeof hook);
  hook.sz = sizeof hook;
  hook.ifindex = ifindex;
  hook.attach_point = static_cast<enum bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_hook_destroy(&hook)));
}

void TcOpts(Args& a, size_t i, struct bpf_tc_opts* opts) {
  memset(opts, 0, sizeof *opts);
  opts->sz = sizeof *opts;
  opts->priority = static_cast<uint32_t>(a.Int(i, "priority", 0, 0xffff));
  opts->handle = a.U32(i + 1, "handle");
}

// tcAttach(ifindex, point, progFd, priority, handle, replace) -> 0 | -errno
Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Args a(info, "tcAttach");
  struct bpf_tc_hook hook;
  TcHook(a, &hook);
  struct bpf_tc_opts opts;
  int progFd = a.Fd(2, "progFd");
  TcOpts(a, 3, &opts);
  bool replace = a.Bool(5, "replace");
  if (!a.ok()) return info.Env().Undefined();
  opts.prog_fd = progFd;
  if (replace) opts.flags = BPF_TC_F_REPLACE;
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_attach(&hook, &opts)));
}

// tcDetach(ifindex, point, priority, handle) -> 0 | -errno
Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Args a(info, "tcDetach");
  struct bpf_tc_hook hook;
  TcHook(a, &hook);
  struct bpf_tc_opts opts;
  TcOpts(a, 2, &opts);
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_tc_detach(&hook, &opts)));
}

// tcQuery(ifindex, point, priority, handle) -> prog id | -errno (-ENOENT when nothing is there)
Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Args a(info, "tcQuery");
  struct bpf_tc_hook hook;
  TcHook(a, &hook);
  struct bpf_tc_opts opts;
  TcOpts(a, 2, &opts);
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  int ret = Err(bpf_tc_query(&hook, &opts));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(opts.prog_id));
}

// xdpAttach(ifindex, progFd, flags) -> 0 | -errno
Napi::Value XdpAttach(const Napi::CallbackInfo& info) {
  Args a(info, "xdpAttach");
  int ifindex = a.I32(0, "ifindex", 1);
  int progFd = a.Fd(1, "progFd");
  uint32_t flags = a.U32(2, "flags");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_xdp_attach(ifindex, progFd, flags, nullptr)));
}

// xdpDetach(ifindex, flags) -> 0 | -errno
Napi::Value XdpDetach(const Napi::CallbackInfo& info) {
  Args a(info, "xdpDetach");
  int ifindex = a.I32(0, "ifindex", 1);
  uint32_t flags = a.U32(1, "flags");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_xdp_detach(ifindex, flags, nullptr)));
}

// xdpQueryId(ifindex, flags) -> prog id (0 = none) | -errno
Napi::Value XdpQueryId(const Napi::CallbackInfo& info) {
  Args a(info, "xdpQueryId");
  int ifindex = a.I32(0, "ifindex", 1);
  uint32_t flags = a.U32(1, "flags");
  if (!a.ok()) return info.Env().Undefined();
  uint32_t id = 0;
  errno = 0;
  int ret = Err(bpf_xdp_query_id(ifindex, static_cast<int>(flags), &id));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(id));
}

// progAttach(progFd, targetFd, attachType, flags, replaceFd) -> 0 | -errno
// replaceFd >= 0 swaps that program for this one in one step (BPF_F_REPLACE, with BPF_F_ALLOW_MULTI).
Napi::Value ProgAttach(const Napi::CallbackInfo& info) {
  Args a(info, "progAttach");
  int progFd = a.Fd(0, "progFd");
  int targetFd = a.Fd(1, "targetFd");
  uint32_t type = a.U32(2, "attachType");
  uint32_t flags = a.U32(3, "flags");
  int replace = a.Fd(4, "replaceFd", true);
  if (!a.ok()) return info.Env().Undefined();
  struct bpf_prog_attach_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.flags = flags;
  if (replace >= 0) {
    opts.flags |= BPF_F_REPLACE;
    opts.replace_prog_fd = replace;
  }
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_attach_opts(progFd, targetFd, static_cast<enum bpf_attach_type>(type), &opts)));
}

// progDetach(progFd, targetFd, attachType) -> 0 | -errno
Napi::Value ProgDetach(const Napi::CallbackInfo& info) {
  Args a(info, "progDetach");
  int progFd = a.Fd(0, "progFd");
  int targetFd = a.Fd(1, "targetFd");
  uint32_t type = a.U32(2, "attachType");
  if (!a.ok()) return info.Env().Undefined();
  errno = 0;
  return Num(info.Env(), Err(bpf_prog_detach2(progFd, targetFd, static_cast<enum bpf_attach_type>(type))));
}

// progQuery(targetFd, attachType, ids: Buffer of u32) -> count | -errno
Napi::Value ProgQuery(const Napi::CallbackInfo& info) {
  Args a(info, "progQuery");
  int targetFd = a.Fd(0, "targetFd");
  uint32_t type = a.U32(1, "attachType");
  BufArg ids = a.Buf(2, "ids", false);
  if (!a.ok()) return info.Env().Undefined();
  uint32_t count = static_cast<uint32_t>(ids.len / 4 > UINT32_MAX ? UINT32_MAX : ids.len / 4);
  uint32_t flags = 0;
  errno = 0;
  int ret = Err(bpf_prog_query(targetFd, static_cast<enum bpf_attach_type>(type), 0, &flags,
                               count ? reinterpret_cast<uint32_t*>(ids.data) : nullptr, &count));
  return Num(info.Env(), ret < 0 ? static_cast<double>(ret) : static_cast<double>(count));
}

// iterRun(progFd, netnsFd, out) -> bytes the iterator wrote (more than out.length when they did not
// all fit: the rest is read and dropped, so the program still visits every object) | -errno.
// A BPF_TRACE_ITER link, an iterator fd made in network namespace netnsFd (-1: the caller's; netns-
// aware iterators such as iter/udp walk the namespace they were created in), read to the end. The
// calling thread enters netnsFd only for bpf_iter_create and returns at once.
Napi::Value IterRun(const Napi::CallbackInfo& info) {
  Args a(info, "iterRun");
  int progFd = a.Fd(0, "progFd");
  int nsFd = a.Fd(1, "netnsFd", true);
  BufArg out = a.Buf(2, "out", false);
  if (!a.ok()) return info.Env().Undefined();
  Napi::Env env = info.Env();
  errno = 0;
  int link = Err(bpf_link_create(progFd, 0, BPF_TRACE_ITER, nullptr));
  if (link < 0) return Num(env, link);
  int self = -1;
  if (nsFd >= 0) {
    self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0 || setns(nsFd, CLONE_NEWNET) < 0) {
      int e = -errno;
      if (self >= 0) close(self);
      close(link);
      return Num(env, e);
    }
  }
  errno = 0;
  int it = Err(bpf_iter_create(link));
  if (self >= 0) {
    if (setns(self, CLONE_NEWNET) < 0) {
      // this thread would stay in the other namespace: nothing later could be trusted
      fprintf(stderr, "kbp_native: iterRun cannot return to its network namespace: %s\n", strerror(errno));
      abort();
    }
    close(self);
  }
  close(link);
  if (it < 0) return Num(env, it);
  size_t total = 0;
  char scratch[4096];
  for (;;) {
    char* dst = total < out.len ? reinterpret_cast<char*>(out.data) + total : scratch;
    size_t room = total < out.len ? out.len - total : sizeof scratch;
    ssize_t n = read(it, dst, room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = -errno;
      close(it);
      return Num(env, e);
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  close(it);
  return Num(env, static_cast<double>(total));
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  return Num(info.Env(), libbpf_num_possible_cpus());
}

// V8's memory pressure signal (v8::Isolate::MemoryPressureNotification: 0 none, 1 moderate, 2
// critical), which Node has no JS call for. Critical runs one full GC that reduces the heap's
// footprint (V8's Heap::CollectGarbageOnMemoryPressure), where gc()'s "last-resort" flavor runs at
// least two, each marking the whole live heap (util/heap-trim.ts). The caller sets it back to none:
// V8 optimizes for memory while the level is not none.
Napi::Value MemoryPressure(const Napi::CallbackInfo& info) {
  Args a(info, "memoryPressure");
  const double level = a.Int(0, "level", 0, 2);
  if (!a.ok()) return info.Env().Undefined();
  v8::Isolate::GetCurrent()->MemoryPressureNotification(level == 2   ? v8::MemoryPressureLevel::kCritical
                                                        : level == 1 ? v8::MemoryPressureLevel::kModerate
                                                                     : v8::MemoryPressureLevel::kNone);
  return info.Env().Undefined();
}

// glibc's malloc_trim(0): returns the free pages inside malloc's arenas to the kernel (glibc only
// shrinks the top of the heap by itself). ArrayBuffers a sync frees (the Maglev slots) leave holes
// in the heap that stay resident otherwise.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value StrError(const Napi::CallbackInfo& info) {
  Args a(info, "strerror");
  int err = a.I32(0, "errno", -INT32_MAX);
  if (!a.ok()) return info.Env().Undefined();
  char buf[256];
  libbpf_strerror(err, buf, sizeof buf);
  return Napi::String::New(info.Env(), buf);
}

// ---- asynchronous batch writes -------------------------------------------------------------------
// A write to a map-in-map (a Maglev swap) waits for an RCU grace period in the kernel, and a large
// batch takes long by itself: these run the same batch call on libuv's thread pool and settle a
// Promise, so /healthz and /metrics keep answering during a long apply. The worker reads keys and
// values in place, holding a reference to each buffer until it settles: the caller must neither write
// nor detach them before then (BpfMap's wrappers await the call; the map writer releases a batch's
// buffers after it). A copy here doubled a first sync's largest batches while they ran (lb_backends'
// 24 MiB at 100,000 Services, at the start's peak RSS: docs/perf-log.md, session 28, p28rss). It holds its
// own dup of the fd (an fd closed and reused meanwhile must not send the write to another map).
class BatchWorker : public Napi::AsyncWorker {
 public:
  BatchWorker(Napi::Env env, bool update, int fd, const BatchArgs& b, Napi::Value keys, Napi::Value values)
      : Napi::AsyncWorker(env, update ? "kbp:mapUpdateBatchAsync" : "kbp:mapDeleteBatchAsync"),
        deferred_(Napi::Promise::Deferred::New(env)),
        update_(update),
        fd_(fd),
        count_(b.count),
        elemFlags_(b.elemFlags),
        threads_(b.threads),
        keySize_(b.keySize),
        valueSize_(b.valueSize),
        keys_(b.keys.data),
        values_(b.values.data),
        keysRef_(Napi::Persistent(keys)) {
    if (update) valuesRef_ = Napi::Persistent(values);
  }
  ~BatchWorker() override {
    if (fd_ >= 0) close(fd_);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    if (update_) {
      ret_ = UpdateBatchSpread(fd_, keys_, keySize_, values_, valueSize_, count_, elemFlags_, threads_, &processed_);
      return;
    }
    struct bpf_map_batch_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.sz = sizeof opts;
    processed_ = count_;
    errno = 0;
    ret_ = Err(bpf_map_delete_batch(fd_, keys_, &processed_, &opts));
  }
  void OnOK() override { deferred_.Resolve(Pair(Env(), ret_, processed_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  bool update_;
  int fd_;
  uint32_t count_, elemFlags_, threads_;
  uint64_t keySize_, valueSize_;
  const uint8_t* keys_;
  const uint8_t* values_;
  // the buffers keys_ and values_ point into, kept from the GC until the worker is deleted (after
  // OnOK or OnError, on the main thread)
  Napi::Reference<Napi::Value> keysRef_, valuesRef_;
  int ret_ = 0;
  uint32_t processed_ = 0;
};

Napi::Value BatchAsync(const Napi::CallbackInfo& info, bool update) {
  Napi::Env env = info.Env();
  Args a(info, update ? "mapUpdateBatchAsync" : "mapDeleteBatchAsync");
  BatchArgs b;
  int bad = ReadBatchArgs(a, update, &b);
  if (!a.ok()) return env.Undefined();
  int fd = bad < 0 ? -1 : fcntl(b.fd, F_DUPFD_CLOEXEC, 0);
  if (bad == 0 && fd < 0) bad = -errno;
  if (bad < 0) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Resolve(Pair(env, bad, 0));
    return d.Promise();
  }
  BatchWorker* w = new BatchWorker(env, update, fd, b, info[1], info[2]);  // deletes itself after OnOK/OnError
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// mapUpdateBatchAsync(fd, keys, values, count, elemFlags[, threads]) -> Promise<[ret, processed]>
Napi::Value MapUpdateBatchAsync(const Napi::CallbackInfo& info) { return BatchAsync(info, true); }

// mapDeleteBatchAsync(fd, keys, count) -> Promise<[ret, processed]>
Napi::Value MapDeleteBatchAsync(const Napi::CallbackInfo& info) { return BatchAsync(info, false); }

// ---- asynchronous object load -----------------------------------------------------------------
// bpf_object__load runs the verifier over every program: over a second of CPU for kbp.bpf.o, in the
// calling thread. On the thread pool, the agent reads and parses its Services meanwhile (issue 10:
// the first sync after start). The worker holds a reference to the handle (no finalizer runs
// under it) and marks it loading (every other object call throws until it settles).
class LoadWorker : public Napi::AsyncWorker {
 public:
  LoadWorker(Napi::Env env, Napi::External<ObjectHolder> handle, ObjectHolder* h)
      : Napi::AsyncWorker(env, "kbp:objectLoadAsync"), deferred_(Napi::Promise::Deferred::New(env)), h_(h) {
    ref_ = Napi::Persistent(handle.As<Napi::Value>());
    h_->loading = true;
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    errno = 0;
    ret_ = Err(bpf_object__load(h_->obj));
  }
  void OnOK() override {
    h_->loading = false;
    deferred_.Resolve(Num(Env(), ret_));
  }
  void OnError(const Napi::Error& e) override {
    h_->loading = false;
    deferred_.Reject(e.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Value> ref_;
  ObjectHolder* h_;
  int ret_ = 0;
};

// objectLoadAsync(h) -> Promise<0 | -errno>
Napi::Value ObjectLoadAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info, "objectLoadAsync");
  ObjectHolder* h = a.Holder(0, "handle");
  if (!a.ok() || Loading(info, h, "objectLoadAsync")) return env.Undefined();
  if (!h->obj) {
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Resolve(Num(env, -EBADF));
    return d.Promise();
  }
  LoadWorker* w = new LoadWorker(env, info[0].As<Napi::External<ObjectHolder>>(), h);  // deletes itself when settled
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
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
  EXPORT("objectLoadAsync", ObjectLoadAsync);
  EXPORT("objectClose", ObjectClose);
  EXPORT("objectClearPins", ObjectClearPins);
  EXPORT("objectSetMaxEntries", ObjectSetMaxEntries);
  EXPORT("objectMaps", ObjectMaps);
  EXPORT("objectPrograms", ObjectPrograms);
  EXPORT("mapLookup", MapLookup);
  EXPORT("mapUpdate", MapUpdate);
  EXPORT("mapDelete", MapDelete);
  EXPORT("mapGetNextKey", MapGetNextKey);
  EXPORT("mapUpdateBatch", MapUpdateBatch);
  EXPORT("mapDeleteBatch", MapDeleteBatch);
  EXPORT("mapUpdateEach", MapUpdateEach);
  EXPORT("mapLookupBatch", MapLookupBatch);
  EXPORT("mapUpdateBatchAsync", MapUpdateBatchAsync);
  EXPORT("mapDeleteBatchAsync", MapDeleteBatchAsync);
  EXPORT("mapCreate", MapCreate);
  EXPORT("mapInfo", MapInfo);
  EXPORT("mapMmapWrite", MapMmapWrite);
  EXPORT("mapMaglevFillStart", MapMaglevFillStart);
  EXPORT("mapMaglevFillStep", MapMaglevFillStep);
  EXPORT("mapMaglevFillWait", MapMaglevFillWait);
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
  EXPORT("iterRun", IterRun);
  EXPORT("numPossibleCpus", NumPossibleCpus);
  EXPORT("strerror", StrError);
  EXPORT("mallocTrim", MallocTrim);
  EXPORT("memoryPressure", MemoryPressure);
#undef EXPORT
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_native, Init)
