/*
 * prefix_kv.c — the prompt-prefix cache against an engine context (see
 * prefix.h for the rule): a block's payload is, for each layer, the K and V
 * rows of its PREFIX_BLOCK positions as the context stores them (F32 or
 * half), then the F32 hidden state after each of layers 1 .. n_layers-1 —
 * what refilling those positions after an early exit needs. The lock is held
 * only around the cache's own calls; payloads are read outside it, pinned.
 */
#include "prefix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/util.h"
#include "daemon/engine/forward.h"
#include "request.h"

/* Byte sizes of a block's KV part and whole payload for c's model and KV type. */
static size_t
kv_part(const struct ctx *c)
{
	return (size_t)ctx_model(c)->hp.n_layers * 2 * PREFIX_BLOCK * ctx_kv_row_bytes(c);
}

static size_t
payload_bytes(const struct ctx *c)
{
	const struct model_hparams *hp = &ctx_model(c)->hp;

	return kv_part(c) + (size_t)(hp->n_layers - 1) * PREFIX_BLOCK * hp->n_embd * sizeof(float);
}

/* The hidden state after `after` layers (1 .. n_layers-1) of a block's payload. */
static const float *
payload_hidden(const struct ctx *c, const void *data, uint32_t after)
{
	size_t rows = (size_t)PREFIX_BLOCK * ctx_model(c)->hp.n_embd;

	return (const float *)((const uint8_t *)data + kv_part(c)) + (size_t)(after - 1) * rows;
}

int
prefix_kv_init(struct prefix_kv *kv, size_t budget)
{
	memset(kv, 0, sizeof(*kv));
	pthread_mutex_init(&kv->lock, NULL);
	return prefix_init(&kv->pc, budget);
}

void
prefix_kv_deinit(struct prefix_kv *kv)
{
	prefix_deinit(&kv->pc);
	smodel_unref(kv->owner);
	pthread_mutex_destroy(&kv->lock);
	memset(kv, 0, sizeof(*kv));
}

/* Copies block b (at positions b*PREFIX_BLOCK..) of e's payload into c. */
static int
block_to_ctx(struct ctx *c, const struct prefix_entry *e, uint32_t b)
{
	size_t rb = (size_t)PREFIX_BLOCK * ctx_kv_row_bytes(c);
	const uint8_t *p = e->data;
	int rc;

	for (uint32_t l = 0; l < ctx_model(c)->hp.n_layers; l++, p += 2 * rb)
		if ((rc = ctx_kv_write(c, l, b * PREFIX_BLOCK, PREFIX_BLOCK, p, p + rb)) < 0)
			return rc;
	return 0;
}

/*
 * A new payload for the block at position pos of c, computed (with hidden
 * the capture of n_run rows from pos0) just before; NULL when out of memory.
 */
static void *
block_from_ctx(const struct ctx *c, uint32_t pos, uint32_t pos0, uint32_t n_run,
	       const float *hidden)
{
	const struct model_hparams *hp = &ctx_model(c)->hp;
	size_t rb = (size_t)PREFIX_BLOCK * ctx_kv_row_bytes(c),
	       rows = (size_t)PREFIX_BLOCK * hp->n_embd;
	uint8_t *data = malloc(payload_bytes(c)), *p = data;
	float *h;

	if (data == NULL)
		return NULL;
	for (uint32_t l = 0; l < hp->n_layers; l++, p += 2 * rb)
		if (ctx_kv_read(c, l, pos, PREFIX_BLOCK, p, p + rb) < 0) {
			free(data);
			return NULL;
		}
	h = (float *)p;
	for (uint32_t k = 0; k + 1 < hp->n_layers; k++)
		memcpy(h + k * rows,
		       hidden + (size_t)k * n_run * hp->n_embd + (size_t)(pos - pos0) * hp->n_embd,
		       rows * sizeof(float));
	return data;
}

/* Computes blocks [from, from+n_blocks) at full depth after c's sequence and inserts them. */
static int
compute_blocks(struct prefix_use *u, const int32_t *tokens, uint32_t from, uint32_t n_blocks)
{
	struct ctx *c = u->c;
	const struct model_hparams *hp = &ctx_model(c)->hp;
	uint32_t pos0 = from * PREFIX_BLOCK, n_run = n_blocks * PREFIX_BLOCK, n_ins = 0;
	size_t hbytes;
	int rc;

	if (size_mul(&hbytes, (size_t)(hp->n_layers - 1) * hp->n_embd, n_run) < 0 ||
	    (u->hidden = malloc(MAX(hbytes, 1) * sizeof(float))) == NULL)
		return -ENOMEM;
	if ((rc = forward_run_capture(c, tokens + pos0, n_run, u->hidden)) < 0)
		return rc;
	u->n_computed = n_run;
	for (uint32_t j = 0; j < n_blocks; j++) {
		uint32_t pos = pos0 + j * PREFIX_BLOCK;
		void *data = block_from_ctx(c, pos, pos0, n_run, u->hidden);
		struct prefix_entry *parent = from + j > 0 ? u->chain[from + j - 1] : NULL, *e;

		if (data == NULL)
			break;
		pthread_mutex_lock(&u->kv->lock);
		e = prefix_insert(&u->kv->pc, parent, tokens + pos, data, payload_bytes(c));
		pthread_mutex_unlock(&u->kv->lock);
		if (e == NULL)
			break;          /* over the budget: the rest has no parent to hang from */
		u->chain[from + j] = e; /* pinned until release, as the next one's parent */
		n_ins++;
	}
	u->n_pinned = from + n_ins;
	pthread_mutex_lock(&u->kv->lock);
	u->kv->pc.st.tokens_computed += n_run;
	pthread_mutex_unlock(&u->kv->lock);
	return 0;
}

int
prefix_kv_prepare(struct prefix_kv *kv, struct smodel *sm, size_t budget, struct ctx *c,
		  const int32_t *tokens, uint32_t n, bool full_depth, struct prefix_use *u)
{
	uint32_t n_usable = prefix_usable_blocks(n);
	struct prefix_plan plan = {0};
	uint64_t *hashes = NULL;
	int rc = 0;

	memset(u, 0, sizeof(*u));
	u->kv = kv;
	u->c = c;
	pthread_mutex_lock(&kv->lock);
	if (kv->pc.budget != budget)
		prefix_set_budget(&kv->pc, budget);
	pthread_mutex_unlock(&kv->lock);
	if (budget == 0 || n_usable == 0)
		return 0;
	hashes = malloc(n_usable * sizeof(*hashes));
	u->chain = calloc(n_usable, sizeof(*u->chain));
	if (hashes == NULL || u->chain == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	prefix_hash_blocks(tokens, n_usable, hashes);
	ctx_reset(c); /* a cancelled request may have left a batch open */
	pthread_mutex_lock(&kv->lock);
	if (kv->owner != sm || kv->owner_kv != (int)ctx_kv_type(c)) {
		/* another model or KV type: its blocks go (unless another worker still reads
		 * them: then this request does without the cache) */
		if (prefix_clear(&kv->pc) != 0) {
			pthread_mutex_unlock(&kv->lock);
			goto out;
		}
		smodel_ref(sm);
		smodel_unref(kv->owner);
		kv->owner = sm;
		kv->owner_kv = (int)ctx_kv_type(c);
	}
	u->n_hit = prefix_lookup(&kv->pc, tokens, hashes, n_usable, u->chain);
	u->n_pinned = u->n_hit;
	prefix_plan(&kv->pc, hashes, n_usable, u->n_hit, full_depth, &plan);
	pthread_mutex_unlock(&kv->lock);
	/* never compute (and hold the hidden states of) more blocks than the budget keeps */
	plan.n_compute = (uint32_t)MIN(plan.n_compute, budget / payload_bytes(c));

	for (uint32_t b = 0; b < u->n_hit; b++)
		if ((rc = block_to_ctx(c, u->chain[b], b)) < 0)
			goto out;
	if ((rc = ctx_set_n_past(c, u->n_hit * PREFIX_BLOCK)) < 0)
		goto out;
	if (plan.n_compute > 0 && (rc = compute_blocks(u, tokens, u->n_hit, plan.n_compute)) < 0)
		goto out;
	u->n_reuse = u->n_hit * PREFIX_BLOCK + u->n_computed;
out:
	free(hashes);
	if (rc < 0) {
		u->n_reuse = 0;
		ctx_reset(c);
	}
	return rc;
}

int
prefix_kv_on_prompt(void *ud, uint32_t n_run)
{
	struct prefix_use *u = ud;
	struct ctx *c = u->c;
	const struct model_hparams *hp = &ctx_model(c)->hp;
	size_t rows = (size_t)PREFIX_BLOCK * hp->n_embd;
	float *h;
	int rc;

	if (u->n_reuse == 0 || n_run >= hp->n_layers)
		return 0; /* full depth: the reused rows are exact as they are */
	if (n_run == 0)
		return -EINVAL;
	if ((h = malloc((size_t)u->n_reuse * hp->n_embd * sizeof(float))) == NULL)
		return -ENOMEM;
	for (uint32_t b = 0; b < u->n_hit; b++)
		memcpy(h + b * rows, payload_hidden(c, u->chain[b]->data, n_run),
		       rows * sizeof(float));
	if (u->n_computed > 0)
		memcpy(h + u->n_hit * rows,
		       u->hidden + (size_t)(n_run - 1) * u->n_computed * hp->n_embd,
		       (size_t)u->n_computed * hp->n_embd * sizeof(float));
	rc = forward_fill(c, n_run, 0, u->n_reuse, h);
	free(h);
	return rc;
}

void
prefix_kv_release(struct prefix_use *u)
{
	if (u->kv != NULL && u->n_pinned > 0) {
		pthread_mutex_lock(&u->kv->lock);
		prefix_unpin(&u->kv->pc, u->chain, u->n_pinned);
		pthread_mutex_unlock(&u->kv->lock);
	}
	free(u->chain);
	free(u->hidden);
	memset(u, 0, sizeof(*u));
}

void
prefix_kv_stats(struct prefix_kv *kv, struct prefix_stats *st, size_t *bytes, uint32_t *entries,
		size_t *budget)
{
	pthread_mutex_lock(&kv->lock);
	*st = kv->pc.st;
	*bytes = kv->pc.bytes;
	*entries = kv->pc.n_entries;
	*budget = kv->pc.budget;
	pthread_mutex_unlock(&kv->lock);
}

/* ---- the process's cache ---------------------------------------------------- */

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prefix_kv shared_kv;
static int shared_refs;

struct prefix_kv *
prefix_kv_shared_open(void)
{
	struct prefix_kv *kv = &shared_kv;

	pthread_mutex_lock(&shared_lock);
	if (shared_refs == 0 && prefix_kv_init(&shared_kv, 0) < 0)
		kv = NULL;
	else
		shared_refs++;
	pthread_mutex_unlock(&shared_lock);
	return kv;
}

void
prefix_kv_shared_close(void)
{
	pthread_mutex_lock(&shared_lock);
	if (shared_refs > 0 && --shared_refs == 0)
		prefix_kv_deinit(&shared_kv);
	pthread_mutex_unlock(&shared_lock);
}

struct prefix_kv *
prefix_kv_shared(void)
{
	struct prefix_kv *kv;

	pthread_mutex_lock(&shared_lock);
	kv = shared_refs > 0 ? &shared_kv : NULL;
	pthread_mutex_unlock(&shared_lock);
	return kv;
}
