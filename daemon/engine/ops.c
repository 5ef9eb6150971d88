/*
 * ops.c — RMSNorm, RoPE, softmax, SwiGLU and the weight-times-activations
 * product of the forward pass. Matrix products go through OpenBLAS for F32
 * weights and through quant.c's per-block kernels, threaded over weight rows,
 * for everything else.
 *
 * Shapes are the caller's to check (model.c validated them); nothing here
 * allocates or fails.
 */
#include "ops.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "daemon/base/util.h"
#include "quant.h"

void
ops_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps)
{
	double sum = 0.0;

	for (size_t i = 0; i < n; i++)
		sum += (double)(x[i] * x[i]);
	float mean = (float)(sum / (double)n);
	float scale = 1.0f / sqrtf(mean + eps);

	for (size_t i = 0; i < n; i++)
		out[i] = (x[i] * scale) * w[i];
}

void
ops_rope_angles(float *cs, uint32_t rope_dim, uint32_t pos, float base)
{
	/* ggml_rope_cache_init: theta_i = theta_{i-1} * base^(-2/n_dims), in float */
	float theta_scale = powf(base, -2.0f / (float)rope_dim);
	float theta = (float)pos;

	for (uint32_t i = 0; i + 1 < rope_dim; i += 2) {
		cs[i] = cosf(theta);
		cs[i + 1] = sinf(theta);
		theta *= theta_scale;
	}
}

void
ops_rope_apply(float *x, uint32_t n_heads, uint32_t head_dim, uint32_t rope_dim, const float *cs)
{
	for (uint32_t h = 0; h < n_heads; h++, x += head_dim) {
		for (uint32_t i = 0; i + 1 < rope_dim; i += 2) {
			float x0 = x[i], x1 = x[i + 1];

			x[i] = x0 * cs[i] - x1 * cs[i + 1];
			x[i + 1] = x0 * cs[i + 1] + x1 * cs[i];
		}
	}
}

void
ops_softmax(float *x, size_t n)
{
	float max = -INFINITY;
	double sum = 0.0;

	for (size_t i = 0; i < n; i++)
		max = fmaxf(max, x[i]);
	for (size_t i = 0; i < n; i++) {
		float e = expf(x[i] - max);

		sum += (double)e;
		x[i] = e;
	}
	float inv = (float)(1.0 / sum);

	for (size_t i = 0; i < n; i++)
		x[i] *= inv;
}

void
ops_swiglu(float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

int
ops_matmul_scratch(const struct tensor *w, size_t n_tok, size_t *out)
{
	size_t row;
	int rc;

	*out = 0;
	if (w->type == GGML_TYPE_F32)
		return 0;
	if ((rc = quant_act_row_size(w->type, (size_t)w->ne[0], &row)) < 0)
		return rc;
	return size_mul(out, row, n_tok);
}

struct mm_job {
	const struct tensor *w;
	quant_dot_fn dot;
	const uint8_t *act;
	size_t act_row;
	size_t n_tok, rows, cols;
	float *y;
};

/* Rows are walked in small groups so that a group stays in cache while every token passes. */
#define MM_GROUP 8

static void
mm_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	const uint8_t *wd = j->w->data;
	long lo, hi;

	pool_split((long)j->rows, ith, nth, &lo, &hi);
	for (long r0 = lo; r0 < hi; r0 += MM_GROUP) {
		long r1 = MIN(r0 + MM_GROUP, hi);

		for (size_t t = 0; t < j->n_tok; t++) {
			const uint8_t *a = j->act + t * j->act_row;
			float *yt = j->y + t * j->rows;

			for (long r = r0; r < r1; r++)
				yt[r] = j->dot(wd + (size_t)r * j->w->row_size, a, j->cols);
		}
	}
}

/* F32 rows dotted one by one: only when a dimension does not fit BLAS's int. */
static void
mm_f32_worker(void *arg, int ith, int nth)
{
	const struct mm_job *j = arg;
	const float *x = (const float *)j->act;
	long lo, hi;

	pool_split((long)j->rows, ith, nth, &lo, &hi);
	for (size_t t = 0; t < j->n_tok; t++)
		for (long r = lo; r < hi; r++)
			j->y[t * j->rows + r] =
			    quant_dot_f32((const float *)((const uint8_t *)j->w->data +
							  (size_t)r * j->w->row_size),
					  x + t * j->cols, j->cols);
}

/* Below this many multiply-adds one thread is faster than waking the others. */
#define MM_MIN_PARALLEL (256 * 1024)

void
ops_matmul(struct pool *p, const struct tensor *w, const float *x, size_t n_tok, float *y,
	   void *act)
{
	struct mm_job j = {
	    .w = w, .n_tok = n_tok, .rows = (size_t)w->ne[1], .cols = (size_t)w->ne[0], .y = y};
	int nth = p != NULL ? pool_size(p) : 1;

	if ((double)j.rows * (double)j.cols * (double)n_tok < MM_MIN_PARALLEL)
		nth = 1;
	if (w->type == GGML_TYPE_F32) {
		const float *wd = w->data;

		/* decode (n_tok == 1) takes the row-dot path below on our pool: OpenBLAS's
		 * threaded sgemv cost more than it saved on the models we serve (bench_forward) */
		if (n_tok > 1 && j.rows <= INT_MAX && j.cols <= INT_MAX && n_tok <= INT_MAX &&
		    w->row_size == j.cols * sizeof(float)) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok,
				    (int)j.rows, (int)j.cols, 1.0f, x, (int)j.cols, wd, (int)j.cols,
				    0.0f, y, (int)j.rows);
			return;
		}
		j.act = (const uint8_t *)x;
		if (p != NULL)
			pool_run(p, mm_f32_worker, &j, nth);
		else
			mm_f32_worker(&j, 0, 1);
		return;
	}
	j.dot = quant_dot_get(w->type);
	REQUIRE(j.dot != NULL); /* model.c refuses other types */
	REQUIRE(quant_act_row_size(w->type, j.cols, &j.act_row) == 0);
	for (size_t t = 0; t < n_tok; t++)
		quant_act_from_float(w->type, x + t * j.cols, (uint8_t *)act + t * j.act_row,
				     j.cols);
	j.act = act;
	if (p != NULL)
		pool_run(p, mm_worker, &j, nth);
	else
		mm_worker(&j, 0, 1);
}
