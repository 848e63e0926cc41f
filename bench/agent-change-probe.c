// bench/agent-change.bench.ts's loader of agent-change-probe.bpf.o: puts the agent's pinned maps in
// place of the object's, loads it, attaches its program to the bpf() syscall's exit tracepoint and
// pins its two maps (probe_want, probe_got) for the bench. The program stays attached while this
// process lives: it waits for its stdin to close (the bench's end, or the bench's death), then
// unpins and exits, so no attachment outlives the bench.
//   agent-change-probe OBJECT AGENT_PIN_ROOT PROBE_PIN_DIR
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const AGENT_MAPS[] = { "lb_frontends", "lb_slots", "lb_backends" };
static const char *const PROBE_MAPS[] = { "probe_want", "probe_got" };

int main(int argc, char **argv)
{
	char path[4096];
	if (argc != 4) {
		fprintf(stderr, "usage: %s OBJECT AGENT_PIN_ROOT PROBE_PIN_DIR\n", argv[0]);
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < sizeof(AGENT_MAPS) / sizeof(*AGENT_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[2], AGENT_MAPS[i]);
		int fd = bpf_obj_get(path);
		struct bpf_map *m = bpf_object__find_map_by_name(obj, AGENT_MAPS[i]);
		if (fd < 0 || !m || bpf_map__reuse_fd(m, fd)) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			return 1;
		}
		close(fd); // reuse_fd keeps a duplicate
	}
	if (bpf_object__load(obj)) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "agent_bpf_exit");
	struct bpf_link *link = prog ? bpf_program__attach(prog) : NULL;
	if (!link) {
		fprintf(stderr, "attach: %s\n", strerror(errno));
		return 1;
	}
	for (unsigned i = 0; i < sizeof(PROBE_MAPS) / sizeof(*PROBE_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[3], PROBE_MAPS[i]);
		if (bpf_map__pin(bpf_object__find_map_by_name(obj, PROBE_MAPS[i]), path)) {
			fprintf(stderr, "pin %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0) {
	}
	for (unsigned i = 0; i < sizeof(PROBE_MAPS) / sizeof(*PROBE_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[3], PROBE_MAPS[i]);
		unlink(path);
	}
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
