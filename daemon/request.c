/*
 * request.c — the objects a request carries from the loop to a worker: the
 * refcounted shared model and configuration snapshot it runs on, and the
 * request itself. References may be dropped on any thread.
 */
#include "request.h"

#include <errno.h>
#include <stdlib.h>

#include "daemon/base/log.h"
#include "tasks.h"

/* ---- models and snapshots -------------------------------------------------- */

int
smodel_load(struct smodel **out, const char *path, struct diag *d)
{
	struct smodel *sm = calloc(1, sizeof(*sm));
	int rc;

	*out = NULL;
	if (sm == NULL)
		return diag_set(d, -ENOMEM, "out of memory");
	if ((rc = model_load(&sm->m, path, d)) < 0) {
		free(sm);
		return rc;
	}
	{
		const struct gguf_kv *kv = gguf_find_kv(&sm->m.gguf, CHAT_TEMPLATE_KEY);

		sm->has_chat_template = kv != NULL && kv->type == GGUF_VT_STRING;
		if (sm->has_chat_template)
			sm->chat_tmpl = chat_tmpl_detect(kv->v.s.ptr, (size_t)kv->v.s.len);
	}
	atomic_init(&sm->refs, 1);
	*out = sm;
	return 0;
}

void
smodel_ref(struct smodel *sm)
{
	atomic_fetch_add(&sm->refs, 1);
}

void
smodel_unref(struct smodel *sm)
{
	if (sm == NULL || atomic_fetch_sub(&sm->refs, 1) != 1)
		return;
	log_debug("unmapping model %s", sm->m.path);
	model_free(&sm->m);
	free(sm);
}

void
snap_ref(struct snap *s)
{
	atomic_fetch_add(&s->refs, 1);
}

void
snap_unref(struct snap *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	tasks_free(s->profiles);
	smodel_unref(s->model);
	free(s);
}

/* ---- requests -------------------------------------------------------------- */

struct req *
req_new(void)
{
	struct req *r = calloc(1, sizeof(*r));

	if (r != NULL)
		atomic_init(&r->cancel, false);
	return r;
}

void
req_free(struct req *r)
{
	if (r == NULL)
		return;
	free(r->text);
	free(r->tokens);
	for (int i = 0; i < r->n_stop; i++)
		free(r->stop[i]);
	tasks_free_profile(r->inline_profile);
	snap_unref(r->snap);
	free(r);
}
