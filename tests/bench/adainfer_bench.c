/*
 * adainfer_bench.c — adainfer-bench: the engine's prompt-processing (pp) and
 * generation (tg) speed, measured the way llama-bench measures llama.cpp's
 * and printed like it (a markdown table, or JSON lines), and with --vs
 * llama-bench itself on the same files in the same run, interleaved round by
 * round (ours, theirs, ours, theirs, ...), side by side with the ratios.
 *
 *   pp N  one forward pass over N prompt tokens from an empty context: every
 *         layer, then the logits (lens) of the last position;
 *   tg N  N greedy single-token decode steps (every layer, then the logits of
 *         the token) after a one-token prompt (BOS), as llama-bench's tg
 *         decodes N tokens from an empty cache.
 *
 * Beside the speeds it prints what they should be read against: the CPU's
 * kernel-relevant flags, the OpenBLAS core, the machine's read bandwidth
 * (measured once) and tg as a share of the roofline that bandwidth allows
 * (bytes of weights read per generated token / bandwidth), and the resident
 * memory after load and how it splits (mapping, KV cache, the rest).
 *
 * It uses the engine as tests/engine/bench_forward.c does, through forward.h
 * only. Not a test (tests/bench/smoke.sh only checks that it runs): it
 * asserts nothing, never writes a model file, and leaves llama-bench's
 * process alone apart from reading its standard output.
 *
 * This file holds main, the options, the engine runs and the rounds; the
 * machine facts are in bench_sys.c, llama-bench in bench_vs.c, the output in
 * bench_out.c, and what they share in bench.h.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/engine/blas.h"
#include "daemon/engine/forward.h"
#include "daemon/engine/model.h"

#include "bench.h"

#define MAX_TOKENS 65536u /* largest -p / -n */

/* ---- options ------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fputs(
	    "usage: adainfer-bench [options] -m MODEL.gguf [-m MODEL.gguf ...]\n"
	    "\n"
	    "The engine's prompt processing (pp) and generation (tg) speed, measured as\n"
	    "llama-bench measures llama.cpp's; with --vs, llama-bench on the same files in the\n"
	    "same run, interleaved, with the ratios. Not installed: build/tests/bench/.\n"
	    "\n"
	    "  -m, --model FILE[,FILE...]   a model (repeatable)\n"
	    "  -p, --n-prompt N[,N...]      pp tests: one forward pass over N prompt tokens from\n"
	    "                               an empty context, all layers, then the logits of the\n"
	    "                               last position (default 128; 0 skips)\n"
	    "  -n, --n-gen N[,N...]         tg tests: N greedy single-token decode steps after a\n"
	    "                               one-token (BOS) prompt (default 32; 0 skips)\n"
	    "  -t, --threads N              compute threads, also for the bandwidth (default 2)\n"
	    "  -r, --repetitions N          repetitions of each test (default 5)\n"
	    "  -o, --output md|json         markdown table (default) or JSON lines\n"
	    "      --kv f32|f16             our KV cache type (default f32; f16 is llama.cpp's\n"
	    "                               default and adainferd's kv_cache: f16)\n"
	    "      --vs PATH                llama-bench to compare with: run on each file with "
	    "the\n"
	    "                               same -p/-n/-t and -r 1 once per round after ours, and\n"
	    "                               -ctk KV -ctv KV of --kv when it accepts them "
	    "(llama.cpp\n"
	    "                               c392e509 refuses f32: its F16 default is then used "
	    "and\n"
	    "                               the kv column says so; --kv f16 matches it)\n"
	    "      --bw-mib N               buffer of the bandwidth measurement in MiB (default:\n"
	    "                               8x the last-level cache, at least 256); 0 skips it\n"
	    "  -h, --help\n"
	    "\n"
	    "t/s is the mean +- sample standard deviation over the repetitions, the median in\n"
	    "parentheses. tg roofline share = tg t/s / (read bandwidth / bytes of weights read\n"
	    "per generated token: every layer tensor + output head + one embedding row).\n",
	    f);
}

static int
parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Appends the comma-separated values of s to list (llama-bench's -p 128,512). */
static int
parse_list(const char *s, uint32_t *list, int *n)
{
	char buf[256], *save = NULL;
	long v;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, s);
	for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (*n >= MAX_VALUES || parse_long(tok, 0, MAX_TOKENS, &v) < 0)
			return -EINVAL;
		list[(*n)++] = (uint32_t)v;
	}
	return 0;
}

static int
add_models(struct opts *o, const char *s)
{
	const char *p = s;

	while (*p != '\0') {
		size_t len = strcspn(p, ",");

		if (len > 0) {
			if (o->n_models >= MAX_MODELS)
				return -E2BIG;
			if ((o->models[o->n_models] = strndup(p, len)) == NULL)
				return -ENOMEM;
			o->n_models++;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

static void
opts_free(struct opts *o)
{
	for (int i = 0; i < o->n_models; i++)
		free(o->models[i]);
	o->n_models = 0;
}

enum { OPT_KV = 256, OPT_VS, OPT_BW };

/* One option ch with its argument arg into o. Returns 0, 1 (help printed) or -EINVAL (message
 * printed). */
static int
parse_opt(struct opts *o, int ch, const char *arg)
{
	long v;

	switch (ch) {
	case 'm':
		if (add_models(o, arg) < 0) {
			fprintf(stderr, "adainfer-bench: too many models (at most %d)\n",
				MAX_MODELS);
			return -EINVAL;
		}
		break;
	case 'p':
	case 'n':
		if (parse_list(arg, ch == 'p' ? o->pp : o->tg, ch == 'p' ? &o->n_pp : &o->n_tg) <
		    0) {
			fprintf(stderr,
				"adainfer-bench: -%c %s: want N[,N...], each 0..%u, at "
				"most %d\n",
				ch, arg, MAX_TOKENS, MAX_VALUES);
			return -EINVAL;
		}
		*(ch == 'p' ? &o->pp_set : &o->tg_set) = true;
		break;
	case 't':
		if (parse_long(arg, 1, 256, &v) < 0) {
			fprintf(stderr, "adainfer-bench: -t %s: want 1..256\n", arg);
			return -EINVAL;
		}
		o->threads = (int)v;
		break;
	case 'r':
		if (parse_long(arg, 1, MAX_REPS, &v) < 0) {
			fprintf(stderr, "adainfer-bench: -r %s: want 1..%d\n", arg, MAX_REPS);
			return -EINVAL;
		}
		o->reps = (int)v;
		break;
	case 'o':
		if (strcmp(arg, "md") == 0) {
			o->fmt = OUT_MD;
		} else if (strcmp(arg, "json") == 0) {
			o->fmt = OUT_JSON;
		} else {
			fprintf(stderr, "adainfer-bench: -o %s: want md or json\n", arg);
			return -EINVAL;
		}
		break;
	case OPT_KV: {
		enum kv_type t;

		if (kv_type_from_name(arg, &t) < 0) {
			fprintf(stderr, "adainfer-bench: --kv %s: want f32 or f16\n", arg);
			return -EINVAL;
		}
		o->kv = kv_type_name(t);
		break;
	}
	case OPT_VS:
		o->vs = arg;
		break;
	case OPT_BW:
		if (parse_long(arg, 0, (long)(BW_MAX >> 20), &v) < 0) {
			fprintf(stderr, "adainfer-bench: --bw-mib %s: want 0..%zu\n", arg,
				BW_MAX >> 20);
			return -EINVAL;
		}
		o->bw_mib = v;
		break;
	case 'h':
		usage(stdout);
		return 1;
	default:
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* Returns 0, 1 (help printed) or -EINVAL (message printed). */
static int
parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option longs[] = {
	    {"model", required_argument, NULL, 'm'},
	    {"n-prompt", required_argument, NULL, 'p'},
	    {"n-gen", required_argument, NULL, 'n'},
	    {"threads", required_argument, NULL, 't'},
	    {"repetitions", required_argument, NULL, 'r'},
	    {"output", required_argument, NULL, 'o'},
	    {"kv", required_argument, NULL, OPT_KV},
	    {"vs", required_argument, NULL, OPT_VS},
	    {"bw-mib", required_argument, NULL, OPT_BW},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch, rc;

	memset(o, 0, sizeof(*o));
	o->threads = 2;
	o->reps = 5;
	o->fmt = OUT_MD;
	o->kv = "f32";
	o->bw_mib = -1;
	while ((ch = getopt_long(argc, argv, "m:p:n:t:r:o:h", longs, NULL)) != -1)
		if ((rc = parse_opt(o, ch, optarg)) != 0)
			return rc;
	if (optind < argc) {
		fprintf(stderr, "adainfer-bench: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	if (o->n_models == 0) {
		usage(stderr);
		return -EINVAL;
	}
	if (!o->pp_set)
		o->pp[o->n_pp++] = 128;
	if (!o->tg_set)
		o->tg[o->n_tg++] = 32;
	return 0;
}

/* ---- the engine --------------------------------------------------------- */

struct engine {
	struct model m;
	struct ctx *c;
	int32_t *prompt; /* [max pp] */
	int32_t bos;
};

static int
run_batch(struct ctx *c, const int32_t *toks, uint32_t n, struct lens *ln)
{
	uint32_t L = ctx_model(c)->hp.n_layers;
	int rc;

	if ((rc = forward_begin(c, toks, n)) < 0)
		return rc;
	for (uint32_t l = 0; l < L; l++)
		if ((rc = forward_layer(c, l)) < 0)
			return rc;
	if ((rc = forward_lens(c, ln, NULL)) < 0)
		return rc;
	return forward_finish(c, L);
}

/* pp n: seconds for one pass over n prompt tokens from an empty context. */
static int
run_pp(struct engine *e, uint32_t n, double *secs)
{
	struct lens ln;
	double t0;
	int rc;

	ctx_reset(e->c);
	t0 = sys_now();
	rc = run_batch(e->c, e->prompt, n, &ln);
	*secs = sys_now() - t0;
	return rc;
}

/* tg n: seconds for n greedy decode steps after the one-token prompt (untimed). */
static int
run_tg(struct engine *e, uint32_t n, double *secs)
{
	struct lens ln;
	int32_t tok = e->bos;
	double t0;
	int rc;

	ctx_reset(e->c);
	if ((rc = run_batch(e->c, &tok, 1, &ln)) < 0)
		return rc;
	t0 = sys_now();
	for (uint32_t i = 0; i < n; i++) {
		tok = ln.top1;
		if ((rc = run_batch(e->c, &tok, 1, &ln)) < 0)
			return rc;
	}
	*secs = sys_now() - t0;
	return 0;
}

static int
run_test(struct engine *e, const struct test *t, double *tps)
{
	double secs = 0;
	int rc = t->kind == TEST_PP ? run_pp(e, t->n, &secs) : run_tg(e, t->n, &secs);

	if (rc < 0)
		return rc;
	*tps = secs > 0 ? t->n / secs : INFINITY;
	return 0;
}

/* llama.cpp's names of general.file_type (llama_ftype). */
static void
ftype_name(const struct model *m, char *buf, size_t cap)
{
	static const struct {
		uint32_t id;
		const char *name;
	} names[] = {
	    {0, "F32"},     {1, "F16"},     {2, "Q4_0"},    {3, "Q4_1"},    {7, "Q8_0"},
	    {8, "Q5_0"},    {9, "Q5_1"},    {10, "Q2_K"},   {11, "Q3_K_S"}, {12, "Q3_K_M"},
	    {13, "Q3_K_L"}, {14, "Q4_K_S"}, {15, "Q4_K_M"}, {16, "Q5_K_S"}, {17, "Q5_K_M"},
	    {18, "Q6_K"},   {32, "BF16"},
	};

	for (size_t i = 0; i < ARRAY_LEN(names); i++)
		if (names[i].id == m->file_type) {
			snprintf(buf, cap, "%s", names[i].name);
			return;
		}
	/* absent or unknown: name the type of the first layer's attn_q */
	snprintf(buf, cap, "%s", type_name(m->layers[0].wq.type));
}

static uint64_t
tensor_bytes(const struct tensor *t)
{
	return (uint64_t)t->row_size * t->ne[1];
}

/* What one generated token reads: every layer tensor, the output head, one embedding row. */
static void
weights_per_token(const struct model *m, struct model_run *r)
{
	r->layer_bytes = 0;
	for (uint32_t l = 0; l < m->hp.n_layers; l++) {
		const struct model_layer *L = &m->layers[l];
		const struct tensor *ts[] = {&L->attn_norm, &L->wq,     &L->wk,
					     &L->wv,        &L->wo,     &L->ffn_norm,
					     &L->ffn_gate,  &L->ffn_up, &L->ffn_down};

		for (size_t i = 0; i < ARRAY_LEN(ts); i++)
			r->layer_bytes += tensor_bytes(ts[i]);
	}
	r->head_bytes = tensor_bytes(&m->output) + tensor_bytes(&m->output_norm);
	r->embd_row_bytes = m->tok_embd.row_size;
	r->tensor_bytes = 0;
	r->n_params = 0;
	for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
		const struct gguf_tensor *t = &m->gguf.tensors[i];

		r->tensor_bytes += t->size;
		r->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
	}
}

/* ---- one model ---------------------------------------------------------- */

static int
tests_init(const struct opts *o, struct model_run *r)
{
	r->n_tests = 0;
	for (int pass = 0; pass < 2; pass++) {
		const uint32_t *v = pass == 0 ? o->pp : o->tg;
		int nv = pass == 0 ? o->n_pp : o->n_tg;

		for (int i = 0; i < nv; i++) {
			struct test *t = &r->tests[r->n_tests];

			if (v[i] == 0)
				continue;
			t->kind = pass == 0 ? TEST_PP : TEST_TG;
			t->n = v[i];
			snprintf(t->name, sizeof(t->name), "%s%u", pass == 0 ? "pp" : "tg", v[i]);
			t->ours = calloc((size_t)o->reps, sizeof(double));
			t->theirs = calloc((size_t)o->reps, sizeof(double));
			r->n_tests++;
			if (t->ours == NULL || t->theirs == NULL)
				return -ENOMEM;
		}
	}
	return 0;
}

static void
tests_free(struct model_run *r)
{
	for (int k = 0; k < r->n_tests; k++) {
		free(r->tests[k].ours);
		free(r->tests[k].theirs);
	}
	r->n_tests = 0;
}

/*
 * Loads one model, prints what it costs in memory and bytes per token, and
 * runs the rounds: all our tests, then (with --vs) one llama-bench -r 1.
 * Returns 0 or -1 (message printed); r keeps whatever samples it got.
 */
static int
bench_model(const struct opts *o, const struct host *h, struct model_run *r)
{
	struct engine e = {.bos = 1};
	struct diag d = {{0}};
	uint32_t max_pp = 0, max_tg = 0;
	struct ctx_opts co = {0};
	int rc = -1;

	sys_reset_peak_rss();
	if (model_load(&e.m, r->path, &d) < 0) {
		fprintf(stderr, "adainfer-bench: %s\n", d.msg);
		return -1;
	}
	for (int k = 0; k < r->n_tests; k++) {
		const struct test *t = &r->tests[k];

		if (t->kind == TEST_PP)
			max_pp = MAX(max_pp, t->n);
		else
			max_tg = MAX(max_tg, t->n);
	}
	r->n_ctx = MAX(MAX(max_pp, max_tg + 1), 1u);
	if (kv_type_from_name(o->kv, &co.kv_type) < 0)
		goto out;
	co.n_ctx = r->n_ctx;
	co.n_threads = o->threads;
	if (ctx_new_opts(&e.c, &e.m, &co, &d) < 0) {
		fprintf(stderr, "adainfer-bench: ctx_new: %s\n", d.msg);
		goto out;
	}
	if ((e.prompt = malloc((size_t)MAX(max_pp, 1u) * sizeof(int32_t))) == NULL) {
		fprintf(stderr, "adainfer-bench: out of memory\n");
		goto out;
	}
	if (e.m.vocab.bos_id >= 0)
		e.bos = e.m.vocab.bos_id;
	e.prompt[0] = e.bos;
	for (uint32_t i = 1; i < max_pp; i++) /* as bench_forward: spread over the vocabulary */
		e.prompt[i] = (int32_t)((i * 2654435761u) % e.m.hp.n_vocab);

	ftype_name(&e.m, r->ftype, sizeof(r->ftype));
	weights_per_token(&e.m, r);
	r->n_layers = e.m.hp.n_layers;
	r->kv_bytes = ctx_kv_bytes(&e.m, r->n_ctx, co.kv_type);
	r->map_size = (long long)e.m.map.size;
	sys_mem_read(&r->load);
	r->map_resident = sys_mapping_resident(&e.m.map);
	if (o->fmt == OUT_MD)
		out_print_model(o, h, r);

	/* warm-up, as llama-bench's (a whole pp, one decode step), once of each kind */
	for (int k = 0; k < r->n_tests; k++) {
		struct test w = r->tests[k];
		double tps;

		if (k > 0 && r->tests[k - 1].kind == w.kind)
			continue;
		if (w.kind == TEST_TG)
			w.n = 1;
		if ((rc = run_test(&e, &w, &tps)) < 0) {
			fprintf(stderr, "adainfer-bench: %s: %s: error %d\n", r->path, w.name, rc);
			rc = -1;
			goto out;
		}
	}
	rc = 0;
	for (int round = 0; round < o->reps && rc == 0; round++) {
		fprintf(stderr, "adainfer-bench: %s: round %d/%d\n", r->base, round + 1, o->reps);
		for (int k = 0; k < r->n_tests; k++) {
			struct test *t = &r->tests[k];
			int err = run_test(&e, t, &t->ours[t->n_ours]);

			if (err < 0) {
				fprintf(stderr, "adainfer-bench: %s: %s: error %d\n", r->path,
					t->name, err);
				rc = -1;
				break;
			}
			t->n_ours++;
		}
		if (rc == 0 && o->vs != NULL && vs_round(o, h, r) < 0)
			rc = -1;
	}
	sys_mem_read(&r->after);
	out_print_after_runs(o, h, r);
out:
	free(e.prompt);
	ctx_free(e.c);
	model_free(&e.m);
	return rc;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct host h = {0};
	struct model_run *runs = NULL;
	int rc, status = 0;

	blas_pick_core(argv); /* the kernels adainferd computes with (may restart) */
	h.blas_replaced = blas_replaced_core();
	if ((rc = parse_opts(&o, argc, argv)) != 0) {
		opts_free(&o);
		return rc > 0 ? 0 : 2;
	}
	sys_host_init(&h, &o);
	if (o.vs != NULL) {
		if (access(o.vs, X_OK) != 0) {
			fprintf(stderr, "adainfer-bench: --vs %s: not an executable\n", o.vs);
			opts_free(&o);
			return 2;
		}
		h.vs_ctk = vs_accepts_kv(o.vs, o.kv);
	}
	out_print_host(&o, &h);
	if ((runs = calloc((size_t)o.n_models, sizeof(*runs))) == NULL) {
		opts_free(&o);
		return 1;
	}
	for (int i = 0; i < o.n_models; i++) {
		struct model_run *r = &runs[i];
		const char *slash = strrchr(o.models[i], '/');

		r->path = o.models[i];
		r->base = slash != NULL ? slash + 1 : r->path;
		snprintf(r->ftype, sizeof(r->ftype), "?");
		if (tests_init(&o, r) < 0) {
			fprintf(stderr, "adainfer-bench: out of memory\n");
			status = 1;
			break;
		}
		r->ok = bench_model(&o, &h, r) == 0;
		if (!r->ok)
			status = 1;
	}
	out_print_results(&o, &h, runs, o.n_models);
	for (int i = 0; i < o.n_models; i++)
		tests_free(&runs[i]);
	free(runs);
	opts_free(&o);
	return status;
}
