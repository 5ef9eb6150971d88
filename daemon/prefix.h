/*
 * prefix.h — the prompt-prefix cache: K and V (and the hidden states an
 * early exit refills from) of prompt prefixes computed at full depth, kept
 * in blocks of PREFIX_BLOCK tokens under a byte budget, least recently used
 * out first, so that requests sharing a few-shot prompt compute only the
 * rest of it.
 *
 * The rule: only positions computed at full depth enter the cache. A
 * request with a stopping profile exits its prompt batch at some layer l
 * and forward_finish fills layers l+1.. of every prompt position from the
 * layer-l hidden state: those rows are approximate and are never inserted.
 * What is inserted is computed for the cache, at full depth, as a batch of
 * its own (prefix_kv_prepare): a full-depth request's block-aligned prompt
 * prefix, and for a profile request the blocks it shares with a recently
 * seen prompt (the history). A request reusing H cached positions runs the
 * rest of its prompt with its profile and, when that exits at l, refills the
 * reused positions' layers l+1.. from the cached layer-l hidden states,
 * so its KV — and everything it generates — is bit for bit what it would
 * be without the cache.
 *
 * Two layers: struct prefix_cache is the engine-free data structure and
 * policy (blocks keyed by a chained hash of their tokens and their parent,
 * tokens compared on lookup, pins, LRU over leaves, the history, the plan);
 * struct prefix_kv (prefix_kv.c) moves blocks between it and an engine
 * context, under a lock, shared by the daemon's workers.
 */
#ifndef ADAINFER_PREFIX_H
#define ADAINFER_PREFIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tokens per block: a multiple of the engine's attention query chunk (QCHUNK). */
#define PREFIX_BLOCK 32
/* Recent prompts whose block hashes the history keeps, and blocks of each. */
#define PREFIX_HISTORY        32
#define PREFIX_HISTORY_BLOCKS 64
/* Bytes an entry costs on top of its payload (counted against the budget). */
#define PREFIX_ENTRY_OVERHEAD sizeof(struct prefix_entry)

struct prefix_entry {
	uint64_t hash;               /* prefix_hash(parent's hash or 0, tokens) */
	struct prefix_entry *parent; /* the block before; NULL for a prompt's first */
	uint32_t n_children;         /* entries whose parent this is */
	uint32_t pins;               /* users reading data; never evicted while > 0 */
	int32_t tokens[PREFIX_BLOCK];
	void *data; /* owned payload (prefix_kv.c's layout) */
	size_t bytes;
	struct prefix_entry *hnext;               /* hash bucket chain */
	struct prefix_entry *lru_prev, *lru_next; /* lru_head = most recently used */
};

struct prefix_stats {
	uint64_t hits;            /* lookups that reused >= 1 block */
	uint64_t misses;          /* lookups with a usable block that reused none */
	uint64_t tokens_reused;   /* prompt tokens served from the cache */
	uint64_t tokens_computed; /* prompt tokens computed at full depth for the cache */
	uint64_t evictions;       /* entries dropped for the budget */
};

struct prefix_cache {
	size_t budget; /* bytes; 0 = off */
	size_t bytes;  /* payloads + PREFIX_ENTRY_OVERHEAD each */
	uint32_t n_entries;
	struct prefix_entry **buckets;
	uint32_t n_buckets; /* a power of two */
	struct prefix_entry *lru_head, *lru_tail;
	uint64_t hist[PREFIX_HISTORY][PREFIX_HISTORY_BLOCKS];
	uint32_t hist_n[PREFIX_HISTORY];
	uint32_t hist_next;
	struct prefix_stats st;
};

/** How a prompt uses the cache (prefix_plan). */
struct prefix_plan {
	uint32_t n_hit;     /* leading blocks served from the cache */
	uint32_t n_compute; /* blocks after them to compute at full depth and insert */
};

/** Chained block hash: FNV-1a over the parent hash and the block's token ids. */
uint64_t prefix_hash(uint64_t parent, const int32_t *tokens);
/**
 * Hashes of the first n_blocks blocks of tokens into out (caller's, n_blocks long).
 */
void prefix_hash_blocks(const int32_t *tokens, uint32_t n_blocks, uint64_t *out);
/**
 * Blocks of a prompt of n tokens that may be reused: whole blocks that leave
 * at least 2 tokens to run (one token would take the engine's decode path,
 * whose rounding differs from a batch's).
 */
uint32_t prefix_usable_blocks(uint32_t n);

int prefix_init(struct prefix_cache *pc, size_t budget);
/** Frees every entry (none may be pinned). */
void prefix_deinit(struct prefix_cache *pc);
/** Drops every unpinned entry; returns how many stay (pinned, or their ancestors). */
uint32_t prefix_clear(struct prefix_cache *pc);
/** Changes the budget, evicting down to it. */
void prefix_set_budget(struct prefix_cache *pc, size_t budget);

/**
 * The longest chain of cached blocks that starts tokens (up to n_blocks, with
 * hashes from prefix_hash_blocks): returns its length k and pins and touches
 * chain[0..k). Each entry is compared by parent and tokens, never by hash
 * alone. Counts nothing in st (prefix_plan does).
 */
uint32_t prefix_lookup(struct prefix_cache *pc, const int32_t *tokens, const uint64_t *hashes,
		       uint32_t n_blocks, struct prefix_entry **chain);
/** Unpins chain[0..n). */
void prefix_unpin(struct prefix_cache *pc, struct prefix_entry **chain, uint32_t n);
/**
 * Inserts the block tokens after parent (NULL: a first block) with payload
 * data of bytes (ownership passes to the cache either way). Returns the
 * entry, pinned — the one already there when another user inserted it
 * first (data is freed) — or NULL when it does not fit the budget even
 * after evicting every unpinned leaf.
 */
struct prefix_entry *prefix_insert(struct prefix_cache *pc, struct prefix_entry *parent,
				   const int32_t *tokens, void *data, size_t bytes);

/** Leading blocks hashes[0..n) shares with the most similar recent prompt. */
uint32_t prefix_history_shared(const struct prefix_cache *pc, const uint64_t *hashes, uint32_t n);
/** Remembers a prompt's block hashes (the first PREFIX_HISTORY_BLOCKS), oldest out. */
void prefix_history_add(struct prefix_cache *pc, const uint64_t *hashes, uint32_t n);

/**
 * The policy, with the rule: n_hit blocks came from the cache (lookup) out
 * of n_usable; a full-depth request computes the rest of its usable blocks
 * for the cache (its prompt runs at full depth anyway); a profile request
 * computes at full depth only blocks a recent prompt shares (the history, a
 * sign that more requests will), else nothing — its own prompt, run with
 * the profile, never enters the cache. Counts the hit or miss in st; then
 * adds the prompt to the history.
 */
void prefix_plan(struct prefix_cache *pc, const uint64_t *hashes, uint32_t n_usable, uint32_t n_hit,
		 bool full_depth, struct prefix_plan *out);

/* ---- against an engine context (prefix_kv.c) ------------------------------ */

struct ctx;
struct smodel;
struct model;

/** The shared cache: a lock, the cache, and what its blocks were computed for. */
struct prefix_kv {
	pthread_mutex_t lock;
	struct prefix_cache pc;
	struct smodel *owner; /* ref held; NULL until the first use */
	int owner_kv;         /* enum kv_type of the blocks */
};

/** One request's use of the cache, from prefix_kv_prepare to prefix_kv_release. */
struct prefix_use {
	struct prefix_kv *kv;
	struct ctx *c;
	struct prefix_entry *
	    *chain; /* [0, n_hit) served, then the ones inserted; n_pinned pinned */
	uint32_t n_hit, n_pinned;
	float *hidden; /* computed blocks' hidden states: (n_layers-1) x n_computed x n_embd */
	uint32_t n_computed;
	uint32_t n_reuse; /* prompt tokens in c's KV: run_params.n_reuse */
};

int prefix_kv_init(struct prefix_kv *kv, size_t budget);
void prefix_kv_deinit(struct prefix_kv *kv);
/**
 * Puts the reusable prefix of tokens (n of them) into c: cached blocks
 * copied in, then the blocks the plan computes run at full depth after them
 * and inserted. sm is c's model (blocks of another model or KV type are
 * dropped first); budget the configured bytes (0: off, nothing happens).
 * Sets u->n_reuse (0 when nothing is reused). Returns 0 or a negative errno
 * (the engine's); u is always safe to prefix_kv_release.
 */
int prefix_kv_prepare(struct prefix_kv *kv, struct smodel *sm, size_t budget, struct ctx *c,
		      const int32_t *tokens, uint32_t n, bool full_depth, struct prefix_use *u);
/** run_params.on_prompt with prompt_ud = the prefix_use: refills the reused rows. */
int prefix_kv_on_prompt(void *u, uint32_t n_run);
/** Unpins and frees what u holds. */
void prefix_kv_release(struct prefix_use *u);
/** Snapshot of the counters, bytes and entries under the lock. */
void prefix_kv_stats(struct prefix_kv *kv, struct prefix_stats *st, size_t *bytes,
		     uint32_t *entries, size_t *budget);
/** The process's cache, shared by the workers (exec.c): refcounted open / close. */
struct prefix_kv *prefix_kv_shared_open(void);
void prefix_kv_shared_close(void);
/** The shared cache when open, else NULL (the stats method). */
struct prefix_kv *prefix_kv_shared(void);

#endif
