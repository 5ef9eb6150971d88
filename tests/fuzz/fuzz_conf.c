/*
 * fuzz_conf.c — libFuzzer target for adainferd's configuration loader:
 * the input is written to adainferd.yaml in a private temporary directory
 * that also holds a (empty) model.gguf and a profiles/ directory, so a
 * config naming them relatively can load all the way; then conf_load reads
 * it as adainferd --check-config would (no overrides). Inline profiles go
 * through profile.c's parser on the way.
 *
 * Checked beyond the sanitizers: a failure always comes with a message; a
 * success gives values inside the documented ranges (conf.h, the LIMIT
 * table in conf.c) and a model and profile directory that exist.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "fuzz_common.h"
#include "proto/proto.h"

static char dir[64], conf_path[128], model_path[128], pdir_path[128];

static void
cleanup(void)
{
	unlink(conf_path);
	unlink(model_path);
	rmdir(pdir_path);
	rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "%s/fuzz-conf.XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	snprintf(conf_path, sizeof(conf_path), "%s/adainferd.yaml", dir);
	snprintf(model_path, sizeof(model_path), "%s/model.gguf", dir);
	snprintf(pdir_path, sizeof(pdir_path), "%s/profiles", dir);
	if ((fd = open(model_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 ||
	    mkdir(pdir_path, 0700) < 0) {
		perror(dir);
		abort();
	}
	close(fd);
	atexit(cleanup);
	return 0;
}

static void
write_conf(const uint8_t *data, size_t size)
{
	FILE *f = fopen(conf_path, "wb");

	if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
		perror(conf_path);
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct conf c; /* ~100 KB with its inline profiles: not on the stack */
	struct diag d = {{0}};
	struct stat st;
	int rc;

	write_conf(data, size);
	rc = conf_load(&c, conf_path, NULL, &d);
	fuzz_note("conf_load", rc < 0 ? d.msg : "ok");
	if (rc < 0) {
		FUZZ_CHECK(d.msg[0] != '\0', "error %d without a message", rc);
		return 0;
	}
	FUZZ_CHECK(rc == 0, "rc %d", rc);
	FUZZ_CHECK(strcmp(c.file, conf_path) == 0, "file '%s'", c.file);
	FUZZ_CHECK(c.model[0] != '\0' && access(c.model, R_OK) == 0, "model '%s'", c.model);
	FUZZ_CHECK(c.profile_dir[0] == '\0' ||
		       (stat(c.profile_dir, &st) == 0 && S_ISDIR(st.st_mode)),
		   "profile dir '%s'", c.profile_dir);
	FUZZ_CHECK(memchr(c.socket_path, '\0', sizeof(c.socket_path)) != NULL, "socket path");
	FUZZ_CHECK(c.socket_mode <= 0777, "mode %o", c.socket_mode);
	FUZZ_CHECK(c.threads >= 0 && c.threads <= 256, "threads %d", c.threads);
	FUZZ_CHECK(c.workers >= 1 && c.workers <= 16, "workers %d", c.workers);
	FUZZ_CHECK(c.context <= 1u << 20, "context %u", c.context);
	FUZZ_CHECK(c.n_allow_uids >= 0 && c.n_allow_uids <= CONF_MAX_IDS && c.n_allow_gids >= 0 &&
		       c.n_allow_gids <= CONF_MAX_IDS,
		   "%d uids, %d gids", c.n_allow_uids, c.n_allow_gids);
	FUZZ_CHECK(c.limits.max_message_bytes >= PROTO_MAX_MSG_MIN &&
		       c.limits.max_message_bytes <= PROTO_MAX_MSG_LIMIT,
		   "max_message_bytes %u", c.limits.max_message_bytes);
	FUZZ_CHECK(c.limits.max_prompt_tokens >= 1 && c.limits.max_tokens >= 1 &&
		       c.limits.max_connections >= 1 && c.limits.max_queued >= 1 &&
		       c.limits.max_write_queue_bytes >= 65536,
		   "a limit below its minimum");
	FUZZ_CHECK(c.log_level >= LOG_LEVEL_ERR && c.log_level <= LOG_LEVEL_DEBUG, "level %d",
		   (int)c.log_level);
	FUZZ_CHECK(c.n_inline_profiles >= 0 && c.n_inline_profiles <= CONF_MAX_INLINE_PROFILES,
		   "%d inline profiles", c.n_inline_profiles);
	for (int i = 0; i < c.n_inline_profiles; i++) {
		const struct profile *p = &c.inline_profiles[i];

		FUZZ_CHECK(p->task[0] != '\0' && strchr(p->task, '/') == NULL, "task '%s'",
			   p->task);
		FUZZ_CHECK(p->pol.min_layer >= 1 && p->pol.stride >= 1, "min_layer %u stride %u",
			   p->pol.min_layer, p->pol.stride);
	}
	return 0;
}
