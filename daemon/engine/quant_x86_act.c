/*
 * quant_x86_act.c — AVX2 conversion of activation rows to Q8_0 and Q8_K
 * blocks, bit-identical to quant.c's act_q8_0 / act_q8_k (and so to ggml's
 * quantize_row_q8_0 / quantize_row_q8_K_ref): the same IEEE products,
 * round-half-even, and clamps whose NaN behaviour is fmaxf's (maxps returns
 * its second operand when either is NaN, and the operands are ordered so
 * that this is the non-NaN one). Per-function target attributes.
 */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "quant_impl.h"
#include "quant_x86_common.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* max(amax, |v|) lane-wise, fmaxf-style: a NaN |v| leaves amax. */
AVX2 static inline __m256
max_abs(__m256 amax, __m256 v)
{
	return _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), amax);
}

/* The largest lane of v (no lane is NaN). */
AVX2 static inline float
hmax(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_movehdup_ps(m));
	return _mm_cvtss_f32(m);
}

/* fminf(fmaxf(nearbyintf(v * s), lo), hi) as int32, lane-wise. */
AVX2 static inline __m256i
round_clamp(__m256 v, __m256 s, __m256 lo, __m256 hi)
{
	__m256 t =
	    _mm256_round_ps(_mm256_mul_ps(v, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);

	return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(t, lo), hi));
}

/* 32 int32 in [-128, 127] (four vectors, in order) as 32 int8. */
AVX2 static inline __m256i
pack_i8(__m256i a, __m256i b, __m256i c, __m256i d)
{
	__m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);

	return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd),
					   _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_0: d = amax/127 stored as F16, q = round(x * (127/amax)) clamped to +-127. */
AVX2 void
quant_q8_0_from_f32_avx2(const float *x, void *vy, size_t nb)
{
	uint8_t *b = vy;
	const __m256 lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);

	for (size_t i = 0; i < nb; i++, x += 32, b += 34) {
		__m256 v[4], mx = _mm256_setzero_ps();
		__m256i q[4];

		for (int k = 0; k < 4; k++) {
			v[k] = _mm256_loadu_ps(x + 8 * k);
			mx = max_abs(mx, v[k]);
		}
		float amax = hmax(mx);
		float d = amax / 127.f;
		float id = amax != 0.0f ? 127.f / amax : 0.0f;
		uint16_t dh = quant_fp32_to_fp16(d);

		memcpy(b, &dh, 2);
		for (int k = 0; k < 4; k++)
			q[k] = round_clamp(v[k], _mm256_set1_ps(id), lo, hi);
		_mm256_storeu_si256((__m256i *)(b + 2), pack_i8(q[0], q[1], q[2], q[3]));
	}
}

/*
 * Q8_K: the first element of largest magnitude maps to -127 (iscale =
 * -127/max), q = round(iscale * x) clamped to [-128, 127], d = 1/iscale,
 * bsums the sums of 16 consecutive q.
 */
AVX2 void
quant_q8_k_from_f32_avx2(const float *x, void *vy, size_t nb)
{
	struct quant_block_q8_k *y = vy;
	const __m256 lo = _mm256_set1_ps(-128.f), hi = _mm256_set1_ps(127.f);

	for (size_t i = 0; i < nb; i++, x += 256, y++) {
		__m256 mx = _mm256_setzero_ps();
		float max = 0.0f;

		for (int k = 0; k < 32; k++)
			mx = max_abs(mx, _mm256_loadu_ps(x + 8 * k));
		float amax = hmax(mx);

		if (amax == 0.0f) {
			memset(y, 0, sizeof(*y));
			continue;
		}
		/* the scalar loop keeps the first element whose |x| is the maximum */
		for (int k = 0; k < 32; k++) {
			__m256 ax =
			    _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_loadu_ps(x + 8 * k));
			int m =
			    _mm256_movemask_ps(_mm256_cmp_ps(ax, _mm256_set1_ps(amax), _CMP_EQ_OQ));

			if (m != 0) {
				max = x[8 * k + __builtin_ctz((unsigned)m)];
				break;
			}
		}
		float iscale = -127.f / max;
		__m256 s = _mm256_set1_ps(iscale);

		for (int k = 0; k < 8; k++) {
			const float *xk = x + 32 * k;
			__m256i q0 = round_clamp(_mm256_loadu_ps(xk), s, lo, hi);
			__m256i q1 = round_clamp(_mm256_loadu_ps(xk + 8), s, lo, hi);
			__m256i q2 = round_clamp(_mm256_loadu_ps(xk + 16), s, lo, hi);
			__m256i q3 = round_clamp(_mm256_loadu_ps(xk + 24), s, lo, hi);

			_mm256_storeu_si256((__m256i *)(y->qs + 32 * k), pack_i8(q0, q1, q2, q3));
			y->bsums[2 * k] = (int16_t)hsum_i32_8(_mm256_add_epi32(q0, q1));
			y->bsums[2 * k + 1] = (int16_t)hsum_i32_8(_mm256_add_epi32(q2, q3));
		}
		y->d = 1.0f / iscale;
	}
}

#endif
