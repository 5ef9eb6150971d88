/*
 * conf.c — reads adainferd.yaml with libyaml's document API into a struct
 * conf and validates every key: unknown keys, wrong types, out-of-range
 * values and missing files are errors naming file:line:column. Used at
 * start, by --check-config and on reload; it must never exit, log a config
 * error itself (the caller decides where errors go) or leave a half-built
 * conf behind that the caller could mistake for a valid one.
 */
#include "conf.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config.h"
#include "daemon/engine/chat.h"
#include "daemon/profile/yamlx.h"
#include "proto/proto.h"

struct parse {
	struct yx y;    /* file, document, diag: the shared YAML rules (yamlx.h) */
	char dir[4096]; /* directory of file, for relative paths */
	struct conf *c;
};

static int
get_uint(struct parse *p, const yaml_node_t *n, const char *key, uint64_t min, uint64_t max,
	 uint32_t *out, int base)
{
	uint64_t v;
	int rc = yx_uint(&p->y, n, key, min, max, base, &v);

	if (rc == 0)
		*out = (uint32_t)v;
	return rc;
}

static int
get_path(struct parse *p, const yaml_node_t *n, const char *key, char *out, size_t cap)
{
	const char *s = NULL;
	int rc, w;

	if ((rc = yx_scalar(&p->y, n, key, &s)) < 0)
		return rc;
	if (*s == '\0')
		return yx_err(&p->y, n, "'%s' must not be empty", key);
	if (s[0] == '/' || p->dir[0] == '\0')
		w = snprintf(out, cap, "%s", s);
	else
		w = snprintf(out, cap, "%s/%s", p->dir, s);
	if (w < 0 || (size_t)w >= cap)
		return yx_err(&p->y, n, "'%s' is too long (at most %zu bytes)", key, cap - 1);
	return 0;
}

static int
get_ids(struct parse *p, const yaml_node_t *n, const char *key, bool groups)
{
	struct conf *c = p->c;

	if (n->type != YAML_SEQUENCE_NODE)
		return yx_err(&p->y, n, "'%s' must be a list, got %s", key, yx_kind(n));
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		yaml_node_t *e = yaml_document_get_node(p->y.doc, *it);
		const char *s = NULL;
		char *end;
		unsigned long v;
		int rc;

		if ((rc = yx_scalar(&p->y, e, key, &s)) < 0)
			return rc;
		if ((groups ? c->n_allow_gids : c->n_allow_uids) >= CONF_MAX_IDS)
			return yx_err(&p->y, e, "'%s' has more than %d entries", key, CONF_MAX_IDS);
		errno = 0;
		v = strtoul(s, &end, 10);
		if (*s >= '0' && *s <= '9' && *end == '\0') {
			if (errno == ERANGE || v >= (unsigned long)UINT32_MAX)
				return yx_err(&p->y, e, "'%s': id %s out of range", key, s);
		} else if (groups) {
			struct group *g = getgrnam(s);

			if (g == NULL)
				return yx_err(&p->y, e, "'%s': no such group '%s'", key, s);
			v = g->gr_gid;
		} else {
			struct passwd *pw = getpwnam(s);

			if (pw == NULL)
				return yx_err(&p->y, e, "'%s': no such user '%s'", key, s);
			v = pw->pw_uid;
		}
		if (groups)
			c->allow_gids[c->n_allow_gids++] = (gid_t)v;
		else
			c->allow_uids[c->n_allow_uids++] = (uid_t)v;
	}
	return 0;
}

/* One level of a mapping: each key dispatched through a table; unknown keys are errors. */
struct key_handler {
	const char *key;
	int (*fn)(struct parse *p, yaml_node_t *v, const char *key);
};

struct walk_ud {
	struct parse *p;
	const struct key_handler *t;
};

static int
walk_pair(const struct yx *y, yaml_node_t *v, int idx, void *ud)
{
	const struct walk_ud *w = ud;

	(void)y;
	return w->t[idx].fn(w->p, v, w->t[idx].key);
}

static int
walk(struct parse *p, yaml_node_t *map, const char *where, const struct key_handler *t)
{
	const char *names[32];
	struct walk_ud w = {p, t};
	int n = 0;

	while (t[n].key != NULL && n < (int)ARRAY_LEN(names)) {
		names[n] = t[n].key;
		n++;
	}
	return yx_walk(&p->y, map, where, names, n, walk_pair, &w, NULL);
}

/* Where a path key was written ("file:line:column"), for the checks made after the overrides. */
static void
mark(struct parse *p, const yaml_node_t *n, char *out, size_t cap)
{
	snprintf(out, cap, "%s:%zu:%zu", p->y.file, n->start_mark.line + 1,
		 n->start_mark.column + 1);
}

static int
k_model(struct parse *p, yaml_node_t *v, const char *key)
{
	mark(p, v, p->c->model_where, sizeof(p->c->model_where));
	return get_path(p, v, key, p->c->model, sizeof(p->c->model));
}

static int
k_threads(struct parse *p, yaml_node_t *v, const char *key)
{
	uint32_t x = 0;
	int rc = get_uint(p, v, key, 0, 256, &x, 10);

	p->c->threads = (int)x;
	return rc;
}

static int
k_workers(struct parse *p, yaml_node_t *v, const char *key)
{
	uint32_t x = 0;
	int rc = get_uint(p, v, key, 1, 16, &x, 10);

	p->c->workers = (int)x;
	return rc;
}

static int
k_batch(struct parse *p, yaml_node_t *v, const char *key)
{
	uint32_t x = 0;
	int rc = get_uint(p, v, key, 1, CONF_MAX_BATCH, &x, 10);

	p->c->batch = (int)x;
	return rc;
}

static int
k_prefill_chunk(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_uint(p, v, key, 0, 1u << 20, &p->c->prefill_chunk, 10);
}

static int
k_context(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_uint(p, v, key, 0, 1u << 20, &p->c->context, 10);
}

static int
k_kv_cache(struct parse *p, yaml_node_t *v, const char *key)
{
	const char *s = NULL;
	int rc;

	if ((rc = yx_scalar(&p->y, v, key, &s)) < 0)
		return rc;
	if (kv_type_from_name(s, &p->c->kv_cache) < 0)
		return yx_err(&p->y, v, "'%s' must be f32 or f16, got '%.64s'", key, s);
	return 0;
}

/* Bytes, as a number or with a K/M/G suffix (powers of 1024; "KiB" etc. too), up to 1 TiB. */
static int
k_prefix_cache(struct parse *p, yaml_node_t *v, const char *key)
{
	const char *s = NULL;
	char *end;
	unsigned long long x;
	unsigned shift = 0;
	int rc;

	if ((rc = yx_scalar(&p->y, v, key, &s)) < 0)
		return rc;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M')
		shift = 20;
	else if (*end == 'G')
		shift = 30;
	if (shift != 0 &&
	    (end[1] == '\0' || strcmp(end + 1, "iB") == 0 || strcmp(end + 1, "B") == 0))
		end += strlen(end);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || x > (1ull << 40) >> shift)
		return yx_err(&p->y, v,
			      "'%s' must be a size in bytes (as 268435456 or 256M), at most 1T, "
			      "got '%.64s'",
			      key, s);
	p->c->prefix_cache = (size_t)(x << shift);
	return 0;
}

static int
k_state_dir(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_path(p, v, key, p->c->state_dir, sizeof(p->c->state_dir));
}

static int
k_sock_path(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_path(p, v, key, p->c->socket_path, sizeof(p->c->socket_path));
}

static int
k_sock_mode(struct parse *p, yaml_node_t *v, const char *key)
{
	/* YAML 1.1 reads 0660 as octal only sometimes; we always read the digits as octal. */
	return get_uint(p, v, key, 0, 0777, &p->c->socket_mode, 8);
}

static int
k_socket(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {
	    {"path", k_sock_path}, {"mode", k_sock_mode}, {NULL, NULL}};

	(void)key;
	return walk(p, v, "'socket'", t);
}

static int
k_uids(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_ids(p, v, key, false);
}

static int
k_gids(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_ids(p, v, key, true);
}

static int
k_access(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {
	    {"allow_uids", k_uids}, {"allow_gids", k_gids}, {NULL, NULL}};

	(void)key;
	return walk(p, v, "'access'", t);
}

#define LIMIT(name, lo, hi)                                                                        \
	static int k_##name(struct parse *p, yaml_node_t *v, const char *key)                      \
	{                                                                                          \
		return get_uint(p, v, key, lo, hi, &p->c->limits.name, 10);                        \
	}
LIMIT(max_message_bytes, PROTO_MAX_MSG_MIN, PROTO_MAX_MSG_LIMIT)
LIMIT(max_prompt_tokens, 1, 1u << 20)
LIMIT(max_tokens, 1, 1u << 20)
LIMIT(max_connections, 1, 65536)
LIMIT(max_queued, 1, 65536)
LIMIT(idle_timeout_ms, 0, 86400000)
LIMIT(request_deadline_ms, 0, 86400000)
LIMIT(shutdown_grace_ms, 0, 3600000)
LIMIT(max_write_queue_bytes, 65536, 1u << 30)
#undef LIMIT

static int
k_limits(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {{"max_message_bytes", k_max_message_bytes},
					       {"max_prompt_tokens", k_max_prompt_tokens},
					       {"max_tokens", k_max_tokens},
					       {"max_connections", k_max_connections},
					       {"max_queued", k_max_queued},
					       {"idle_timeout_ms", k_idle_timeout_ms},
					       {"request_deadline_ms", k_request_deadline_ms},
					       {"shutdown_grace_ms", k_shutdown_grace_ms},
					       {"max_write_queue_bytes", k_max_write_queue_bytes},
					       {NULL, NULL}};

	(void)key;
	return walk(p, v, "'limits'", t);
}

static int
k_level(struct parse *p, yaml_node_t *v, const char *key)
{
	const char *s = NULL;
	int rc;

	if ((rc = yx_scalar(&p->y, v, key, &s)) < 0)
		return rc;
	if (log_parse_level(s, &p->c->log_level) < 0)
		return yx_err(&p->y, v, "'%s' must be error, warning, info or debug, got '%s'", key,
			      s);
	return 0;
}

static int
k_log(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {{"level", k_level}, {NULL, NULL}};

	(void)key;
	return walk(p, v, "'log'", t);
}

static int
k_pdir(struct parse *p, yaml_node_t *v, const char *key)
{
	mark(p, v, p->c->profile_dir_where, sizeof(p->c->profile_dir_where));
	return get_path(p, v, key, p->c->profile_dir, sizeof(p->c->profile_dir));
}

/* profiles.inline: TASK -> a profile mapping, parsed by profile.c's own parser. */
static int
k_pinline(struct parse *p, yaml_node_t *v, const char *key)
{
	if (v->type != YAML_MAPPING_NODE)
		return yx_err(&p->y, v, "'%s' must be a mapping of task: profile, got %s", key,
			      yx_kind(v));
	for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(p->y.doc, pr->key);
		yaml_node_t *pv = yaml_document_get_node(p->y.doc, pr->value);
		struct profile *pf;
		const char *task;
		int rc;

		if (k == NULL || pv == NULL || k->type != YAML_SCALAR_NODE)
			return yx_err(&p->y, k != NULL ? k : v, "a task name must be a scalar");
		task = (const char *)k->data.scalar.value;
		if (task[0] == '\0' || strlen(task) >= PROFILE_TASK_MAX || strchr(task, '/'))
			return yx_err(&p->y, k, "'%s' is not a task name", task);
		if (p->c->n_inline_profiles >= CONF_MAX_INLINE_PROFILES)
			return yx_err(&p->y, k, "more than %d inline profiles",
				      CONF_MAX_INLINE_PROFILES);
		pf = &p->c->inline_profiles[p->c->n_inline_profiles];
		profile_init(pf);
		strlcpy_(pf->task, task, sizeof(pf->task));
		rc = profile_from_node(pf, p->y.doc, pv, p->y.file, p->y.d);
		if (pf->pol.clf.probe != NULL) { /* the config keeps no owned weights */
			profile_deinit(pf);
			return yx_err(&p->y, pv,
				      "a probe profile must be a file of profile_dir, not inline");
		}
		if (rc < 0)
			return rc;
		if (strcmp(pf->task, task) != 0)
			return yx_err(&p->y, pv, "the profile under '%s' names task '%s'", task,
				      pf->task);
		p->c->n_inline_profiles++;
	}
	return 0;
}

static int
k_profiles(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {
	    {"dir", k_pdir}, {"inline", k_pinline}, {NULL, NULL}};

	(void)key;
	return walk(p, v, "'profiles'", t);
}

/* shadow.tasks: TASK -> RATE in [0, 1]. */
static int
k_shtasks(struct parse *p, yaml_node_t *v, const char *key)
{
	struct conf_shadow *cs = &p->c->shadow;

	if (v->type != YAML_MAPPING_NODE)
		return yx_err(&p->y, v, "'%s' must be a mapping of task: rate, got %s", key,
			      yx_kind(v));
	for (yaml_node_pair_t *pr = v->data.mapping.pairs.start; pr < v->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = yaml_document_get_node(p->y.doc, pr->key);
		yaml_node_t *pv = yaml_document_get_node(p->y.doc, pr->value);
		const char *task;
		int rc;

		if (k == NULL || pv == NULL || k->type != YAML_SCALAR_NODE)
			return yx_err(&p->y, k != NULL ? k : v, "a task name must be a scalar");
		task = (const char *)k->data.scalar.value;
		if (task[0] == '\0' || strlen(task) >= sizeof(cs->task[0]) || strchr(task, '/'))
			return yx_err(&p->y, k, "'%s' is not a task name", task);
		for (int i = 0; i < cs->n_tasks; i++)
			if (strcmp(cs->task[i], task) == 0)
				return yx_err(&p->y, k, "task '%s' given twice", task);
		if (cs->n_tasks >= CONF_MAX_SHADOW_TASKS)
			return yx_err(&p->y, k, "more than %d shadowed tasks",
				      CONF_MAX_SHADOW_TASKS);
		if ((rc = yx_double(&p->y, pv, task, 0, 1, &cs->rate[cs->n_tasks])) < 0)
			return rc;
		strlcpy_(cs->task[cs->n_tasks], task, sizeof(cs->task[0]));
		cs->n_tasks++;
	}
	return 0;
}

static int
k_shqueued(struct parse *p, yaml_node_t *v, const char *key)
{
	return get_uint(p, v, key, 1, 1u << 16, &p->c->shadow.max_queued, 10);
}

static int
k_shadow(struct parse *p, yaml_node_t *v, const char *key)
{
	static const struct key_handler t[] = {
	    {"tasks", k_shtasks}, {"max_queued", k_shqueued}, {NULL, NULL}};

	(void)key;
	return walk(p, v, "'shadow'", t);
}

/* chat_template: one of the template names (chat.h), checked here so a typo fails at load. */
static int
k_chat_template(struct parse *p, yaml_node_t *v, const char *key)
{
	const char *s = NULL;
	int rc;

	if ((rc = yx_scalar(&p->y, v, key, &s)) < 0)
		return rc;
	if (chat_tmpl_from_name(s, strlen(s)) == CHAT_TMPL_UNKNOWN)
		return yx_err(&p->y, v,
			      "'%s': unknown template '%.64s' (chatml, llama2, llama3, mistral-v7, "
			      "phi3, gemma, zephyr, ...: adainferd.yaml(5) lists them)",
			      key, s);
	strlcpy_(p->c->chat_template, s, sizeof(p->c->chat_template));
	return 0;
}

static const struct key_handler top_keys[] = {{"model", k_model},
					      {"threads", k_threads},
					      {"workers", k_workers},
					      {"batch", k_batch},
					      {"prefill_chunk", k_prefill_chunk},
					      {"context", k_context},
					      {"kv_cache", k_kv_cache},
					      {"prefix_cache", k_prefix_cache},
					      {"socket", k_socket},
					      {"access", k_access},
					      {"limits", k_limits},
					      {"log", k_log},
					      {"profiles", k_profiles},
					      {"state_dir", k_state_dir},
					      {"chat_template", k_chat_template},
					      {"shadow", k_shadow},
					      {NULL, NULL}};

/* The first of a ':'-separated list of directories (systemd's *Directory= variables). */
static bool
first_dir(const char *list, char *out, size_t cap)
{
	if (list == NULL || *list == '\0' || strlcpy_(out, list, cap) >= cap)
		return false;
	out[strcspn(out, ":")] = '\0';
	return true;
}

/* $STATE_DIRECTORY (StateDirectory=), else the user's cache directory, else none. */
static void
default_state_dir(struct conf *c)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	size_t cap = sizeof(c->state_dir);

	if (first_dir(getenv("STATE_DIRECTORY"), c->state_dir, cap))
		return;
	if (xdg != NULL && xdg[0] == '/' &&
	    (size_t)snprintf(c->state_dir, cap, "%s/adainfer", xdg) < cap)
		return;
	if (home != NULL && home[0] == '/' &&
	    (size_t)snprintf(c->state_dir, cap, "%s/.cache/adainfer", home) < cap)
		return;
	c->state_dir[0] = '\0';
}

void
conf_defaults(struct conf *c)
{
	char first[4096];

	memset(c, 0, sizeof(*c));
	c->socket_mode = 0660;
	c->threads = 0;
	c->workers = 1;
	c->batch = CONF_DEFAULT_BATCH;
	c->log_level = LOG_LEVEL_INFO;
	c->limits.max_message_bytes = 1u << 20;
	c->limits.max_prompt_tokens = 4096;
	c->prefix_cache = CONF_PREFIX_CACHE_DEFAULT;
	c->limits.max_tokens = 256;
	c->limits.max_connections = 64;
	c->limits.max_queued = 64;
	c->limits.idle_timeout_ms = 0;
	c->limits.request_deadline_ms = 60000;
	c->limits.shutdown_grace_ms = 5000;
	c->limits.max_write_queue_bytes = 4u << 20;
	c->shadow.max_queued = 16;
	default_state_dir(c);
	/* RuntimeDirectory= may list several directories separated by ':'; use the first. */
	if (first_dir(getenv("RUNTIME_DIRECTORY"), first, sizeof(first))) {
		if ((size_t)snprintf(c->socket_path, sizeof(c->socket_path), "%s/adainferd.sock",
				     first) < sizeof(c->socket_path))
			return;
	}
	strlcpy_(c->socket_path, ADAINFERD_SOCK, sizeof(c->socket_path));
}

static int
load_file(struct conf *c, const char *path, struct diag *d)
{
	struct parse p = {.y = {.file = path, .d = d}, .c = c};
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	FILE *f;
	char *slash;
	int rc;

	if ((f = fopen(path, "r")) == NULL)
		return diag_set(d, -errno, "%s: %s", path, strerror(errno));
	strlcpy_(c->file, path, sizeof(c->file));
	strlcpy_(p.dir, path, sizeof(p.dir));
	if ((slash = strrchr(p.dir, '/')) != NULL)
		*(slash == p.dir ? slash + 1 : slash) = '\0';
	else
		p.dir[0] = '\0';
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		return diag_set(d, -ENOMEM, "%s: out of memory", path);
	}
	yaml_parser_set_input_file(&parser, f);
	if ((rc = yx_load(&parser, &doc, path, d)) < 0) {
		yaml_parser_delete(&parser);
		fclose(f);
		return rc;
	}
	p.y.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root == NULL) /* an empty file: defaults only */
		rc = 0;
	else if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)
		rc = 0;
	else
		rc = walk(&p, root, "the top level", top_keys);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int
conf_load(struct conf *c, const char *path, const struct conf_overrides *o, struct diag *d)
{
	int rc;

	conf_defaults(c);
	if (path != NULL && (rc = load_file(c, path, d)) < 0)
		return rc;
	if (o != NULL) {
		if (o->model != NULL) {
			if (strlcpy_(c->model, o->model, sizeof(c->model)) >= sizeof(c->model))
				return diag_set(d, -EINVAL, "--model: path too long");
			if (access(c->model, R_OK) != 0)
				return diag_set(d, -ENOENT, "--model %s: %s", c->model,
						strerror(errno));
		}
		if (o->socket != NULL && strlcpy_(c->socket_path, o->socket,
						  sizeof(c->socket_path)) >= sizeof(c->socket_path))
			return diag_set(d, -EINVAL, "--socket: path longer than %zu bytes",
					sizeof(c->socket_path) - 1);
		if (o->profile_dir != NULL) {
			if (strlcpy_(c->profile_dir, o->profile_dir, sizeof(c->profile_dir)) >=
			    sizeof(c->profile_dir))
				return diag_set(d, -EINVAL, "--profile-dir: path too long");
			strlcpy_(c->profile_dir_where, "--profile-dir",
				 sizeof(c->profile_dir_where));
		}
		if (o->log_level != NULL && log_parse_level(o->log_level, &c->log_level) < 0)
			return diag_set(d, -EINVAL, "--log-level: unknown level '%s'",
					o->log_level);
		if (o->threads >= 0)
			c->threads = o->threads;
	}
	if (c->model[0] == '\0')
		return diag_set(d, -EINVAL, "%s%sno model configured (set 'model' or use --model)",
				c->file, c->file[0] ? ": " : "");
	/* Files are checked once the overrides are in, so --model can stand in for a missing one.
	 */
	if (access(c->model, R_OK) != 0)
		return diag_set(d, -ENOENT, "%s: model %s: %s", c->model_where, c->model,
				strerror(errno));
	if (c->profile_dir[0] != '\0') {
		struct stat st;

		if (stat(c->profile_dir, &st) != 0)
			return diag_set(d, -ENOENT, "%s: profile directory %s: %s",
					c->profile_dir_where, c->profile_dir, strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return diag_set(d, -ENOTDIR, "%s: %s is not a directory",
					c->profile_dir_where, c->profile_dir);
	}
	return 0;
}

static bool
gid_allowed(const struct conf *c, gid_t gid)
{
	for (int i = 0; i < c->n_allow_gids; i++)
		if (c->allow_gids[i] == gid)
			return true;
	return false;
}

bool
conf_peer_allowed(const struct conf *c, uid_t uid, gid_t gid, const gid_t *groups, int n_groups)
{
	if (c->n_allow_uids == 0 && c->n_allow_gids == 0)
		return true;
	if (uid == 0 || uid == getuid())
		return true;
	for (int i = 0; i < c->n_allow_uids; i++)
		if (c->allow_uids[i] == uid)
			return true;
	if (gid_allowed(c, gid))
		return true;
	for (int i = 0; i < n_groups; i++)
		if (gid_allowed(c, groups[i]))
			return true;
	return false;
}
