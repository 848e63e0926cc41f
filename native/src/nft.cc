// kbp_nft: a thin Node-API layer over libnftables, built apart from kbp_native so the nftables data
// plane loads on hosts where libbpf (or BPF itself) is missing. Two calls: make a context (output
// flags given by TypeScript) and run a buffer of nft commands on it, off the event loop, returning
// libnftables' return code and what it printed. Everything else (building the commands, validating,
// serializing calls on one context) is in src/dataplane/nftables/native.ts, the only module that
// loads this file.
#include <napi.h>

#include <nftables/libnftables.h>

#include <string>

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
  Napi::Object c = Napi::Object::New(env);
  c.Set("NFT_CTX_OUTPUT_JSON", Napi::Number::New(env, NFT_CTX_OUTPUT_JSON));
  c.Set("NFT_CTX_OUTPUT_HANDLE", Napi::Number::New(env, NFT_CTX_OUTPUT_HANDLE));
  c.Set("NFT_CTX_OUTPUT_NUMERIC_ALL", Napi::Number::New(env, NFT_CTX_OUTPUT_NUMERIC_ALL));
  exports.Set("constants", c);
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_nft, Init)
