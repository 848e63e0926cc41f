// bench/agent-change.bench.ts's loader of agent-change-probe.bpf.o: puts the agent's pinned maps in
// place of the object's, loads it, attaches its program to the bpf() syscall's exit tracepoint and
// pins its two maps (probe_want, probe_got) for the bench; its other programs (rename_*: the rename
// syscalls' tracepoints and sched_waking) stamp the bench's rename. Where those cannot load or attach,
// agent_bpf_exit runs alone: "ready norename: REASON" instead of "ready rename", and the bench then
// starts each change on its own clock, as before session 28. The program stays attached while this
// process lives: it waits for its stdin to close (the bench's end, or the bench's death), then
// unpins and exits, so no attachment outlives the bench.
//   agent-change-probe OBJECT AGENT_PIN_ROOT PROBE_PIN_DIR [norename]
// (norename: agent_bpf_exit alone, by request: KBP_BENCH_AGENT_RENAME=bench)
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const AGENT_MAPS[] = { "lb_frontends", "lb_slots", "lb_backends" };
static const char *const PROBE_MAPS[] = { "probe_want", "probe_got" };

/* the object opened with the agent's maps in place; with_rename 0: the rename's programs (rename_*) left unloaded */
static struct bpf_object *open_object(const char *file, const char *pins, int with_rename)
{
	char path[4096];
	struct bpf_object *obj = bpf_object__open_file(file, NULL);
	if (!obj) {
		fprintf(stderr, "open %s: %s\n", file, strerror(errno));
		return NULL;
	}
	for (unsigned i = 0; i < sizeof(AGENT_MAPS) / sizeof(*AGENT_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", pins, AGENT_MAPS[i]);
		int fd = bpf_obj_get(path);
		struct bpf_map *m = bpf_object__find_map_by_name(obj, AGENT_MAPS[i]);
		if (fd < 0 || !m || bpf_map__reuse_fd(m, fd)) {
			fprintf(stderr, "%s: %s\n", path, strerror(errno));
			bpf_object__close(obj);
			return NULL;
		}
		close(fd); // reuse_fd keeps a duplicate
	}
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		if (!with_rename && strcmp(bpf_program__name(p), "agent_bpf_exit"))
			bpf_program__set_autoload(p, false);
	}
	return obj;
}

int main(int argc, char **argv)
{
	char path[4096], norename[256] = "";
	if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "norename"))) {
		fprintf(stderr, "usage: %s OBJECT AGENT_PIN_ROOT PROBE_PIN_DIR [norename]\n", argv[0]);
		return 2;
	}
	int with_rename = argc == 4;
	if (!with_rename)
		snprintf(norename, sizeof(norename), "not asked for");
	struct bpf_object *obj = open_object(argv[1], argv[2], with_rename);
	if (!obj)
		return 1;
	if (with_rename && bpf_object__load(obj)) {
		// the rename's programs (tracepoints on every wake-up and rename) are the newer: without them
		snprintf(norename, sizeof(norename), "load with the rename's programs: %s", strerror(errno));
		bpf_object__close(obj);
		obj = open_object(argv[1], argv[2], 0);
		if (!obj)
			return 1;
		if (bpf_object__load(obj)) {
			fprintf(stderr, "load %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
	} else if (!with_rename && bpf_object__load(obj)) {
		fprintf(stderr, "load %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "agent_bpf_exit");
	struct bpf_link *link = prog ? bpf_program__attach(prog) : NULL;
	if (!link) {
		fprintf(stderr, "attach: %s\n", strerror(errno));
		return 1;
	}
	struct bpf_link *rename_links[8] = { 0 };
	unsigned nlinks = 0;
	struct bpf_program *p;
	bpf_object__for_each_program(p, obj) {
		if (norename[0] || !strcmp(bpf_program__name(p), "agent_bpf_exit") || nlinks == sizeof(rename_links) / sizeof(*rename_links))
			continue;
		if (!(rename_links[nlinks++] = bpf_program__attach(p))) {
			// all or none: a partial set would stamp some changes' starts and not others
			snprintf(norename, sizeof(norename), "attach %s: %s", bpf_program__name(p), strerror(errno));
			for (unsigned i = 0; i < nlinks; i++)
				bpf_link__destroy(rename_links[i]);
			nlinks = 0;
		}
	}
	for (unsigned i = 0; i < sizeof(PROBE_MAPS) / sizeof(*PROBE_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[3], PROBE_MAPS[i]);
		if (bpf_map__pin(bpf_object__find_map_by_name(obj, PROBE_MAPS[i]), path)) {
			fprintf(stderr, "pin %s: %s\n", path, strerror(errno));
			return 1;
		}
	}
	if (norename[0])
		printf("ready norename: %s\n", norename);
	else
		printf("ready rename\n");
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof(buf)) > 0) {
	}
	for (unsigned i = 0; i < sizeof(PROBE_MAPS) / sizeof(*PROBE_MAPS); i++) {
		snprintf(path, sizeof(path), "%s/%s", argv[3], PROBE_MAPS[i]);
		unlink(path);
	}
	for (unsigned i = 0; i < nlinks; i++)
		bpf_link__destroy(rename_links[i]);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
