// A poller for lab debugging (not built by npm): prints every change of one frontend in a pinned
// lb_frontends (both scopes) and its lb_fe_filter bit, with the wall time in us, polling every ~20 us.
// Build: cc -O2 -o /tmp/fepoll testing/fepoll.c -lbpf; used by test/lab/*.run.ts through KBP_LAB_FEPOLL.
#include <bpf/bpf.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <sys/prctl.h>
struct k { uint8_t addr[16]; uint16_t port; uint8_t proto, scope; };
struct v { uint32_t fe_id, off, m; uint16_t n; uint8_t type, flags; uint32_t t, g; };
static uint64_t now_us(void) { struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return ts.tv_sec * 1000000ull + ts.tv_nsec / 1000; }
static uint32_t bit_of(const uint32_t *w, uint16_t port, uint8_t proto) {
  uint32_t h = (w[0] ^ w[1] ^ w[2]) * 0x85ebca6bU;
  h = (h ^ w[3]) * 0x9e3779b1U; h ^= h >> 15;
  h = (h ^ (((uint32_t)port << 16) | proto)) * 0x85ebca6bU; h ^= h >> 16; h *= 0x9e3779b1U;
  return h >> (32 - 20);
}
int main(int argc, char **argv) {
  if (argc < 6) { fprintf(stderr, "usage: fepoll PINROOT IPV4 PORT PROTO SECONDS\n"); return 2; }
  char p[512]; snprintf(p, sizeof p, "%s/lb_frontends", argv[1]);
  int fe = bpf_obj_get(p); snprintf(p, sizeof p, "%s/lb_fe_filter", argv[1]);
  int ff = bpf_obj_get(p);
  if (fe < 0 || ff < 0) { perror("bpf_obj_get"); return 1; }
  prctl(PR_SET_TIMERSLACK, 1);
  struct k key = {0}; key.addr[10] = key.addr[11] = 0xff; inet_pton(AF_INET, argv[2], key.addr + 12);
  key.port = htons(atoi(argv[3])); key.proto = atoi(argv[4]);
  uint32_t w[4]; memcpy(w, key.addr, 16);
  uint32_t bit = bit_of(w, key.port, key.proto), wk = 1 + (bit >> 6), zero = 0;
  uint64_t end = now_us() + 1000000ull * atoi(argv[5]), polls = 0;
  char last[256] = "", cur[256];
  printf("bit %u word %u\n", bit, wk); fflush(stdout);
  while (now_us() < end) {
    struct v vi, ve; uint64_t on = 0, word = 0;
    int hi = bpf_map_lookup_elem(fe, &key, &vi) == 0;
    key.scope = 0; int he = bpf_map_lookup_elem(fe, &key, &ve) == 0; key.scope = 1;
    bpf_map_lookup_elem(ff, &zero, &on); bpf_map_lookup_elem(ff, &wk, &word);
    int n = snprintf(cur, sizeof cur, "on=%llu bit=%llu", (unsigned long long)on, (unsigned long long)((word >> (bit & 63)) & 1));
    if (hi) n += snprintf(cur + n, sizeof cur - n, " int{id=%u off=%u m=%u n=%u}", vi.fe_id, vi.off, vi.m, vi.n); else n += snprintf(cur + n, sizeof cur - n, " int{-}");
    if (he) snprintf(cur + n, sizeof cur - n, " ext{id=%u off=%u m=%u n=%u}", ve.fe_id, ve.off, ve.m, ve.n); else snprintf(cur + n, sizeof cur - n, " ext{-}");
    polls++;
    if (strcmp(cur, last)) { printf("%llu %s (poll %llu)\n", (unsigned long long)now_us(), cur, (unsigned long long)polls); fflush(stdout); strcpy(last, cur); }
    struct timespec ts = {0, 20000}; nanosleep(&ts, NULL);
  }
  printf("end polls %llu\n", (unsigned long long)polls);
  return 0;
}
