/*
 * A light client and server for bench/connrate.bench.ts: new TCP connections with nothing else,
 * so that the path's first-packet cost is not drowned by an HTTP client's and server's CPU.
 *
 *   connloop serve ADDR PORT          accept and close, forever (until killed)
 *   connloop connect ADDR PORT N      N connections one after the other: connect() (SYN, SYN-ACK,
 *                                     ACK through the path), then close with RST (SO_LINGER 0, so
 *                                     neither side keeps TIME_WAIT and ports never run out)
 *
 *   connloop multi N NETNS[@CGROUP] ADDR PORT [NETNS[@CGROUP] ADDR PORT ...]
 *                                     N connections per path, the paths taking turns connection by
 *                                     connection (in a new random order each turn, so that every path
 *                                     follows every other alike: a path that walks a big ruleset leaves
 *                                     the caches cold for whichever path comes next), so that the machine's
 *                                     other load falls on every path alike: a path's sockets are made
 *                                     by a child process in its network namespace (the file under
 *                                     /var/run/netns) and, with @CGROUP, in that cgroup v2 (a socket
 *                                     hook acts on the socket's cgroup, fixed when it is made), and
 *                                     passed over a Unix socket; this process times connect() on them
 *
 * connect prints one line: "N FAILED TOTAL_NS P50_NS P99_NS" (per-connect latency: socket() to
 * connect() returning); multi prints one such line per path, in the order given, with connect()
 * alone timed, and a sixth field: the median of connect() and close() together (the close sends the
 * RST and runs the socket-release hook: what a connection costs, not only its handshake). Built by
 * the bench with the system's cc.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
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

static int parse_addr(struct sockaddr_in *sa, const char *addr, const char *port)
{
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((unsigned short)atoi(port));
	if (inet_pton(AF_INET, addr, &sa->sin_addr) != 1) {
		fprintf(stderr, "connloop: bad address %s\n", addr);
		return -1;
	}
	return 0;
}

/* the child of one path: joins the namespace (and cgroup), then makes a socket per byte read */
static void factory(int ctl, const char *spec)
{
	char ns[512], *cg;
	snprintf(ns, sizeof ns, "%s", spec);
	cg = strchr(ns, '@');
	if (cg)
		*cg++ = 0;
	int nsfd = open(ns, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || setns(nsfd, CLONE_NEWNET)) {
		fprintf(stderr, "connloop: netns %s: %s\n", ns, strerror(errno));
		_exit(1);
	}
	close(nsfd);
	if (cg) {
		char procs[600];
		snprintf(procs, sizeof procs, "%s/cgroup.procs", cg);
		int f = open(procs, O_WRONLY | O_CLOEXEC);
		if (f < 0 || write(f, "0", 1) != 1) {
			fprintf(stderr, "connloop: cgroup %s: %s\n", cg, strerror(errno));
			_exit(1);
		}
		close(f);
	}
	for (;;) {
		char b;
		if (read(ctl, &b, 1) != 1)
			_exit(0);
		int s = socket(AF_INET, SOCK_STREAM, 0);
		char cbuf[CMSG_SPACE(sizeof(int))];
		memset(cbuf, 0, sizeof cbuf);
		struct iovec iov = { &b, 1 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (s >= 0) {
			m.msg_control = cbuf;
			m.msg_controllen = sizeof cbuf;
			struct cmsghdr *c = CMSG_FIRSTHDR(&m);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &s, sizeof(int));
		}
		if (sendmsg(ctl, &m, 0) != 1)
			_exit(1);
		if (s >= 0)
			close(s);
	}
}

/* a socket from a path's child, or -1 */
static int fetch(int ctl)
{
	char b = 0, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &b, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	int fd = -1;
	if (write(ctl, &b, 1) != 1 || recvmsg(ctl, &m, 0) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

#define MAX_PATHS 8

static int multi(int argc, char **argv)
{
	long n = atol(argv[2]);
	int k = (argc - 3) / 3;
	if (n <= 0 || n > 1000000 || k < 1 || k > MAX_PATHS || (argc - 3) % 3) {
		fprintf(stderr, "usage: connloop multi N NETNS[@CGROUP] ADDR PORT ... (1..%d paths)\n", MAX_PATHS);
		return 2;
	}
	struct sockaddr_in sa[MAX_PATHS];
	int ctl[MAX_PATHS];
	pid_t kids[MAX_PATHS];
	long ok[MAX_PATHS] = { 0 }, failed[MAX_PATHS] = { 0 };
	long long total[MAX_PATHS] = { 0 }, *lat[MAX_PATHS], *cyc[MAX_PATHS];
	for (int p = 0; p < k; p++) {
		int sv[2];
		if (parse_addr(&sa[p], argv[4 + 3 * p], argv[5 + 3 * p]))
			return 2;
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
			perror("connloop: socketpair");
			return 1;
		}
		kids[p] = fork();
		if (kids[p] < 0) {
			perror("connloop: fork");
			return 1;
		}
		if (kids[p] == 0) {
			close(sv[0]);
			for (int q = 0; q < p; q++)
				close(ctl[q]); /* else an earlier path's child never sees its end closed */
			factory(sv[1], argv[3 + 3 * p]);
		}
		close(sv[1]);
		ctl[p] = sv[0];
		lat[p] = calloc((size_t)n, sizeof(long long));
		cyc[p] = calloc((size_t)n, sizeof(long long));
	}
	struct linger lg = { 1, 0 };
	struct timeval tmo = { 2, 0 };
	int order[MAX_PATHS];
	unsigned long long rng = 0x9e3779b97f4a7c15ULL; /* fixed: runs are alike */
	for (int j = 0; j < k; j++)
		order[j] = j;
	for (long i = 0; i < n; i++) {
		/* a fresh order each turn (Fisher-Yates, xorshift64): with a fixed rotation each path
		 * always came after the same one, and a path after iptables' walk ran 3-5 % slower than
		 * the same program after another path (an A/A run) */
		for (int j = k - 1; j > 0; j--) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			int r = (int)(rng % (unsigned long long)(j + 1)), tmp = order[j];
			order[j] = order[r];
			order[r] = tmp;
		}
		for (int j = 0; j < k; j++) {
			int p = order[j];
			int s = fetch(ctl[p]);
			if (s < 0) {
				failed[p]++;
				continue;
			}
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
			setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
			long long s0 = now_ns();
			int r = connect(s, (struct sockaddr *)&sa[p], sizeof sa[p]);
			long long d = now_ns() - s0;
			total[p] += d;
			close(s);
			if (r == 0) {
				cyc[p][ok[p]] = now_ns() - s0;
				lat[p][ok[p]++] = d;
			} else {
				failed[p]++;
			}
		}
	}
	int rc = 0;
	for (int p = 0; p < k; p++) {
		int st = 0;
		close(ctl[p]);
		if (waitpid(kids[p], &st, 0) != kids[p] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			rc = 1; /* a path's child could not join its namespace or cgroup: said on stderr */
		qsort(lat[p], (size_t)ok[p], sizeof(long long), cmp);
		qsort(cyc[p], (size_t)ok[p], sizeof(long long), cmp);
		printf("%ld %ld %lld %lld %lld %lld\n", ok[p], failed[p], total[p], ok[p] ? lat[p][ok[p] / 2] : 0,
		       ok[p] ? lat[p][(ok[p] * 99) / 100] : 0, ok[p] ? cyc[p][ok[p] / 2] : 0);
	}
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "multi") == 0)
		return multi(argc, argv);
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
