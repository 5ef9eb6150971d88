/*
 * bench_sys.c — adainfer-bench's machine facts: the clock, the CPU's
 * kernel-relevant flags, the last-level cache size, the OpenBLAS core, the
 * read bandwidth (measured once, with the benchmark's thread count) and this
 * process's resident memory and how it splits (the model's mapping, anonymous,
 * file-backed). It reads /proc and /sys and writes nothing there but
 * /proc/self/clear_refs (to restart the peak); of the engine it only asks the
 * SIMD level and mincore()s the mapping it is handed, never its state.
 */
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h> /* OpenBLAS's: openblas_get_corename, openblas_get_config */

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "daemon/base/util.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/quant.h"

#include "bench.h"

#define BW_MIN ((size_t)256 << 20) /* bandwidth buffer lower bound (auto) */

/* /proc/cpuinfo names of the flags the kernels care about. */
static const char *const kernel_flags[] = {
    "avx2",        "fma",         "f16c",     "avx512f",  "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
};

double
sys_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the host ----------------------------------------------------------- */

static void
read_cpu(struct host *h)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char *line = NULL, *save = NULL;
	size_t cap = 0;
	bool got_flags = false;

	strcpy(h->cpu, "unknown");
	h->n_flags = (int)ARRAY_LEN(kernel_flags);
	for (int i = 0; i < h->n_flags; i++) {
		h->flag_names[i] = kernel_flags[i];
		h->flag_has[i] = false;
	}
	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *colon = strchr(line, ':');

		if (colon == NULL)
			continue;
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "model name", 10) == 0 && strcmp(h->cpu, "unknown") == 0) {
			const char *v = colon + 1 + strspn(colon + 1, " \t");

			snprintf(h->cpu, sizeof(h->cpu), "%s", v);
		} else if (strncmp(line, "flags", 5) == 0 && !got_flags) {
			got_flags = true;
			for (char *tok = strtok_r(colon + 1, " \t", &save); tok != NULL;
			     tok = strtok_r(NULL, " \t", &save))
				for (int i = 0; i < h->n_flags; i++)
					if (strcmp(tok, kernel_flags[i]) == 0)
						h->flag_has[i] = true;
		}
	}
	free(line);
	fclose(f);
}

/*
 * The largest CPU cache, bytes (0: unknown): sysfs first, the kernel's view
 * (glibc's sysconf(_SC_LEVEL3_CACHE_SIZE) says 320 MiB for a 32 MiB L3 on
 * some virtual CPUs), sysconf when sysfs has nothing.
 */
static size_t
llc_size(void)
{
	size_t best = 0;
	long v;

	for (int i = 0; i < 8; i++) {
		char path[96], unit = 0;
		unsigned long n = 0;
		FILE *f;

		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
		if ((f = fopen(path, "r")) == NULL)
			break;
		if (fscanf(f, "%lu%c", &n, &unit) >= 1) {
			size_t b = unit == 'K' ? n << 10 : unit == 'M' ? n << 20 : n;

			best = b > best ? b : best;
		}
		fclose(f);
	}
	if (best == 0 && (v = sysconf(_SC_LEVEL3_CACHE_SIZE)) > 0)
		best = (size_t)v;
	return best;
}

/* Sums n 64-bit words (the read is what is measured; the sum keeps it from being elided). */
static uint64_t
read_words(const uint64_t *p, size_t n)
{
	uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t i = 0;

	for (; i + 4 <= n; i += 4) {
		s0 += p[i];
		s1 += p[i + 1];
		s2 += p[i + 2];
		s3 += p[i + 3];
	}
	for (; i < n; i++)
		s0 += p[i];
	return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__)
/* The same with 32-byte loads, 4 independent chains (n a multiple of 16, p 32-byte aligned). */
__attribute__((target("avx2"))) static uint64_t
read_words_avx2(const uint64_t *p, size_t n)
{
	__m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
	uint64_t out[4];

	for (size_t i = 0; i < n; i += 16) {
		a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
		b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
		c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
		d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
	}
	a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
	_mm256_storeu_si256((__m256i *)out, a);
	return out[0] + out[1] + out[2] + out[3];
}
#endif

struct bw_part {
	const uint64_t *p;
	size_t n; /* words, a multiple of 16 */
	bool avx2;
	atomic_int *go; /* 0: wait, 1: read, -1: give up */
	double t0, t1;
	uint64_t sum;
};

static volatile uint64_t bw_sink; /* the sums go here, so the reads are not elided */

static void *
bw_worker(void *arg)
{
	struct bw_part *w = arg;
	int go;

	while ((go = atomic_load(w->go)) == 0)
		sched_yield();
	if (go < 0)
		return NULL;
	w->t0 = sys_now();
#if defined(__x86_64__)
	if (w->avx2)
		w->sum = read_words_avx2(w->p, w->n);
	else
#endif
		w->sum = read_words(w->p, w->n);
	w->t1 = sys_now();
	return NULL;
}

/*
 * Read bandwidth in GB/s: `threads` threads each read their slice of a
 * buffer several times the last-level cache once, released together; bytes /
 * (last end - first start), best of BW_RUNS. Returns 0 when it cannot measure.
 */
static double
measure_bandwidth(size_t bytes, int threads)
{
	struct bw_part parts[256];
	pthread_t tid[256];
	uint64_t *buf;
	size_t per;
	double best = 0;
	bool avx2 = false;

#if defined(__x86_64__)
	avx2 = __builtin_cpu_supports("avx2");
#endif
	bytes &= ~(size_t)4095;
	per = bytes / sizeof(uint64_t) / (size_t)threads / 16 * 16;
	if (per == 0 || (buf = aligned_alloc(4096, bytes)) == NULL)
		return 0;
	memset(buf, 0x5a, bytes); /* every page faulted in before timing */
	for (int run = 0; run < BW_RUNS; run++) {
		atomic_int go = 0;
		double t0 = INFINITY, t1 = 0;
		int started = 1;

		for (int i = 0; i < threads; i++)
			parts[i] = (struct bw_part){
			    .p = buf + (size_t)i * per, .n = per, .avx2 = avx2, .go = &go};
		while (started < threads &&
		       pthread_create(&tid[started], NULL, bw_worker, &parts[started]) == 0)
			started++;
		atomic_store(&go, started == threads ? 1 : -1);
		if (started == threads)
			bw_worker(&parts[0]);
		for (int i = 1; i < started; i++)
			pthread_join(tid[i], NULL);
		if (started < threads) {
			fprintf(stderr, "adainfer-bench: bandwidth: cannot start %d threads\n",
				threads);
			best = 0;
			break;
		}
		for (int i = 0; i < threads; i++) {
			t0 = fmin(t0, parts[i].t0);
			t1 = fmax(t1, parts[i].t1);
			bw_sink += parts[i].sum;
		}
		if (t1 > t0)
			best = fmax(best, (double)(per * (size_t)threads * sizeof(uint64_t)) /
					      (t1 - t0) / 1e9);
	}
	free(buf);
	return best;
}

void
sys_host_init(struct host *h, const struct opts *o)
{
	read_cpu(h);
	h->kernels = quant_simd_name(quant_simd_level());
	h->blas_core = openblas_get_corename();
	h->blas_config = openblas_get_config();
	h->blas_env = getenv("OPENBLAS_CORETYPE");
	h->llc_bytes = llc_size();
	if (o->bw_mib != 0) {
		size_t want = MAX(BW_MIN, 8 * h->llc_bytes);

		h->bw_bytes = o->bw_mib > 0 ? (size_t)o->bw_mib << 20 : MIN(want, BW_MAX);
		h->bw_gbs = measure_bandwidth(h->bw_bytes, o->threads);
	}
}

/* ---- memory ------------------------------------------------------------- */

void
sys_mem_read(struct mem *m)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];

	m->rss = m->anon = m->file = m->hwm = -1;
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long kb;

		if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
			m->rss = kb * 1024;
		else if (sscanf(line, "RssAnon: %lld kB", &kb) == 1)
			m->anon = kb * 1024;
		else if (sscanf(line, "RssFile: %lld kB", &kb) == 1)
			m->file = kb * 1024;
		else if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
			m->hwm = kb * 1024;
	}
	fclose(f);
}

/* Restarts VmHWM at the current RSS (Linux >= 4.0; ignored where it cannot). */
void
sys_reset_peak_rss(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, "5", 1) < 0) {
		/* not supported: the peak then counts from process start */
	}
	close(fd);
}

/* Resident bytes of the model's mapping (mincore), -1 when unknown. */
long long
sys_mapping_resident(const struct mapping *mp)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t n;
	unsigned char *vec;
	long long res = 0;

	if (mp->base == NULL || page <= 0)
		return -1;
	n = (mp->size + (size_t)page - 1) / (size_t)page;
	if ((vec = malloc(n)) == NULL)
		return -1;
	if (mincore((void *)mp->base, mp->size, vec) < 0) {
		free(vec);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		res += vec[i] & 1;
	free(vec);
	return res * page;
}
