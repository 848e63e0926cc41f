// The Maglev fill itself, shared by kbp_maglev (maglev.cc: fill into memory) and kbp_native (addon.cc:
// fill straight into lb_maglev_slots on background threads). src/plan/maglev.ts holds the definition
// and the JavaScript fill this must equal slot for slot (test/unit/maglev-native.test.ts).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace kbp_maglev {

inline bool IsPrime(uint32_t m) {
  if (m < 2) return false;
  for (uint32_t d = 2; static_cast<uint64_t>(d) * d <= m; d++)
    if (m % d == 0) return false;
  return true;
}

// The paper's fill (NSDI 2016, 3.4) as maglev.ts MaglevBuilder.buildIndices runs it: members take
// turns, each claiming the next free slot of its permutation offset, offset+skip, ... (mod M).
// Members first .. first+n-1 of h1/h2/ids; slots[0..m) receive their ids (never 0: 0 marks a free slot).
inline void FillOne(const uint32_t* h1, const uint32_t* h2, const uint32_t* ids, uint32_t first, uint32_t n, uint32_t m, uint32_t* slots,
                    std::vector<uint32_t>& cur, std::vector<uint32_t>& skip) {
  if (n == 1) {
    std::fill(slots, slots + m, ids[first]);
    return;
  }
  cur.resize(n);
  skip.resize(n);
  for (uint32_t i = 0; i < n; i++) {
    cur[i] = h1[first + i] % m;
    skip[i] = h2[first + i] % (m - 1) + 1;
  }
  std::fill(slots, slots + m, 0u);
  uint32_t filled = 0;
  for (;;) {
    for (uint32_t i = 0; i < n; i++) {
      uint32_t c = cur[i];
      const uint32_t k = skip[i];
      while (slots[c] != 0) {
        c += k;
        if (c >= m) c -= m;
      }
      slots[c] = ids[first + i];
      c += k;
      cur[i] = c >= m ? c - m : c;
      if (++filled == m) return;
    }
  }
}

}  // namespace kbp_maglev
