/*
 * test_conf.c — adainferd.yaml into struct conf: defaults, every section,
 * paths relative to the file, overrides, the shared typing rules, errors at
 * file:line:column, and the peer check with supplementary groups.
 */
#include <stdlib.h>
#include <unistd.h>

#include "daemon/conf.h"
#include "test.h"

static char dir[256];

static const char *
write_conf(const char *text)
{
	static char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/adainferd.yaml", dir);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static int
load(struct conf *c, const char *text, struct diag *d)
{
	struct conf_overrides o = {.threads = -1};

	return conf_load(c, write_conf(text), &o, d);
}

static void
setup(void)
{
	char model[512];

	if (dir[0] != '\0')
		return;
	snprintf(dir, sizeof(dir), "/tmp/adainfer-conf-XXXXXX");
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(model, sizeof(model), "%s/m.gguf", dir);
	fclose(fopen(model, "w")); /* existence is what conf checks; the model is loaded later */
}

static void
test_sections(void)
{
	struct conf c;
	struct diag d = {{0}};

	setup();
	ASSERT_OK(load(&c,
		       "model: m.gguf\nworkers: 2\nthreads: 3\ncontext: 128\nkv_cache: f16\n"
		       "socket: {path: /tmp/x.sock, mode: \"0660\"}\n"
		       "limits: {max_connections: 5, max_queued: 7, idle_timeout_ms: 100}\n"
		       "log: {level: debug}\naccess: {allow_uids: [1000], allow_gids: [4242]}\n",
		       &d));
	ASSERT_CONTAINS(c.model, dir); /* relative to the file's directory */
	ASSERT_EQ(c.workers, 2);
	ASSERT_EQ(c.threads, 3);
	ASSERT_EQ(c.context, 128);
	ASSERT_EQ(c.kv_cache, KV_F16);
	ASSERT_STREQ(c.socket_path, "/tmp/x.sock");
	ASSERT_EQ(c.socket_mode, 0660); /* octal digits, quoted or not */
	ASSERT_EQ(c.limits.max_connections, 5);
	ASSERT_EQ(c.limits.max_queued, 7);
	ASSERT_EQ(c.limits.idle_timeout_ms, 100);
	ASSERT_EQ(c.limits.max_message_bytes, 1u << 20); /* defaults stay */
	ASSERT(!conf_peer_allowed(&c, 1001, 1001, NULL, 0));
	ASSERT(conf_peer_allowed(&c, 1000, 1000, NULL, 0));
	ASSERT(conf_peer_allowed(&c, 1001, 4242, NULL, 0));
	{
		gid_t groups[] = {10, 4242};

		ASSERT(conf_peer_allowed(&c, 1001, 1001, groups, 2)); /* usermod -aG */
		ASSERT(!conf_peer_allowed(&c, 1001, 1001, groups, 1));
	}
}

static void
test_overrides_and_empty(void)
{
	struct conf c;
	struct diag d = {{0}};
	char model[512];
	struct conf_overrides o = {.threads = 4, .socket = "/tmp/o.sock"};

	setup();
	snprintf(model, sizeof(model), "%s/m.gguf", dir);
	o.model = model;
	ASSERT_OK(conf_load(&c, write_conf(""), &o, &d)); /* empty: defaults, plus --model */
	ASSERT_EQ(c.workers, 1);
	ASSERT_EQ(c.batch, CONF_DEFAULT_BATCH);
	ASSERT_EQ(c.prefill_chunk, 0);
	ASSERT_EQ(c.limits.max_connections, 64);
	ASSERT_EQ(c.kv_cache, KV_F32); /* the default keeps today's exact F32 cache */
	ASSERT_OK(conf_load(&c, write_conf("batch: 16\nprefill_chunk: 32\n"), &o, &d));
	ASSERT_EQ(c.batch, 16);
	ASSERT_EQ(c.prefill_chunk, 32);
	ASSERT_OK(conf_load(&c, write_conf("kv_cache: f32\n"), &o, &d));
	ASSERT_EQ(c.kv_cache, KV_F32);
	ASSERT_OK(conf_load(&c, write_conf("model: nowhere.gguf\nthreads: 1\n"), &o, &d));
	ASSERT_STREQ(c.model, model); /* the option wins, so the file's missing model is fine */
	ASSERT_EQ(c.threads, 4);
	ASSERT_STREQ(c.socket_path, "/tmp/o.sock");
	ASSERT_EQ(load(&c, "", &d), -EINVAL); /* no model anywhere */
	ASSERT_CONTAINS(d.msg, "no model configured");
}

static void
test_errors(void)
{
	static const struct {
		const char *text, *where, *msg;
	} bad[] = {
	    {"model: m.gguf\nworkers: \"1\"\n", ":2:10:", "got a quoted string"},
	    {"model: m.gguf\nworkers: 99\n", ":2:10:", "out of range"},
	    {"model: m.gguf\nbatch: 0\n", ":2:8:", "out of range"},
	    {"model: m.gguf\nbatch: 65\n", ":2:8:", "out of range"},
	    {"model: m.gguf\nbogus: 1\n", ":2:1:", "unknown key 'bogus'"},
	    {"model: m.gguf\nworkers: 1\nworkers: 2\n", ":3:1:", "duplicate key 'workers'"},
	    {"model: m.gguf\nlimits: 3\n", ":2:9:", "must be a mapping"},
	    {"model: m.gguf\nlog: {level: loud}\n", ":2:14:", "must be error, warning"},
	    {"model: m.gguf\naccess: {allow_gids: [no-such-group-x]}\n", ":2:23:", "no such group"},
	    {"model: m.gguf\nkv_cache: q8_0\n",
	     ":2:11:", "'kv_cache' must be f32 or f16, got 'q8_0'"},
	    {"model: m.gguf\nkv_cache: F16\n", ":2:11:", "must be f32 or f16"},
	    {"model: m.gguf\nkv_cache: [f16]\n", ":2:11:", "kv_cache"},
	    {"model: m.gguf\nkv_cache: \"\"\n", ":2:11:", "got ''"},
	    {"model: [m.gguf\n", ":2:1:", ""}, /* YAML syntax: libyaml's mark */
	};

	setup();
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct conf c;
		struct diag d = {{0}};

		ASSERT_EQ(load(&c, bad[i].text, &d), -EINVAL);
		fprintf(stderr, "  %s\n", d.msg);
		ASSERT_CONTAINS(d.msg, bad[i].where);
		ASSERT_CONTAINS(d.msg, bad[i].msg);
	}
}

TEST_MAIN(TEST_CASE(test_sections), TEST_CASE(test_overrides_and_empty), TEST_CASE(test_errors))
