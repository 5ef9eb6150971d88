/*
 * prefix.c — the prompt-prefix cache's data structure and policy (see
 * prefix.h): blocks in a chained hash table, an LRU list from which only
 * unpinned leaves are evicted (a block's descendants need it, so they go
 * first), the history of recent prompts, and the plan that applies the
 * rule. No engine, no locks: prefix_kv.c holds the lock around every call.
 */
#include "prefix.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/base/util.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME  0x100000001b3ull
#define N_BUCKETS  4096u

uint64_t
prefix_hash(uint64_t parent, const int32_t *tokens)
{
	uint64_t h = FNV_OFFSET;

	for (int i = 0; i < 8; i++, parent >>= 8)
		h = (h ^ (parent & 0xff)) * FNV_PRIME;
	for (int t = 0; t < PREFIX_BLOCK; t++) {
		uint32_t v = (uint32_t)tokens[t];

		for (int i = 0; i < 4; i++, v >>= 8)
			h = (h ^ (v & 0xff)) * FNV_PRIME;
	}
	return h;
}

void
prefix_hash_blocks(const int32_t *tokens, uint32_t n_blocks, uint64_t *out)
{
	uint64_t h = 0;

	for (uint32_t b = 0; b < n_blocks; b++)
		out[b] = h = prefix_hash(h, tokens + (size_t)b * PREFIX_BLOCK);
}

uint32_t
prefix_usable_blocks(uint32_t n)
{
	return n < 2 ? 0 : (n - 2) / PREFIX_BLOCK;
}

int
prefix_init(struct prefix_cache *pc, size_t budget)
{
	memset(pc, 0, sizeof(*pc));
	pc->budget = budget;
	pc->n_buckets = N_BUCKETS;
	if ((pc->buckets = calloc(pc->n_buckets, sizeof(*pc->buckets))) == NULL)
		return -ENOMEM;
	return 0;
}

static void
lru_unlink(struct prefix_cache *pc, struct prefix_entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		pc->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		pc->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void
lru_push_head(struct prefix_cache *pc, struct prefix_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = pc->lru_head;
	if (pc->lru_head != NULL)
		pc->lru_head->lru_prev = e;
	else
		pc->lru_tail = e;
	pc->lru_head = e;
}

/* Unlinks e (an unpinned leaf) from everything and frees it. */
static void
entry_drop(struct prefix_cache *pc, struct prefix_entry *e)
{
	struct prefix_entry **pp = &pc->buckets[e->hash & (pc->n_buckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(pc, e);
	if (e->parent != NULL)
		e->parent->n_children--;
	pc->bytes -= e->bytes + PREFIX_ENTRY_OVERHEAD;
	pc->n_entries--;
	free(e->data);
	free(e);
}

/* Evicts unpinned leaves, least recently used first, until bytes <= limit. */
static void
evict_to(struct prefix_cache *pc, size_t limit)
{
	struct prefix_entry *e = pc->lru_tail;

	while (pc->bytes > limit && e != NULL) {
		struct prefix_entry *prev = e->lru_prev;

		if (e->pins == 0 && e->n_children == 0) {
			struct prefix_entry *parent = e->parent;

			entry_drop(pc, e);
			pc->st.evictions++;
			/* the parent may have become a leaf behind us: look again from the tail */
			if (parent != NULL && parent->n_children == 0) {
				e = pc->lru_tail;
				continue;
			}
		}
		e = prev;
	}
}

void
prefix_deinit(struct prefix_cache *pc)
{
	if (pc->buckets == NULL)
		return;
	for (uint32_t b = 0; b < pc->n_buckets; b++)
		for (struct prefix_entry *e = pc->buckets[b], *next; e != NULL; e = next) {
			next = e->hnext;
			free(e->data);
			free(e);
		}
	free(pc->buckets);
	memset(pc, 0, sizeof(*pc));
}

uint32_t
prefix_clear(struct prefix_cache *pc)
{
	size_t budget = pc->budget;

	evict_to(pc, 0);
	pc->budget = budget;
	return pc->n_entries;
}

void
prefix_set_budget(struct prefix_cache *pc, size_t budget)
{
	pc->budget = budget;
	evict_to(pc, budget);
}

/* The entry for tokens after parent, or NULL. */
static struct prefix_entry *
find(const struct prefix_cache *pc, const struct prefix_entry *parent, uint64_t hash,
     const int32_t *tokens)
{
	for (struct prefix_entry *e = pc->buckets[hash & (pc->n_buckets - 1)]; e != NULL;
	     e = e->hnext)
		if (e->hash == hash && e->parent == parent &&
		    memcmp(e->tokens, tokens, sizeof(e->tokens)) == 0)
			return e;
	return NULL;
}

uint32_t
prefix_lookup(struct prefix_cache *pc, const int32_t *tokens, const uint64_t *hashes,
	      uint32_t n_blocks, struct prefix_entry **chain)
{
	struct prefix_entry *parent = NULL;
	uint32_t k = 0;

	for (; k < n_blocks; k++) {
		struct prefix_entry *e =
		    find(pc, parent, hashes[k], tokens + (size_t)k * PREFIX_BLOCK);

		if (e == NULL)
			break;
		e->pins++;
		chain[k] = e;
		parent = e;
	}
	/* touch the deepest first, so that ancestors are more recent than descendants */
	for (uint32_t i = k; i-- > 0;) {
		lru_unlink(pc, chain[i]);
		lru_push_head(pc, chain[i]);
	}
	return k;
}

void
prefix_unpin(struct prefix_cache *pc, struct prefix_entry **chain, uint32_t n)
{
	(void)pc;
	for (uint32_t i = 0; i < n; i++)
		chain[i]->pins--;
}

struct prefix_entry *
prefix_insert(struct prefix_cache *pc, struct prefix_entry *parent, const int32_t *tokens,
	      void *data, size_t bytes)
{
	uint64_t hash = prefix_hash(parent != NULL ? parent->hash : 0, tokens);
	struct prefix_entry *e = find(pc, parent, hash, tokens);

	if (e != NULL) {
		free(data);
		e->pins++;
		lru_unlink(pc, e);
		lru_push_head(pc, e);
		return e;
	}
	if (pc->budget == 0 || bytes > pc->budget - MIN(pc->budget, PREFIX_ENTRY_OVERHEAD) ||
	    (e = calloc(1, sizeof(*e))) == NULL) {
		free(data);
		return NULL;
	}
	evict_to(pc, pc->budget - bytes - PREFIX_ENTRY_OVERHEAD);
	if (pc->bytes + bytes + PREFIX_ENTRY_OVERHEAD > pc->budget) {
		free(e); /* the rest is pinned or in use as a parent */
		free(data);
		return NULL;
	}
	e->hash = hash;
	e->parent = parent;
	e->pins = 1;
	memcpy(e->tokens, tokens, sizeof(e->tokens));
	e->data = data;
	e->bytes = bytes;
	e->hnext = pc->buckets[hash & (pc->n_buckets - 1)];
	pc->buckets[hash & (pc->n_buckets - 1)] = e;
	if (parent != NULL)
		parent->n_children++;
	lru_push_head(pc, e);
	pc->bytes += bytes + PREFIX_ENTRY_OVERHEAD;
	pc->n_entries++;
	return e;
}

uint32_t
prefix_history_shared(const struct prefix_cache *pc, const uint64_t *hashes, uint32_t n)
{
	uint32_t best = 0;

	for (uint32_t i = 0; i < PREFIX_HISTORY; i++) {
		uint32_t k = 0, m = MIN(n, pc->hist_n[i]);

		while (k < m && pc->hist[i][k] == hashes[k])
			k++;
		best = MAX(best, k);
	}
	return best;
}

void
prefix_history_add(struct prefix_cache *pc, const uint64_t *hashes, uint32_t n)
{
	uint32_t i = pc->hist_next;

	n = MIN(n, PREFIX_HISTORY_BLOCKS);
	memcpy(pc->hist[i], hashes, n * sizeof(*hashes));
	pc->hist_n[i] = n;
	pc->hist_next = (i + 1) % PREFIX_HISTORY;
}

void
prefix_plan(struct prefix_cache *pc, const uint64_t *hashes, uint32_t n_usable, uint32_t n_hit,
	    bool full_depth, struct prefix_plan *out)
{
	uint32_t target = n_hit;

	if (full_depth)
		target = n_usable;
	else
		target = MAX(n_hit, MIN(n_usable, prefix_history_shared(pc, hashes, n_usable)));
	out->n_hit = n_hit;
	out->n_compute = target - n_hit;
	if (n_usable > 0) {
		if (n_hit > 0)
			pc->st.hits++;
		else
			pc->st.misses++;
	}
	pc->st.tokens_reused += (uint64_t)n_hit * PREFIX_BLOCK;
	prefix_history_add(pc, hashes, n_usable);
}
