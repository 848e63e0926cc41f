// readFiles(paths) -> Promise<{ data, lens, errs, ops, digests }>: the files read whole on the thread
// pool, in order, for the manifests source's first read at start (src/source/file-batch.ts): on the
// main thread, readFileSync (open, fstat, read, close) and a sha256 of each file were ~10 % of the
// first sync's critical path at 10,000 files. Plain POSIX calls; the sha256 is OpenSSL's SHA256 from
// the Node process itself (looked up at run time: where it is missing, `digests` is undefined and
// JavaScript hashes the texts).
//   data:    ArrayBuffer, the files' bytes one after another
//   lens:    Int32Array, each file's byte count (0 for a file that could not be read)
//   errs:    Int32Array, each file's errno (0: read), with
//   ops:     Uint8Array, the call that failed: 1 open, 2 read
//   digests: ArrayBuffer of 32 bytes a file (the sha256 of its bytes), or undefined
// Included by maglev.cc: kbp_maglev is the addon that loads wherever Node does (no library).
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <napi.h>

namespace kbp_files {

using Sha256Fn = unsigned char *(*)(const unsigned char *, size_t, unsigned char *);

/** the largest file read (its length must fit the Int32Array of lengths) */
constexpr size_t kMaxFile = size_t{1} << 30;

class ReadFilesWorker : public Napi::AsyncWorker {
 public:
  ReadFilesWorker(Napi::Env env, std::vector<std::string> paths)
      : Napi::AsyncWorker(env, "kbp:readFiles"), deferred_(Napi::Promise::Deferred::New(env)), paths_(std::move(paths)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    const size_t n = paths_.size();
    lens_.assign(n, 0);
    errs_.assign(n, 0);
    ops_.assign(n, 0);
    const auto sha = reinterpret_cast<Sha256Fn>(dlsym(RTLD_DEFAULT, "SHA256"));
    if (sha) digests_.assign(n * 32, 0);
    data_.resize(1 << 16);
    for (size_t i = 0; i < n; i++) {
      // O_NONBLOCK: a FIFO put in a file's place since the listing fails its read, never blocks a pool thread
      const int fd = open(paths_[i].c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
      if (fd < 0) {
        errs_[i] = errno;
        ops_[i] = 1;
        continue;
      }
      size_t used = total_;
      for (;;) {
        // readFileSync refuses a file of 2 GiB or more; a manifest of 1 GiB is refused here
        if (used - total_ >= kMaxFile) {
          errs_[i] = EFBIG;
          ops_[i] = 2;
          used = total_;
          break;
        }
        // no fstat: a read into room for 16 KiB or more, then the read that returns 0
        if (data_.size() - used < (1 << 14)) data_.resize(data_.size() * 2);
        const ssize_t r = read(fd, data_.data() + used, data_.size() - used);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          errs_[i] = errno;
          ops_[i] = 2;
          used = total_;
          break;
        }
        if (r == 0) break;
        used += static_cast<size_t>(r);
      }
      close(fd);
      lens_[i] = static_cast<int32_t>(used - total_);
      if (sha && !errs_[i]) sha(reinterpret_cast<const unsigned char *>(data_.data() + total_), used - total_, &digests_[i * 32]);
      total_ = used;
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object out = Napi::Object::New(env);
    // the bytes handed over, not copied: a copy touched fresh pages on the main thread (~2 ms a
    // batch of 256 files, more than its decode), where the pool thread had touched these already
    if (total_) {
      auto *bytes = new std::vector<char>(std::move(data_));
      out.Set("data", Napi::ArrayBuffer::New(env, bytes->data(), total_, [](Napi::Env, void *, std::vector<char> *v) { delete v; }, bytes));
    } else {
      out.Set("data", Napi::ArrayBuffer::New(env, 0));
    }
    const size_t n = paths_.size();
    auto lens = Napi::Int32Array::New(env, n);
    auto errs = Napi::Int32Array::New(env, n);
    auto ops = Napi::Uint8Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      lens[i] = lens_[i];
      errs[i] = errs_[i];
      ops[i] = ops_[i];
    }
    out.Set("lens", lens);
    out.Set("errs", errs);
    out.Set("ops", ops);
    if (!digests_.empty()) {
      auto *d = new std::vector<unsigned char>(std::move(digests_));
      out.Set("digests", Napi::ArrayBuffer::New(env, d->data(), d->size(), [](Napi::Env, void *, std::vector<unsigned char> *v) { delete v; }, d));
    }
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error &e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  std::vector<char> data_;
  size_t total_ = 0;
  std::vector<int32_t> lens_, errs_;
  std::vector<uint8_t> ops_;
  std::vector<unsigned char> digests_;
};

inline Napi::Value ReadFiles(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, "readFiles: paths must be an array of strings").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto arr = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  paths.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string(1, '\0');
    if (s.empty() || s.find('\0') != std::string::npos) {
      Napi::TypeError::New(env, "readFiles: paths[" + std::to_string(i) + "] is not a path (a non-empty string without NUL)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    paths.push_back(std::move(s));
  }
  auto *w = new ReadFilesWorker(env, std::move(paths));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

}  // namespace kbp_files
