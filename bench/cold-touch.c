// What a cold memory touch costs on this machine (docs/perf-log.md, session 23, p23pkt): a pointer chase
// over random cache lines of a region of MIB MiB, on 4 KiB pages (HUGE 0) or 2 MiB ones (HUGE 1, THP by
// madvise), STEPS dependent loads timed: the region size against the caches, the page size against the TLB.
//   cc -O2 -o /tmp/cold-touch bench/cold-touch.c && for s in 1 4 36 72; do /tmp/cold-touch $s 0 3000000; /tmp/cold-touch $s 1 3000000; done
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static uint64_t rng=88172645463325252ull; static uint64_t xr(void){rng^=rng<<13;rng^=rng>>7;rng^=rng<<17;return rng;}
int main(int argc,char**argv){
  size_t mib=atoi(argv[1]); int huge=atoi(argv[2]); size_t steps=atol(argv[3]);
  size_t sz=mib<<20; size_t al=2<<20;
  char*raw=mmap(0,sz+al,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  char*p=(char*)(((uintptr_t)raw+al-1)&~(al-1));
  madvise(p,sz,huge?MADV_HUGEPAGE:MADV_NOHUGEPAGE);
  memset(p,1,sz);
  size_t n=sz/64; uint32_t*idx=malloc(n*4); for(size_t i=0;i<n;i++)idx[i]=i;
  for(size_t i=n-1;i>0;i--){size_t j=xr()%(i+1);uint32_t t=idx[i];idx[i]=idx[j];idx[j]=t;}
  for(size_t i=0;i<n;i++) *(char**)(p+(size_t)idx[i]*64)=p+(size_t)idx[(i+1)%n]*64;
  char*q=p; for(size_t i=0;i<n;i++) q=*(char**)q; // warm
  double t0=now(); for(size_t i=0;i<steps;i++) q=*(char**)q; double t1=now();
  FILE*f=fopen("/proc/self/smaps_rollup","r"); char line[256]; long ahp=0; while(fgets(line,sizeof line,f)) if(!strncmp(line,"AnonHugePages:",14)) ahp=atol(line+14);
  printf("%zu MiB %s: %.1f ns/step (AnonHugePages %ld kB)%s\n",mib,huge?"2M":"4K",(t1-t0)/steps,ahp,q==NULL?" (null)":"");
  return 0;
}
