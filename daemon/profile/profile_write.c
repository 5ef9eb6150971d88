/*
 * profile_write.c — struct profile back to YAML (libyaml emitter), in the
 * schema profile.c reads, and the profile a calibration produces. Numbers are
 * written with 17 significant digits so a saved profile reloads bit for bit.
 * Writes only to the FILE or path it is given; a failed save leaves any old
 * file in place (write path.tmp, then rename).
 */
#include "profile.h"

#include <yaml.h>

#include <errno.h>
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct em {
	yaml_emitter_t e;
	int ok;
};

static void
ev_scalar(struct em *m, const char *s)
{
	yaml_event_t ev;

	if (!m->ok)
		return;
	yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
				     YAML_ANY_SCALAR_STYLE);
	m->ok = yaml_emitter_emit(&m->e, &ev);
}

static void
ev_map(struct em *m, bool start, bool flow)
{
	yaml_event_t ev;

	if (!m->ok)
		return;
	if (start)
		yaml_mapping_start_event_initialize(
		    &ev, NULL, NULL, 1, flow ? YAML_FLOW_MAPPING_STYLE : YAML_BLOCK_MAPPING_STYLE);
	else
		yaml_mapping_end_event_initialize(&ev);
	m->ok = yaml_emitter_emit(&m->e, &ev);
}

static void
ev_seq(struct em *m, bool start)
{
	yaml_event_t ev;

	if (!m->ok)
		return;
	if (start)
		yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE);
	else
		yaml_sequence_end_event_initialize(&ev);
	m->ok = yaml_emitter_emit(&m->e, &ev);
}

static void
ev_num(struct em *m, double v)
{
	char b[64];

	snprintf(b, sizeof(b), "%.17g", v);
	ev_scalar(m, b);
}

static void
kv_str(struct em *m, const char *k, const char *v)
{
	ev_scalar(m, k);
	ev_scalar(m, v);
}

static void
kv_num(struct em *m, const char *k, double v)
{
	ev_scalar(m, k);
	ev_num(m, v);
}

static void
kv_u32(struct em *m, const char *k, uint32_t v)
{
	char b[16];

	snprintf(b, sizeof(b), "%u", v);
	kv_str(m, k, b);
}

static int
write_handler(void *ud, unsigned char *buf, size_t n)
{
	return fwrite(buf, 1, n, ud) == n;
}

/* k: [w[0], ..., w[n-1]] in flow style. */
static void
kv_nums(struct em *m, const char *k, const double *w, uint32_t n)
{
	ev_scalar(m, k);
	ev_seq(m, true);
	for (uint32_t j = 0; j < n; j++)
		ev_num(m, w[j]);
	ev_seq(m, false);
}

/* The weights of φ in a mapping: "<prefix><feature>" for each feature of the
 * set (the token weights as a list, one per entry of c->tokens), then bias. */
static void
emit_weights(struct em *m, const char *prefix, const struct exitclf *c, const double *w, bool flow)
{
	const unsigned features = exitclf_features(c);
	char key[32];

	ev_map(m, true, flow);
	for (int j = 0; j < EXITCLF_F_BIAS; j++) {
		if (!(features & EXITCLF_FEAT_BIT(j)))
			continue;
		snprintf(key, sizeof(key), "%s%s", prefix,
			 exitclf_feat_name((enum exitclf_feat_id)j));
		kv_num(m, key, w[j]);
	}
	if (features & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN)) {
		snprintf(key, sizeof(key), "%stoken", prefix);
		kv_nums(m, key, w + EXITCLF_N_FEAT, c->n_tokens);
	}
	kv_num(m, "bias", w[EXITCLF_F_BIAS]);
	ev_map(m, false, flow);
}

int
profile_write(const struct profile *p, FILE *f)
{
	struct em m = {.ok = 1};
	yaml_event_t ev;
	const struct exitclf *c = &p->pol.clf;
	const unsigned feats = exitclf_features(c);

	if (!yaml_emitter_initialize(&m.e))
		return -ENOMEM;
	yaml_emitter_set_output(&m.e, write_handler, f);
	yaml_emitter_set_unicode(&m.e, 1);
	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	m.ok = yaml_emitter_emit(&m.e, &ev);
	if (m.ok) {
		yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
		m.ok = yaml_emitter_emit(&m.e, &ev);
	}
	ev_map(&m, true, false);
	if (p->task[0])
		kv_str(&m, "task", p->task);
	kv_str(&m, "classifier", exitclf_kind_name(c->kind));
	kv_num(&m, "threshold", c->threshold);
	kv_u32(&m, "min_layer", p->pol.min_layer);
	kv_u32(&m, "stride", p->pol.stride);
	if (c->kind == EXITCLF_PROBE) {
		kv_str(&m, "probe", p->probe_file); /* the weights: profile_probe_write */
	} else {
		ev_scalar(&m, "features");
		ev_seq(&m, true);
		for (int k = 0; k <= EXITCLF_F_TOKEN; k++)
			if ((feats & EXITCLF_FEAT_BIT(k)) &&
			    exitclf_feat_name((enum exitclf_feat_id)k))
				ev_scalar(&m, exitclf_feat_name((enum exitclf_feat_id)k));
		ev_seq(&m, false);
	}
	if (c->kind != EXITCLF_PROBE && (feats & EXITCLF_FEAT_BIT(EXITCLF_F_TOKEN))) {
		ev_scalar(&m, "tokens");
		ev_seq(&m, true);
		for (uint32_t j = 0; j < c->n_tokens; j++) {
			char b[16];

			snprintf(b, sizeof(b), "%d", c->tokens[j]);
			ev_scalar(&m, b);
		}
		ev_seq(&m, false);
	}
	if (p->pol.n_answers > 0) {
		ev_scalar(&m, "answer_set");
		ev_seq(&m, true);
		for (uint32_t j = 0; j < p->pol.n_answers; j++) {
			char b[16];

			snprintf(b, sizeof(b), "%d", p->pol.answers[j]);
			ev_scalar(&m, b);
		}
		ev_seq(&m, false);
	}
	kv_str(&m, "generation",
	       p->pol.generation == EXIT_GEN_PER_TOKEN ? "per_token" : "full_after_first");
	if (c->kind == EXITCLF_SVM) {
		ev_scalar(&m, "svm");
		emit_weights(&m, "w_", c, c->svm_w, false);
	} else if (c->kind == EXITCLF_CRF) {
		ev_scalar(&m, "crf");
		ev_map(&m, true, false);
		ev_scalar(&m, "continue");
		emit_weights(&m, "", c, c->crf_emit[EXITCLF_CONTINUE], true);
		ev_scalar(&m, "stop");
		emit_weights(&m, "", c, c->crf_emit[EXITCLF_STOP], true);
		ev_scalar(&m, "transitions");
		ev_map(&m, true, true);
		for (int s = 0; s < 2; s++) {
			ev_scalar(&m, s == EXITCLF_CONTINUE ? "continue" : "stop");
			ev_seq(&m, true);
			ev_num(&m, c->crf_trans[s][0]);
			ev_num(&m, c->crf_trans[s][1]);
			ev_seq(&m, false);
		}
		ev_map(&m, false, true);
		ev_map(&m, false, false);
	}
	if (p->prov.present) {
		const struct profile_provenance *v = &p->prov;

		ev_scalar(&m, "provenance");
		ev_map(&m, true, false);
		if (v->model[0])
			kv_str(&m, "model", v->model);
		if (v->model_sha256[0])
			kv_str(&m, "model_sha256", v->model_sha256);
		if (v->n_layers)
			kv_u32(&m, "n_layers", v->n_layers);
		if (v->calibration_data[0])
			kv_str(&m, "calibration_data", v->calibration_data);
		if (v->date[0])
			kv_str(&m, "date", v->date);
		if (!isnan(v->agreement))
			kv_num(&m, "agreement", v->agreement);
		if (!isnan(v->pruning))
			kv_num(&m, "pruning", v->pruning);
		if (v->guarantee.present) {
			const struct profile_guarantee *g = &v->guarantee;

			ev_scalar(&m, "guarantee");
			ev_map(&m, true, false);
			kv_num(&m, "target_agreement", g->target);
			kv_num(&m, "delta", g->delta);
			kv_u32(&m, "n", g->n);
			kv_u32(&m, "disagreements", g->errors);
			if (g->m > 0)
				kv_u32(&m, "m", g->m);
			kv_num(&m, "bound", g->bound);
			kv_str(&m, "method", "clopper-pearson");
			ev_map(&m, false, false);
		}
		ev_map(&m, false, false);
	}
	ev_map(&m, false, false);
	if (m.ok) {
		yaml_document_end_event_initialize(&ev, 1);
		m.ok = yaml_emitter_emit(&m.e, &ev);
	}
	if (m.ok) {
		yaml_stream_end_event_initialize(&ev);
		m.ok = yaml_emitter_emit(&m.e, &ev);
	}
	if (m.ok)
		m.ok = yaml_emitter_flush(&m.e);
	yaml_emitter_delete(&m.e);
	return m.ok && !ferror(f) ? 0 : -EIO;
}

int
profile_save_check(const char *path, struct diag *d)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	struct stat st;

	if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
		return diag_set(d, -EEXIST,
				"%s: exists and is not a regular file; not replacing it%s", path,
				S_ISLNK(st.st_mode) ? " (a symbolic link: name its target)" : "");
	if (slash == NULL)
		strlcpy_(dir, ".", sizeof(dir));
	else if ((size_t)(slash - path) >= sizeof(dir))
		return diag_set(d, -ENAMETOOLONG, "%s: path too long", path);
	else
		snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
	if (stat(dir, &st) < 0)
		return diag_set(d, -errno, "%s: directory %s: %s", path, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return diag_set(d, -ENOTDIR, "%s: %s is not a directory", path, dir);
	if (access(dir, W_OK | X_OK) < 0)
		return diag_set(d, -errno, "%s: directory %s: %s", path, dir, strerror(errno));
	return 0;
}

int
profile_save(const struct profile *p, const char *path, struct diag *d)
{
	char tmp[4096];
	FILE *f = NULL;
	int fd, rc;

	if ((rc = profile_save_check(path, d)) < 0)
		return rc;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= sizeof(tmp))
		return diag_set(d, -ENAMETOOLONG, "%s: path too long", path);
	/* a fresh file beside path (never an existing one, never through a link), then rename */
	if ((fd = mkstemp(tmp)) < 0 || fchmod(fd, 0644) < 0 || (f = fdopen(fd, "w")) == NULL) {
		rc = -errno;
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		return diag_set(d, rc, "%s: cannot create %s: %s", path, tmp, strerror(-rc));
	}
	errno = 0;
	rc = profile_write(p, f);
	if (rc < 0 && errno != 0) /* the write's own reason (ENOSPC: "No space left on device") */
		rc = -errno;
	if (rc == 0 && (fflush(f) != 0 || fsync(fileno(f)) != 0))
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return diag_set(d, rc, "%s: cannot write profile: %s", path, strerror(-rc));
	}
	return 0;
}
