/*
 * tasks.c — adapter between the daemon and profile.h: loads a snapshot's
 * profile set (checked against the model), finds a task's profile,
 * describes profiles for `info`, and turns a request's inline profile
 * (a msgpack map) into a struct profile. The inline map is rewritten as
 * YAML flow text and parsed by profile_parse_buffer, so a request's profile
 * passes exactly the checks a file does. Must never trust the map's size:
 * the text is bounded and the depth is limited.
 */
#include "tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/profile/profile.h"
#include "proto/proto.h"

#define INLINE_MAX_TEXT  (16u << 10)
#define INLINE_MAX_DEPTH 4

int
tasks_load(struct profile_set **out, const struct conf *c, const struct model *m, struct diag *d)
{
	struct profile_set *ps = NULL;
	int rc;

	*out = NULL;
	if (c->profile_dir[0] == '\0' && c->n_inline_profiles == 0)
		return 0;
	if (c->profile_dir[0] == '\0')
		ps = profile_set_new();
	else if ((rc = profile_set_load_dir(&ps, c->profile_dir, d)) < 0)
		return rc;
	/* Inline profiles join the directory's; a task in both is an error naming both. */
	for (int i = 0; i < c->n_inline_profiles; i++) {
		if ((rc = profile_set_add(ps, &c->inline_profiles[i], d)) < 0) {
			profile_set_free(ps);
			return rc;
		}
	}
	if ((rc = profile_set_check_model(ps, m->sha256, m->hp.n_layers, d)) < 0 ||
	    (rc = profile_set_check_embd(ps, m->hp.n_embd, m->hp.n_layers, d)) < 0) {
		profile_set_free(ps);
		return rc;
	}
	*out = ps;
	return 0;
}

void
tasks_free(struct profile_set *ps)
{
	profile_set_free(ps);
}

const struct profile *
tasks_find(const struct profile_set *ps, const char *task)
{
	if (ps == NULL)
		return NULL;
	return profile_set_find(ps, task);
}

int
tasks_unknown(const struct profile_set *ps, const char *task, struct diag *d)
{
	char names[160];
	size_t n = 0;

	if (ps == NULL || ps->n == 0)
		return diag_set(d, -ENOENT,
				"no profile for task '%s'; no tasks are loaded (profiles.dir or "
				"--profile-dir names their directory)",
				task);
	names[0] = '\0';
	for (size_t i = 0; i < ps->n; i++) {
		int k =
		    snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "", ps->v[i].task);

		if (k < 0 || (size_t)k >= sizeof(names) - n) { /* too many to list: say so */
			snprintf(names + (n < sizeof(names) - 6 ? n : sizeof(names) - 6), 6,
				 ", ...");
			break;
		}
		n += (size_t)k;
	}
	return diag_set(d, -ENOENT, "no profile for task '%s'; loaded tasks: %s", task, names);
}

int
tasks_count(const struct profile_set *ps)
{
	return ps == NULL ? 0 : (int)ps->n;
}

int
tasks_pack_names(const struct profile_set *ps, msgpack_packer *pk)
{
	size_t n = ps == NULL ? 0 : ps->n;

	if (msgpack_pack_array(pk, n) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (proto_pack_cstr(pk, ps->v[i].task) < 0)
			return -ENOMEM;
	return 0;
}

static const char *
kind_name(enum exitclf_kind k)
{
	switch (k) {
	case EXITCLF_GAP:
		return "gap";
	case EXITCLF_SVM:
		return "svm";
	case EXITCLF_CRF:
		return "crf";
	case EXITCLF_PROBE:
		return "probe";
	}
	return "unknown";
}

int
tasks_pack_profiles(const struct profile_set *ps, msgpack_packer *pk)
{
	size_t n = ps == NULL ? 0 : ps->n;

	if (msgpack_pack_map(pk, n) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct profile *p = &ps->v[i];
		bool has_agr = p->prov.present && !isnan(p->prov.agreement);
		bool has_pr = p->prov.present && !isnan(p->prov.pruning);

		if (proto_pack_cstr(pk, p->task) < 0 ||
		    msgpack_pack_map(pk, 5 + (size_t)has_agr + (size_t)has_pr) < 0 ||
		    proto_pack_cstr(pk, PROTO_K_CLASSIFIER) < 0 ||
		    proto_pack_cstr(pk, kind_name(p->pol.clf.kind)) < 0 ||
		    proto_pack_cstr(pk, PROTO_K_THRESHOLD) < 0 ||
		    msgpack_pack_double(pk, p->pol.clf.threshold) < 0 ||
		    proto_pack_cstr(pk, PROTO_K_MIN_LAYER) < 0 ||
		    msgpack_pack_uint32(pk, p->pol.min_layer) < 0 ||
		    proto_pack_cstr(pk, PROTO_K_STRIDE) < 0 ||
		    msgpack_pack_uint32(pk, p->pol.stride) < 0 ||
		    proto_pack_cstr(pk, PROTO_K_SOURCE) < 0 || proto_pack_cstr(pk, p->source) < 0)
			return -ENOMEM;
		if (has_agr && (proto_pack_cstr(pk, PROTO_K_AGREEMENT) < 0 ||
				msgpack_pack_double(pk, p->prov.agreement) < 0))
			return -ENOMEM;
		if (has_pr && (proto_pack_cstr(pk, PROTO_K_PRUNING) < 0 ||
			       msgpack_pack_double(pk, p->prov.pruning) < 0))
			return -ENOMEM;
	}
	return 0;
}

/* ---- inline profiles: msgpack -> YAML flow text -------------------------------- */

struct text {
	char buf[INLINE_MAX_TEXT];
	size_t len;
	bool overflow;
};

__attribute__((format(printf, 2, 3))) static void
put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(t->buf) - t->len)
		t->overflow = true;
	else
		t->len += (size_t)n;
}

static int
emit(struct text *t, const msgpack_object *o, int depth, struct diag *d)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		put(t, "null");
		return 0;
	case MSGPACK_OBJECT_BOOLEAN:
		put(t, "%s", o->via.boolean ? "true" : "false");
		return 0;
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		put(t, "%llu", (unsigned long long)o->via.u64);
		return 0;
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		put(t, "%lld", (long long)o->via.i64);
		return 0;
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		if (!isfinite(o->via.f64))
			return diag_set(d, -EINVAL, "profile: numbers must be finite");
		put(t, "%.17g", o->via.f64);
		return 0;
	case MSGPACK_OBJECT_STR:
		if (memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
			return diag_set(d, -EINVAL, "profile: a string or key holds a NUL byte");
		put(t, "\"");
		for (uint32_t i = 0; i < o->via.str.size; i++) {
			unsigned char c = (unsigned char)o->via.str.ptr[i];

			if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
				put(t, "%c", c);
			else
				put(t, "\\x%02x", c);
		}
		put(t, "\"");
		return 0;
	case MSGPACK_OBJECT_ARRAY:
	case MSGPACK_OBJECT_MAP:
		break;
	default:
		return diag_set(d, -EINVAL, "profile: unsupported value of type %s",
				proto_type_name(o));
	}
	if (depth >= INLINE_MAX_DEPTH)
		return diag_set(d, -EINVAL, "profile: nested too deeply");
	if (o->type == MSGPACK_OBJECT_ARRAY) {
		put(t, "[");
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			int rc;

			if (i > 0)
				put(t, ", ");
			if ((rc = emit(t, &o->via.array.ptr[i], depth + 1, d)) < 0)
				return rc;
		}
		put(t, "]");
		return 0;
	}
	put(t, "{");
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		int rc;

		if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
			return diag_set(d, -EINVAL, "profile: keys must be strings");
		if (i > 0)
			put(t, ", ");
		if ((rc = emit(t, &o->via.map.ptr[i].key, depth + 1, d)) < 0)
			return rc;
		put(t, ": ");
		if ((rc = emit(t, &o->via.map.ptr[i].val, depth + 1, d)) < 0)
			return rc;
	}
	put(t, "}");
	return 0;
}

int
tasks_inline(struct profile **out, const msgpack_object *map, const struct model *m, struct diag *d)
{
	struct text *t = malloc(sizeof(*t));
	struct profile *p = NULL;
	int rc;

	*out = NULL;
	if (t == NULL)
		return diag_set(d, -ENOMEM, "out of memory");
	t->len = 0;
	t->overflow = false;
	if ((rc = emit(t, map, 0, d)) < 0)
		goto out;
	if (t->overflow) {
		rc = diag_set(d, -E2BIG, "profile: larger than %u bytes as YAML", INLINE_MAX_TEXT);
		goto out;
	}
	p = profile_new();
	strlcpy_(p->task, "<inline>", sizeof(p->task));
	if ((rc = profile_parse_buffer(p, t->buf, t->len, "<inline profile>", d)) < 0)
		goto out;
	rc = profile_check_model(p, m->sha256, m->hp.n_layers, d);
out:
	free(t);
	if (rc < 0) {
		profile_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

void
tasks_free_profile(struct profile *p)
{
	profile_free(p);
}
