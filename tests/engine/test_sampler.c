/*
 * test_sampler.c — greedy ties, NaN handling, determinism per seed, and the
 * empirical distribution of temperature and top-p sampling against the
 * softmax computed by hand.
 */
#include "test.h"

#include "daemon/engine/sampler.h"

static void
test_greedy(void)
{
	const float a[5] = {1, 3, 3, -INFINITY, 2};
	const float b[3] = {NAN, -1, NAN};
	const float c[2] = {NAN, NAN};

	ASSERT_EQ(sampler_greedy(a, 5), 1); /* lowest id on ties */
	ASSERT_EQ(sampler_greedy(b, 3), 1);
	ASSERT_EQ(sampler_greedy(c, 2), 0);
}

static void
test_init_errors(void)
{
	struct sampler s;

	ASSERT_EQ(sampler_init(&s, 0, 1, 1, 1), -EINVAL);
	ASSERT_EQ(sampler_init(&s, 4, NAN, 1, 1), -EINVAL);
	ASSERT_EQ(sampler_init(&s, 4, 1, 0, 1), -EINVAL);
	sampler_deinit(&s); /* safe after a failed init */
}

static void
test_deterministic_per_seed(void)
{
	float logits[64];
	struct sampler a, b, c;
	int same = 1, differ = 0;

	for (int i = 0; i < 64; i++)
		logits[i] = (float)((i * 37) % 11) * 0.3f;
	ASSERT_OK(sampler_init(&a, 64, 0.9f, 0.95f, 1234));
	ASSERT_OK(sampler_init(&b, 64, 0.9f, 0.95f, 1234));
	ASSERT_OK(sampler_init(&c, 64, 0.9f, 0.95f, 1235));
	for (int t = 0; t < 200; t++) {
		int32_t x = sampler_sample(&a, logits, 64), y = sampler_sample(&b, logits, 64);
		int32_t z = sampler_sample(&c, logits, 64);

		same &= x == y;
		differ |= x != z;
		ASSERT(x >= 0 && x < 64);
	}
	ASSERT(same);
	ASSERT(differ);
	/* temperature 0 is greedy and consumes no randomness */
	a.temperature = 0;
	ASSERT_EQ(sampler_sample(&a, logits, 64), sampler_greedy(logits, 64));
	sampler_deinit(&a);
	sampler_deinit(&b);
	sampler_deinit(&c);
}

static void
test_distribution(void)
{
	/* softmax = .5 .3 .2 (logits are log-probabilities), token 3 impossible */
	const float logits[4] = {logf(0.5f), logf(0.3f), logf(0.2f), -INFINITY};
	struct sampler s;
	int cnt[4] = {0};
	const int N = 20000;

	ASSERT_OK(sampler_init(&s, 4, 1.0f, 1.0f, 7));
	for (int t = 0; t < N; t++)
		cnt[sampler_sample(&s, logits, 4)]++;
	ASSERT_NEAR(cnt[0] / (double)N, 0.5, 0.015);
	ASSERT_NEAR(cnt[1] / (double)N, 0.3, 0.015);
	ASSERT_NEAR(cnt[2] / (double)N, 0.2, 0.015);
	ASSERT_EQ(cnt[3], 0);
	/* top_p .6: nucleus {0, 1} (.5 < .6 <= .8), renormalised 5:3 */
	memset(cnt, 0, sizeof(cnt));
	s.top_p = 0.6f;
	for (int t = 0; t < N; t++)
		cnt[sampler_sample(&s, logits, 4)]++;
	ASSERT_EQ(cnt[2], 0);
	ASSERT_NEAR(cnt[0] / (double)N, 0.625, 0.015);
	/* top_p .5: only the top token */
	s.top_p = 0.5f;
	for (int t = 0; t < 100; t++)
		ASSERT_EQ(sampler_sample(&s, logits, 4), 0);
	/* temperature 2: softmax(log p / 2) ∝ sqrt(p) = .707 .548 .447 */
	memset(cnt, 0, sizeof(cnt));
	s.top_p = 1;
	s.temperature = 2;
	for (int t = 0; t < N; t++)
		cnt[sampler_sample(&s, logits, 4)]++;
	ASSERT_NEAR(cnt[0] / (double)N, 0.7071 / (0.7071 + 0.5477 + 0.4472), 0.015);
	sampler_deinit(&s);
}

TEST_MAIN(TEST_CASE(test_greedy), TEST_CASE(test_init_errors),
	  TEST_CASE(test_deterministic_per_seed), TEST_CASE(test_distribution))
