/*
 * A light client and server for bench/connrate.bench.ts: new TCP connections with nothing else,
 * so that the path's first-packet cost is not drowned by an HTTP client's and server's CPU.
 *
 *   connloop serve ADDR PORT          accept and close, forever (until killed)
 *   connloop connect ADDR PORT N      N connections one after the other: connect() (SYN, SYN-ACK,
 *                                     ACK through the path), then close with RST (SO_LINGER 0, so
 *                                     neither side keeps TIME_WAIT and ports never run out)
 *
 * connect prints one line: "N FAILED TOTAL_NS P50_NS P99_NS" (per-connect latency: socket() to
 * connect() returning). Built by the bench with the system's cc.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: connloop serve ADDR PORT | connloop connect ADDR PORT N\n");
		return 2;
	}
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
		fprintf(stderr, "connloop: bad address %s\n", argv[2]);
		return 2;
	}
	if (strcmp(argv[1], "serve") == 0) {
		int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
		setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(l, (struct sockaddr *)&sa, sizeof sa) || listen(l, 4096)) {
			perror("connloop: bind/listen");
			return 1;
		}
		printf("ready\n");
		fflush(stdout);
		for (;;) {
			int c = accept(l, NULL, NULL);
			if (c >= 0)
				close(c);
		}
	}
	if (strcmp(argv[1], "connect") != 0 || argc < 5) {
		fprintf(stderr, "connloop: unknown command %s\n", argv[1]);
		return 2;
	}
	long n = atol(argv[4]), failed = 0, ok = 0;
	if (n <= 0 || n > 10000000) {
		fprintf(stderr, "connloop: N must be 1..10000000\n");
		return 2;
	}
	long long *lat = calloc((size_t)n, sizeof *lat);
	struct linger lg = { 1, 0 };
	struct timeval tmo = { 2, 0 };
	long long t0 = now_ns();
	for (long i = 0; i < n; i++) {
		long long s0 = now_ns();
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0) {
			failed++;
			continue;
		}
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		/* a SYN lost on the path must not stall the loop for the kernel's two minutes of retries */
		setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
		if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0)
			lat[ok++] = now_ns() - s0;
		else
			failed++;
		close(s);
	}
	long long total = now_ns() - t0;
	qsort(lat, (size_t)ok, sizeof *lat, cmp);
	printf("%ld %ld %lld %lld %lld\n", ok, failed, total, ok ? lat[ok / 2] : 0, ok ? lat[(ok * 99) / 100] : 0);
	return 0;
}
