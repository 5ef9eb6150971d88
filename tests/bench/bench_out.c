/*
 * bench_out.c — adainfer-bench's output: the statistics over the samples
 * (mean, sample standard deviation, median, as llama-bench's) and every
 * line on standard output, either markdown (header lines, the per-model
 * memory lines, the table) or JSON lines ("system", "model", "result",
 * "ratio" records). It measures nothing and changes no record it prints.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "daemon/base/util.h"

#include "bench.h"

#define GIB (1024.0 * 1024 * 1024) /* sizes as llama-bench prints them */
#define MIB (1024.0 * 1024)

struct stats {
	double mean, sd, median; /* sd: sample standard deviation, as llama-bench's */
	int n;
};

/* ---- statistics --------------------------------------------------------- */

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct stats
stats_of(const double *v, int n)
{
	struct stats s = {NAN, NAN, NAN, n};
	double sorted[MAX_REPS], ss = 0;

	if (n <= 0)
		return s;
	s.mean = 0;
	for (int i = 0; i < n; i++)
		s.mean += v[i] / n;
	for (int i = 0; i < n; i++)
		ss += (v[i] - s.mean) * (v[i] - s.mean);
	s.sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
	memcpy(sorted, v, (size_t)n * sizeof(double));
	qsort(sorted, (size_t)n, sizeof(double), cmp_double);
	s.median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
	return s;
}

/* Bytes of weights one generated token reads: the layers, the output head, one embedding row. */
static uint64_t
bytes_per_token(const struct model_run *r)
{
	return r->layer_bytes + r->head_bytes + r->embd_row_bytes;
}

/* ---- output ------------------------------------------------------------- */

/* Sizes and counts as llama-bench prints them: "2.05 GiB", "1.10 B". */
static void
fmt_size(char *buf, size_t cap, uint64_t bytes)
{
	if ((double)bytes >= GIB)
		snprintf(buf, cap, "%.2f GiB", (double)bytes / GIB);
	else
		snprintf(buf, cap, "%.2f MiB", (double)bytes / MIB);
}

static void
fmt_count(char *buf, size_t cap, uint64_t n)
{
	if (n >= 1000000000)
		snprintf(buf, cap, "%.2f B", (double)n / 1e9);
	else if (n >= 1000000)
		snprintf(buf, cap, "%.2f M", (double)n / 1e6);
	else
		snprintf(buf, cap, "%.2f K", (double)n / 1e3);
}

static void
print_json(json_t *obj)
{
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));

	if (s != NULL) {
		puts(s);
		free(s);
	}
	json_decref(obj);
	fflush(stdout);
}

void
out_print_host(const struct opts *o, const struct host *h)
{
	if (o->fmt == OUT_JSON) {
		json_t *fl = json_object();

		for (int i = 0; i < h->n_flags; i++)
			json_object_set_new(fl, h->flag_names[i], json_boolean(h->flag_has[i]));
		print_json(json_pack(
		    "{s:s, s:s, s:s, s:o, s:i, s:s, s:s, s:s, s:s?, s:s?, s:f, s:I, s:I, s:s?, "
		    "s:s}",
		    "type", "system", "adainfer", ADAINFER_VERSION, "cpu", h->cpu, "flags", fl,
		    "threads", o->threads, "engine_kernels", h->kernels, "openblas_core",
		    h->blas_core, "openblas_config", h->blas_config, "openblas_coretype_env",
		    h->blas_env, "openblas_core_replaced", h->blas_replaced, "bandwidth_gbs",
		    h->bw_gbs, "bandwidth_buffer_bytes", (json_int_t)h->bw_bytes, "llc_bytes",
		    (json_int_t)h->llc_bytes, "vs", o->vs, "kv", o->kv));
		return;
	}
	printf("adainfer-bench %s\n", ADAINFER_VERSION);
	printf("cpu: %s; threads: %d\n", h->cpu, o->threads);
	printf("cpu flags:");
	for (int i = 0; i < h->n_flags; i++)
		if (h->flag_has[i])
			printf(" %s", h->flag_names[i]);
	printf(" (absent:");
	for (int i = 0; i < h->n_flags; i++)
		if (!h->flag_has[i])
			printf(" %s", h->flag_names[i]);
	printf(")\n");
	printf("engine kernels: %s; OpenBLAS core: %s (%s)%s%s%s%s%s\n", h->kernels, h->blas_core,
	       h->blas_config, h->blas_env ? "; OPENBLAS_CORETYPE=" : "",
	       h->blas_env ? h->blas_env : "",
	       h->blas_replaced ? " (set by adainfer: OpenBLAS chose " : "",
	       h->blas_replaced ? h->blas_replaced : "", h->blas_replaced ? ")" : "");
	if (h->bw_gbs > 0)
		printf("read bandwidth: %.1f GB/s (%d threads, %.0f MiB buffer, %.0f MiB "
		       "last-level cache, best of %d)\n",
		       h->bw_gbs, o->threads, (double)h->bw_bytes / MIB, (double)h->llc_bytes / MIB,
		       BW_RUNS);
	else
		printf("read bandwidth: not measured\n");
	if (o->vs != NULL) {
		char kvs[96];

		if (h->vs_ctk)
			snprintf(kvs, sizeof(kvs), "%s (-ctk %s -ctv %s), as ours", o->kv, o->kv,
				 o->kv);
		else if (strcmp(o->kv, "f16") == 0)
			snprintf(kvs, sizeof(kvs), "its default, f16, as ours");
		else
			snprintf(kvs, sizeof(kvs), "its default (it refuses -ctk %s), ours is %s",
				 o->kv, o->kv);
		printf("vs: %s, interleaved (adainfer, llama-bench -r 1, ...) over %d rounds; its "
		       "KV cache: %s\n",
		       o->vs, o->reps, kvs);
	}
	fflush(stdout);
}

void
out_print_model(const struct opts *o, const struct host *h, const struct model_run *r)
{
	double bpt = (double)bytes_per_token(r);
	double roof = h->bw_gbs > 0 ? h->bw_gbs * 1e9 / bpt : 0;
	char size[32], params[32];

	if (o->fmt == OUT_JSON) {
		json_t *obj = json_object();
		const struct {
			const char *key;
			long long v;
		} ints[] = {
		    {"size", (long long)r->tensor_bytes},
		    {"n_params", (long long)r->n_params},
		    {"n_layers", r->n_layers},
		    {"bytes_per_token", (long long)bytes_per_token(r)},
		    {"layer_bytes", (long long)r->layer_bytes},
		    {"head_bytes", (long long)r->head_bytes},
		    {"embd_row_bytes", (long long)r->embd_row_bytes},
		    {"n_ctx", r->n_ctx},
		    {"kv_bytes", (long long)r->kv_bytes},
		    {"mapping_bytes", r->map_size},
		    {"mapping_resident_bytes", r->map_resident},
		    {"rss_after_load", r->load.rss},
		    {"rss_file_after_load", r->load.file},
		    {"rss_anon_after_load", r->load.anon},
		    {"rss_after_runs", r->after.rss},
		    {"rss_anon_after_runs", r->after.anon},
		    {"rss_peak", r->after.hwm},
		};

		json_object_set_new(obj, "type", json_string("model"));
		json_object_set_new(obj, "model", json_string(r->path));
		json_object_set_new(obj, "file_type", json_string(r->ftype));
		json_object_set_new(obj, "kv_type", json_string(o->kv));
		for (size_t i = 0; i < ARRAY_LEN(ints); i++)
			json_object_set_new(obj, ints[i].key, json_integer(ints[i].v));
		json_object_set_new(obj, "roofline_tps", json_real(roof));
		print_json(obj);
		return;
	}
	fmt_size(size, sizeof(size), r->tensor_bytes);
	fmt_count(params, sizeof(params), r->n_params);
	printf("\nmodel %s: %s, %s, %s params, %u layers\n", r->path, r->ftype, size, params,
	       r->n_layers);
	printf("  weights read per generated token: %.3f GiB (layers %.3f GiB + output head "
	       "%.3f GiB + embedding row %.1f KiB)",
	       bpt / GIB, (double)r->layer_bytes / GIB, (double)r->head_bytes / GIB,
	       (double)r->embd_row_bytes / 1024);
	if (roof > 0)
		printf(" -> roofline %.2f tok/s at %.1f GB/s\n", roof, h->bw_gbs);
	else
		printf("\n");
	printf("  resident after load: VmRSS %.1f MiB = file-backed %.1f MiB (the mapping: %.1f "
	       "of %.1f MiB resident; shared libraries) + anonymous %.1f MiB (KV cache %s, %u "
	       "positions: %.1f MiB allocated, paged in as used; scratch: not exposed by the "
	       "ctx, allocated at the first batch)\n",
	       (double)r->load.rss / MIB, (double)r->load.file / MIB, (double)r->map_resident / MIB,
	       (double)r->map_size / MIB, (double)r->load.anon / MIB, o->kv, r->n_ctx,
	       (double)r->kv_bytes / MIB);
	fflush(stdout);
}

void
out_print_after_runs(const struct opts *o, const struct host *h, const struct model_run *r)
{
	if (o->fmt == OUT_MD && r->after.rss >= 0)
		printf("  resident after the runs: VmRSS %.1f MiB, anonymous %.1f MiB (KV + "
		       "scratch + buffers), peak since load %.1f MiB\n",
		       (double)r->after.rss / MIB, (double)r->after.anon / MIB,
		       (double)r->after.hwm / MIB);
	if (o->fmt == OUT_JSON)
		out_print_model(o, h, r); /* one record, after the runs */
}

static void
fmt_tps(char *buf, size_t cap, const struct stats *s)
{
	if (s->n == 0)
		snprintf(buf, cap, "-");
	else
		snprintf(buf, cap, "%.2f ± %.2f (%.2f)", s->mean, s->sd, s->median);
}

static void
fmt_share(char *buf, size_t cap, const struct test *t, const struct stats *s, double roof)
{
	if (t->kind != TEST_TG || roof <= 0 || s->n == 0)
		snprintf(buf, cap, "%s", t->kind == TEST_TG ? "-" : "");
	else
		snprintf(buf, cap, "%.0f%%", 100 * s->median / roof);
}

static void
json_result(const struct opts *o, const struct model_run *r, const struct test *t,
	    const char *engine, const double *v, int n, const char *kv, double roof)
{
	struct stats s = stats_of(v, n);
	json_t *arr, *obj;

	if (n == 0)
		return; /* nothing measured (the run failed): no record */
	arr = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(arr, json_real(v[i]));
	obj = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:i, s:f, s:f, s:f, s:o}", "type",
			"result", "engine", engine, "model", r->path, "test", t->name, "n_prompt",
			t->kind == TEST_PP ? (int)t->n : 0, "n_gen",
			t->kind == TEST_TG ? (int)t->n : 0, "n_threads", o->threads, "type_k", kv,
			"reps", n, "avg_ts", s.mean, "stddev_ts", s.sd, "median_ts", s.median,
			"samples_ts", arr);
	if (obj != NULL && t->kind == TEST_TG && roof > 0 && n > 0)
		json_object_set_new(obj, "roofline_share", json_real(s.median / roof));
	print_json(obj);
}

static bool
r_any_failed(const struct model_run *runs, int n)
{
	for (int i = 0; i < n; i++)
		if (!runs[i].ok)
			return true;
	return false;
}

void
out_print_results(const struct opts *o, const struct host *h, const struct model_run *runs, int n)
{
	bool vs = o->vs != NULL;

	if (o->fmt == OUT_JSON) {
		for (int i = 0; i < n; i++) {
			const struct model_run *r = &runs[i];
			double roof = h->bw_gbs > 0 ? h->bw_gbs * 1e9 / bytes_per_token(r) : 0;

			for (int k = 0; k < r->n_tests; k++) {
				const struct test *t = &r->tests[k];
				struct stats a = stats_of(t->ours, t->n_ours);
				struct stats b = stats_of(t->theirs, t->n_theirs);

				json_result(o, r, t, "adainfer", t->ours, t->n_ours, o->kv, roof);
				if (!vs)
					continue;
				json_result(o, r, t, "llama.cpp", t->theirs, t->n_theirs,
					    r->their_kv, roof);
				if (a.n > 0 && b.n > 0)
					print_json(json_pack(
					    "{s:s, s:s, s:s, s:f, s:f}", "type", "ratio", "model",
					    r->path, "test", t->name, "ratio_median",
					    a.median / b.median, "ratio_mean", a.mean / b.mean));
			}
		}
		return;
	}
	printf("\n");
	if (vs) {
		printf(
		    "| model | type | size | threads | kv ours / llama.cpp | test | adainfer t/s "
		    "| llama.cpp t/s | ratio | tg roofline share ours / llama.cpp |\n");
		printf("|---|---|---:|---:|---|---:|---:|---:|---:|---:|\n");
	} else {
		printf("| model | type | size | params | threads | kv | test | t/s | tg roofline "
		       "share |\n");
		printf("|---|---|---:|---:|---:|---|---:|---:|---:|\n");
	}
	for (int i = 0; i < n; i++) {
		const struct model_run *r = &runs[i];
		double roof = h->bw_gbs > 0 ? h->bw_gbs * 1e9 / bytes_per_token(r) : 0;

		for (int k = 0; k < r->n_tests; k++) {
			const struct test *t = &r->tests[k];
			struct stats a = stats_of(t->ours, t->n_ours);
			char ta[64], sa[16], size[32], params[32];

			fmt_tps(ta, sizeof(ta), &a);
			fmt_share(sa, sizeof(sa), t, &a, roof);
			fmt_size(size, sizeof(size), r->tensor_bytes);
			fmt_count(params, sizeof(params), r->n_params);
			if (vs) {
				struct stats b = stats_of(t->theirs, t->n_theirs);
				char tb[64], sb[16], ratio[16];

				fmt_tps(tb, sizeof(tb), &b);
				fmt_share(sb, sizeof(sb), t, &b, roof);
				if (a.n > 0 && b.n > 0)
					snprintf(ratio, sizeof(ratio), "%.2f", a.median / b.median);
				else
					snprintf(ratio, sizeof(ratio), "-");
				printf("| %s | %s | %s | %d | %s / %s | %s | %s | %s | %s | %s%s%s "
				       "|\n",
				       r->base, r->ftype, size, o->threads, o->kv,
				       r->their_kv[0] ? r->their_kv : "?", t->name, ta, tb, ratio,
				       sa, t->kind == TEST_TG ? " / " : "", sb);
			} else {
				printf("| %s | %s | %s | %s | %d | %s | %s | %s | %s |\n", r->base,
				       r->ftype, size, params, o->threads, o->kv, t->name, ta, sa);
			}
		}
	}
	printf("\nt/s: mean ± sample stddev over %d repetitions (median); %sroofline share: "
	       "median tg t/s / (read bandwidth / weights read per token)%s\n",
	       o->reps, vs ? "ratio: adainfer / llama.cpp of the medians; " : "",
	       r_any_failed(runs, n) ? "; a model that failed has partial or no rows" : "");
}
