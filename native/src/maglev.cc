// Maglev table fill (src/plan/maglev.ts holds the definition and the JavaScript fill this must equal
// slot for slot; test/unit/maglev-native.test.ts compares them). A first sync at 10,000 Services
// fills ~10,000 tables of ~1,600 slots: ~5 probes per slot whose loop exit the CPU cannot predict,
// about twice as fast compiled, and the tables are independent, so a large batch is split over a few
// threads. No library, no kernel call: loads wherever Node does.
//
// fill(h1, h2, ids, tables, out, threads) -> undefined
//   h1, h2, ids: Uint32Array, one entry per member of every table (members of a table contiguous, in
//                canonical order); a table's slots receive its members' ids (never 0: id 0 is never valid)
//   tables:      Uint32Array of 4 u32 per table: first member index, member count n, M, slot offset in out
//   out:         Uint32Array the tables are written into (slots outside the tables are not touched)
//   threads:     at most this many threads (1: the calling thread only)
// Every argument is checked before any slot is written (a TypeError or RangeError naming the argument
// and, for a table, its index): a non-prime M would never finish.
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>

#include "threads.h"
#include <vector>

#include "maglev-fill.h"
#include "read-files.h"

namespace {

using kbp_maglev::IsPrime;

struct U32s {
  const uint32_t* p = nullptr;
  size_t n = 0;
};

bool TypedU32(const Napi::CallbackInfo& info, size_t i, const char* name, U32s* out) {
  Napi::Env env = info.Env();
  if (info.Length() <= i || !info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, std::string("maglev fill: argument ") + name + " must be a Uint32Array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Uint32Array a = info[i].As<Napi::Uint32Array>();
  out->p = a.Data();
  out->n = a.ElementLength();
  return true;
}

struct Table {
  uint32_t first, n, m, off;
};

void FillOne(const uint32_t* h1, const uint32_t* h2, const uint32_t* ids, const Table& t, uint32_t* out, std::vector<uint32_t>& cur,
             std::vector<uint32_t>& skip) {
  kbp_maglev::FillOne(h1, h2, ids, t.first, t.n, t.m, out + t.off, cur, skip);
}

void FillRange(const uint32_t* h1, const uint32_t* h2, const uint32_t* ids, const std::vector<Table>& tables, size_t from, size_t to, uint32_t* out) {
  std::vector<uint32_t> cur, skip;
  for (size_t k = from; k < to; k++) FillOne(h1, h2, ids, tables[k], out, cur, skip);
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U32s h1, h2, ids, desc, outArg;
  if (!TypedU32(info, 0, "h1", &h1) || !TypedU32(info, 1, "h2", &h2) || !TypedU32(info, 2, "ids", &ids) || !TypedU32(info, 3, "tables", &desc) ||
      !TypedU32(info, 4, "out", &outArg))
    return env.Undefined();
  if (info.Length() <= 5 || !info[5].IsNumber()) {
    Napi::TypeError::New(env, "maglev fill: argument threads must be a number").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  double th = info[5].As<Napi::Number>().DoubleValue();
  if (!(th >= 1 && th <= 64) || th != static_cast<double>(static_cast<int>(th))) {
    Napi::RangeError::New(env, "maglev fill: argument threads must be an integer in 1..64").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (h2.n != h1.n || ids.n != h1.n) {
    Napi::RangeError::New(env, "maglev fill: arguments h1, h2 and ids must have the same length").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (desc.n % 4 != 0) {
    Napi::RangeError::New(env, "maglev fill: argument tables must hold 4 numbers per table").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<Table> tables(desc.n / 4);
  uint64_t total = 0;
  for (size_t k = 0; k < tables.size(); k++) {
    Table t{desc.p[4 * k], desc.p[4 * k + 1], desc.p[4 * k + 2], desc.p[4 * k + 3]};
    std::string bad;
    if (t.n < 1) bad = "has no members";
    else if (static_cast<uint64_t>(t.first) + t.n > h1.n) bad = "names members past the end of h1";
    else if (t.n > t.m) bad = "has more members than slots";
    else if (!IsPrime(t.m)) bad = "has a size M that is not prime";
    else if (static_cast<uint64_t>(t.off) + t.m > outArg.n) bad = "ends past the end of out";
    else if (std::find(ids.p + t.first, ids.p + t.first + t.n, 0u) != ids.p + t.first + t.n) bad = "has a member of id 0 (ids start at 1)";
    if (!bad.empty()) {
      Napi::RangeError::New(env, "maglev fill: table " + std::to_string(k) + " (first " + std::to_string(t.first) + ", n " + std::to_string(t.n) + ", M " +
                                     std::to_string(t.m) + ", offset " + std::to_string(t.off) + ") " + bad)
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    tables[k] = t;
    total += t.m;
  }
  uint32_t* out = const_cast<uint32_t*>(outArg.p);
  // a thread costs ~50 us to start: only worth it for large batches (a first sync, a resync)
  size_t nt = std::min<size_t>({static_cast<size_t>(th), std::max(1u, std::thread::hardware_concurrency()), tables.size()});
  if (total < (1u << 18)) nt = 1;
  if (nt <= 1) {
    FillRange(h1.p, h2.p, ids.p, tables, 0, tables.size(), out);
    return env.Undefined();
  }
  // contiguous ranges of about equal slot counts; the calling thread takes the last
  // a range whose thread cannot start (threads.h) is filled here, after the last
  std::vector<kbp_threads::Worker> workers(nt - 1);
  std::vector<std::pair<size_t, size_t>> here;
  size_t from = 0;
  uint64_t acc = 0;
  const uint32_t *a = h1.p, *b = h2.p, *c = ids.p;
  for (size_t w = 1; w < nt; w++) {
    const uint64_t until = total * w / nt;
    size_t to = from;
    while (to < tables.size() && acc < until) acc += tables[to++].m;
    if (!workers[w - 1].Start([a, b, c, &tables, from, to, out] { FillRange(a, b, c, tables, from, to, out); })) here.emplace_back(from, to);
    from = to;
  }
  FillRange(a, b, c, tables, from, tables.size(), out);
  for (const auto& r : here) FillRange(a, b, c, tables, r.first, r.second, out);
  for (auto& w : workers) w.Join();
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("readFiles", Napi::Function::New(env, kbp_files::ReadFiles, "readFiles"));
  return exports;
}

}  // namespace

NODE_API_MODULE(kbp_maglev, Init)
