/*
 * bench.h — what the files of adainfer-bench share (internal to
 * tests/bench/, not a library): the options, the host and per-model records,
 * and the functions one file calls in another.
 *
 *   adainfer_bench.c  main, the options, the engine runs and the rounds
 *   bench_sys.c       machine facts: clock, CPU flags, cache size, OpenBLAS
 *                     core, read bandwidth, resident memory and its split
 *   bench_vs.c        llama-bench (--vs): running it and reading its JSON
 *   bench_out.c       the statistics and all output, markdown or JSON lines
 */
#ifndef ADAINFER_TESTS_BENCH_H
#define ADAINFER_TESTS_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_MODELS 64
#define MAX_VALUES 16 /* entries of one -p or -n list */
#define MAX_TESTS  (2 * MAX_VALUES)
#define MAX_REPS   1000
#define BW_RUNS    5                 /* bandwidth: best of */
#define BW_MAX     ((size_t)2 << 30) /* bandwidth buffer bound (auto and --bw-mib) */

struct mapping;

enum out_fmt { OUT_MD, OUT_JSON };

struct opts {
	char *models[MAX_MODELS]; /* owned */
	int n_models;
	uint32_t pp[MAX_VALUES], tg[MAX_VALUES];
	int n_pp, n_tg;
	bool pp_set, tg_set;
	int threads;
	int reps;
	enum out_fmt fmt;
	const char *vs; /* llama-bench, or NULL */
	const char *kv; /* --kv: "f32" (default) or "f16", a kv_type_name() */
	long bw_mib;    /* -1: automatic */
};

enum test_kind { TEST_PP, TEST_TG };

struct test {
	enum test_kind kind;
	uint32_t n;
	char name[24];  /* "pp128", "tg32" */
	double *ours;   /* [reps] tokens/s */
	double *theirs; /* [reps] tokens/s from llama-bench */
	int n_ours, n_theirs;
};

/* Resident memory of this process, bytes (-1: not reported). */
struct mem {
	long long rss, anon, file, hwm;
};

/* One model's figures: what the table and the memory lines need. */
struct model_run {
	const char *path;
	const char *base; /* file name without directories */
	char ftype[32];
	uint64_t tensor_bytes, n_params;
	uint64_t layer_bytes, head_bytes, embd_row_bytes;
	uint32_t n_layers, n_ctx;
	uint64_t kv_bytes;
	long long map_size, map_resident;
	struct mem load, after;
	struct test tests[MAX_TESTS];
	int n_tests;
	char their_kv[16]; /* llama-bench's type_k, as it reported it */
	bool ok;           /* ran to the end */
};

/* The host, printed once. */
struct host {
	char cpu[128];
	int n_flags;
	const char *flag_names[16];
	bool flag_has[16];
	const char *kernels; /* the engine's SIMD level */
	const char *blas_core, *blas_config, *blas_env;
	const char *blas_replaced; /* the core OpenBLAS chose, when blas_pick_core replaced it */
	double bw_gbs;             /* 0: not measured */
	size_t bw_bytes, llc_bytes;
	bool vs_ctk; /* llama-bench accepts -ctk KV -ctv KV of o->kv: it is passed them */
};

/* ---- bench_sys.c: the machine ------------------------------------------- */

/** Seconds on the monotonic clock. */
double sys_now(void);
/** Fills h (all but vs_ctk): CPU, flags, kernels, OpenBLAS, LLC; bandwidth unless bw_mib is 0. */
void sys_host_init(struct host *h, const struct opts *o);
/** Reads VmRSS, RssAnon, RssFile and VmHWM of this process into m (-1 for those absent). */
void sys_mem_read(struct mem *m);
/** Restarts VmHWM at the current RSS (Linux >= 4.0; ignored where it cannot). */
void sys_reset_peak_rss(void);
/** Resident bytes of the mapping mp (mincore), -1 when unknown; mp is only read. */
long long sys_mapping_resident(const struct mapping *mp);

/* ---- bench_vs.c: llama-bench -------------------------------------------- */

/** Whether llama-bench vs accepts -ctk kv -ctv kv (asked with --help: no model loaded). */
bool vs_accepts_kv(const char *vs, const char *kv);
/** One llama-bench -r 1 on r->path: a sample per test it reports; 0 or -1 (message printed). */
int vs_round(const struct opts *o, const struct host *h, struct model_run *r);

/* ---- bench_out.c: output ------------------------------------------------ */

/** Prints the host: header lines (markdown) or the "system" record (JSON). */
void out_print_host(const struct opts *o, const struct host *h);
/** One model after load: sizes, bytes per token, memory (markdown) or its "model" record. */
void out_print_model(const struct opts *o, const struct host *h, const struct model_run *r);
/** After a model's runs: the resident-memory line (markdown) or its "model" record (JSON). */
void out_print_after_runs(const struct opts *o, const struct host *h, const struct model_run *r);
/** All runs' results: the table and footnote (markdown) or the "result"/"ratio" records. */
void out_print_results(const struct opts *o, const struct host *h, const struct model_run *runs,
		       int n);

#endif
