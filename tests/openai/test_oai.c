/*
 * test_oai.c — adainfer-openai's pure parts: UTF-8 repair (against
 * Python's "replace" decoding, by example, and a validator written here),
 * stop strings (against a brute-force reference), the streamed text filter
 * (any split of the text into pieces releases exactly what the whole text
 * gives, and never a stop string), request checking and the parameters
 * built for the daemon, response bodies and the error map.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define RNG_SEED 0x6f70656e6169ull
#include "test.h"
#include "util/rng.h"

#include "client/openai/oai_err.h"
#include "client/openai/oai_req.h"
#include "client/openai/oai_resp.h"
#include "client/openai/oai_text.h"

/* ---- UTF-8 ------------------------------------------------------------------ */

/* An independent validator: decode code points and check the RFC 3629 ranges. */
static bool
valid_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i], need, cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			need = 1, cp = c & 0x1f;
		else if ((c & 0xf0) == 0xe0)
			need = 2, cp = c & 0x0f;
		else if ((c & 0xf8) == 0xf0)
			need = 3, cp = c & 0x07;
		else
			return false;
		if (i + need >= n)
			return false;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
		    (need == 3 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* (input, length, Python's bytes.decode("utf-8", "replace").encode()) */
static const struct {
	const char *in;
	size_t n;
	const char *want;
} utf8_cases[] = {
    {"\x61\x62\x63", 3, "\x61\x62\x63"},
    {"\x61\xe2\x82", 3, "\x61\xef\xbf\xbd"},
    {"\xe2\x82\xac\x21", 4, "\xe2\x82\xac\x21"},
    {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80\x78", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x78"},
    {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},
    {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
    {"\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"\x80\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\x61\xff\x62", 3, "\x61\xef\xbf\xbd\x62"},
    {"\xe2\x28\xa1", 3, "\xef\xbf\xbd\x28\xef\xbf\xbd"},
};

static void
test_utf8_examples(void)
{
	for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
		char *out = NULL;
		size_t len = 0, cap = 0;
		ASSERT_OK(oai_utf8_append(&out, &len, &cap, utf8_cases[i].in, utf8_cases[i].n));
		ASSERT_EQ(len, strlen(utf8_cases[i].want));
		ASSERT(memcmp(out, utf8_cases[i].want, len) == 0);
		free(out);
	}
}

static void
test_utf8_complete(void)
{
	ASSERT_EQ(oai_utf8_complete("abc", 3), 3);
	ASSERT_EQ(oai_utf8_complete("a\xe2\x82", 3), 1); /* waits for the third byte */
	ASSERT_EQ(oai_utf8_complete("a\xe2", 2), 1);
	ASSERT_EQ(oai_utf8_complete("\xe2\x82\xac", 3), 3);
	ASSERT_EQ(oai_utf8_complete("\xf0\x9f\x98", 3), 0);
	ASSERT_EQ(oai_utf8_complete("x\xc0", 2), 2);    /* C0 never starts anything */
	ASSERT_EQ(oai_utf8_complete("\xed\xa0", 2), 2); /* a surrogate: never valid */
	ASSERT_EQ(oai_utf8_complete("\xf4\x90", 2), 2); /* above U+10FFFF */
	ASSERT_EQ(oai_utf8_complete("\x80\x80\x80", 3), 3);
	ASSERT_EQ(oai_utf8_complete("", 0), 0);
}

static void
test_utf8_random(void)
{
	unsigned char in[64];
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = rng_u64() % sizeof(in);
		for (size_t i = 0; i < n; i++) /* bias towards bytes that matter */
			in[i] = (unsigned char)(rng_u64() % 3 == 0 ? 0x80 + rng_u64() % 0x80
								   : rng_u64() % 256);
		char *out = NULL;
		size_t len = 0, cap = 0;
		ASSERT_OK(oai_utf8_append(&out, &len, &cap, (const char *)in, n));
		ASSERT(valid_utf8((const unsigned char *)out, len));
		if (valid_utf8(in, n)) /* valid input passes unchanged */
			ASSERT(len == n && (n == 0 || memcmp(out, in, n) == 0));
		free(out);
	}
}

/* ---- stop strings ------------------------------------------------------------- */

static size_t
ref_find(const struct oai_stops *st, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < st->n; k++)
			if (i + st->len[k] <= n && memcmp(s + i, st->s[k], st->len[k]) == 0)
				return i;
	return n;
}

static size_t
ref_holdback(const struct oai_stops *st, const char *s, size_t n)
{
	size_t best = 0;
	for (size_t m = 1; m <= n; m++)
		for (size_t k = 0; k < st->n; k++)
			if (m < st->len[k] && memcmp(s + n - m, st->s[k], m) == 0 && m > best)
				best = m;
	return best;
}

static void
rand_text(char *s, size_t n, const char *alphabet)
{
	size_t a = strlen(alphabet);
	for (size_t i = 0; i < n; i++)
		s[i] = alphabet[rng_u64() % a];
}

static void
rand_stops(struct oai_stops *st, char bufs[][8])
{
	st->n = 1 + rng_u64() % 3;
	for (size_t k = 0; k < st->n; k++) {
		size_t L = 1 + rng_u64() % 4;
		rand_text(bufs[k], L, "ab\xe2\x82");
		st->s[k] = bufs[k];
		st->len[k] = L;
	}
}

static void
test_stop_reference(void)
{
	char bufs[4][8], s[40];
	struct oai_stops st;

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = rng_u64() % sizeof(s);
		rand_stops(&st, bufs);
		rand_text(s, n, "abc");
		ASSERT_EQ(oai_stop_find(&st, s, n), ref_find(&st, s, n));
		ASSERT_EQ(oai_stop_holdback(&st, s, n), ref_holdback(&st, s, n));
	}
	st.n = 0;
	ASSERT_EQ(oai_stop_find(&st, "abc", 3), 3);
	ASSERT_EQ(oai_stop_holdback(NULL, "abc", 3), 0);
}

/*
 * Streaming a text in random pieces (tokens) releases what the whole answer
 * gives when not streamed, and never a stop string. The whole answer is what
 * the daemon sends: it stops after the piece that first completes a stop
 * string, so its text ends there.
 */
static void
test_stream_filter(void)
{
	char bufs[4][8], s[48];
	struct oai_stops st;

	for (int iter = 0; iter < 5000; iter++) {
		size_t n = rng_u64() % sizeof(s), at = 0;
		struct oai_text t;
		char *out = NULL, *want = NULL;
		size_t len = 0, cap = 0, wlen = 0, wcap = 0;

		rand_stops(&st, bufs);
		rand_text(s, n, "abc\xe2\x82\xac\xf0\x9f");
		oai_text_init(&t, iter % 5 == 0 ? NULL : &st);
		while (at < n) {
			size_t k = 1 + rng_u64() % 4;
			if (k > n - at)
				k = n - at;
			ASSERT_OK(oai_text_push(&t, s + at, k, &out, &len, &cap));
			/* what is out so far is valid and holds no stop string */
			ASSERT(valid_utf8((unsigned char *)out, len));
			if (t.stops != NULL)
				ASSERT_EQ(ref_find(&st, out, len), len);
			at += k;
			if (t.stops != NULL && ref_find(&st, s, at) < at)
				break; /* the daemon stops here */
		}
		ASSERT_OK(oai_text_finish(&t, &out, &len, &cap));
		size_t cut = t.stops != NULL ? ref_find(&st, s, at) : at;
		ASSERT_OK(oai_utf8_append(&want, &wlen, &wcap, s, cut));
		ASSERT_EQ(len, wlen);
		ASSERT(len == 0 || memcmp(out, want, len) == 0);
		free(out);
		free(want);
		oai_text_deinit(&t);
	}
}

/* ---- requests -------------------------------------------------------------------- */

static int
parse(enum oai_kind kind, const char *body, struct oai_req *r, struct oai_err *e)
{
	memset(e, 0, sizeof(*e));
	return oai_req_parse(r, kind, body, strlen(body), e);
}

static void
test_req_completions(void)
{
	struct oai_req r;
	struct oai_err e;

	ASSERT_OK(parse(OAI_COMPLETIONS,
			"{\"model\":\"m:sst2\",\"prompt\":\"hi\",\"max_tokens\":3,"
			"\"temperature\":0,\"top_p\":0.5,\"seed\":7,\"stop\":[\"\\n\",\"x\"],"
			"\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
			"\"logprobs\":null,\"presence_penalty\":0,\"user\":\"u\","
			"\"adainfer\":{\"full_depth\":true}}",
			&r, &e));
	ASSERT_STREQ(r.model, "m:sst2");
	ASSERT_STREQ(r.prompt, "hi");
	ASSERT_EQ(r.max_tokens, 3);
	ASSERT_NEAR(r.temperature, 0, 0);
	ASSERT_NEAR(r.top_p, 0.5, 0);
	ASSERT(r.has_seed && r.seed == 7);
	ASSERT_EQ(r.stops.n, 2);
	ASSERT(r.stream && r.include_usage);
	ASSERT_EQ(r.full_depth, 1);
	char task[64];
	ASSERT_OK(oai_req_task(&r, "m", task, sizeof(task), &e));
	ASSERT_STREQ(task, "sst2");
	ASSERT_EQ(oai_req_task(&r, "other", task, sizeof(task), &e), -1);
	ASSERT_EQ(e.status, 404);
	ASSERT_STREQ(e.code, "model_not_found");

	struct oai_params p;
	ASSERT_OK(oai_req_params(&r, task, 16, &p, &e));
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(&p.value, "prompt"), NULL), "hi");
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(&p.value, "task"), NULL), "sst2");
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(&p.value, "max_tokens"), 0), 3);
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(&p.value, "seed"), 0), 7);
	ASSERT_EQ(adainfer_value_get(&p.value, "stop")->u.array.n, 2);
	ASSERT(adainfer_value_bool(adainfer_value_get(&p.value, "stream"), false));
	ASSERT(adainfer_value_bool(adainfer_value_get(&p.value, "full_depth"), false));
	ASSERT(adainfer_value_get(&p.value, "messages") == NULL);
	oai_params_deinit(&p);
	oai_req_deinit(&r);

	/* token prompts, defaults, and the task from the extension */
	ASSERT_OK(parse(OAI_COMPLETIONS,
			"{\"model\":\"m\",\"prompt\":[[1,2,3]],\"adainfer\":{\"task\":\"trec\","
			"\"profile\":{\"classifier\":\"gap\",\"threshold\":0.9,\"min_layer\":2}}}",
			&r, &e));
	ASSERT_EQ(r.n_tokens, 3);
	ASSERT_EQ(r.max_tokens, -1);
	ASSERT_NEAR(r.temperature, 1, 0); /* OpenAI's default */
	ASSERT_OK(oai_req_task(&r, "m", task, sizeof(task), &e));
	ASSERT_STREQ(task, "trec");
	ASSERT_OK(oai_req_params(&r, task, 16, &p, &e));
	ASSERT_EQ(adainfer_value_get(&p.value, "tokens")->u.array.n, 3);
	ASSERT_EQ(adainfer_value_get(&p.value, "tokens")->u.array.v[2].u.i, 3);
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(&p.value, "max_tokens"), 0), 16);
	const struct adainfer_value *prof = adainfer_value_get(&p.value, "profile");
	ASSERT(prof != NULL && prof->type == ADAINFER_MAP);
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(prof, "classifier"), NULL), "gap");
	ASSERT_NEAR(adainfer_value_float(adainfer_value_get(prof, "threshold"), 0), 0.9, 0);
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(prof, "min_layer"), 0), 2);
	oai_params_deinit(&p);
	oai_req_deinit(&r);

	/* a task both in model and extension must agree */
	ASSERT_OK(parse(OAI_COMPLETIONS,
			"{\"model\":\"m:a\",\"prompt\":\"x\",\"adainfer\":{\"task\":\"b\"}}", &r,
			&e));
	ASSERT_EQ(oai_req_task(&r, "m", task, sizeof(task), &e), -1);
	ASSERT_EQ(e.status, 400);
	oai_req_deinit(&r);
}

static void
test_req_chat(void)
{
	struct oai_req r;
	struct oai_err e;
	struct oai_params p;

	ASSERT_OK(parse(OAI_CHAT,
			"{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be "
			"brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a"
			"\"},{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\","
			"\"content\":null}],\"max_completion_tokens\":5,"
			"\"adainfer\":{\"template\":\"chatml\"}}",
			&r, &e));
	ASSERT_EQ(r.n_msgs, 3);
	ASSERT_STREQ(r.msgs[0].role, "system");
	ASSERT_STREQ(r.msgs[1].content, "ab");
	ASSERT_STREQ(r.msgs[2].content, "");
	ASSERT_EQ(r.max_tokens, 5);
	ASSERT_OK(oai_req_params(&r, "", 256, &p, &e));
	const struct adainfer_value *m = adainfer_value_get(&p.value, "messages");
	ASSERT(m != NULL && m->type == ADAINFER_ARRAY && m->u.array.n == 3);
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(&m->u.array.v[1], "role"), NULL),
		     "user");
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(&m->u.array.v[1], "content"), NULL),
		     "ab");
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(&p.value, "template"), NULL), "chatml");
	ASSERT(adainfer_value_get(&p.value, "task") == NULL);
	ASSERT(adainfer_value_get(&p.value, "prompt") == NULL);
	oai_params_deinit(&p);
	oai_req_deinit(&r);
}

/* Each bad body: its status and the field named. */
static void
test_req_errors(void)
{
	static const struct {
		enum oai_kind kind;
		const char *body;
		int status;
		const char *param;
	} cases[] = {
	    {OAI_COMPLETIONS, "{bad", 400, ""},
	    {OAI_COMPLETIONS, "[1]", 400, ""},
	    {OAI_COMPLETIONS, "{\"prompt\":\"x\"}", 400, "model"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\"}", 400, "prompt"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"model\":\"n\",\"prompt\":\"x\"}", 400, ""},
	    {OAI_COMPLETIONS, "{\"model\":1,\"prompt\":\"x\"}", 400, "model"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,-2]}", 400, "prompt"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":0}", 400,
	     "max_tokens"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"max_tokens\":1.5}", 400,
	     "max_tokens"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":2.5}", 400,
	     "temperature"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"top_p\":0}", 400, "top_p"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"seed\":-1}", 400, "seed"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":\"\"}", 400, "stop"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[1]}", 400, "stop"},
	    {OAI_COMPLETIONS,
	     "{\"model\":\"m\",\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\","
	     "\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
	     400, "stop"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"stream\":1}", 400, "stream"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"n\":2}", 400, "n"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}", 400, "best_of"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":2}", 400, "logprobs"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", 400, "echo"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"frequency_penalty\":0.5}", 400,
	     "frequency_penalty"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"bogus\":1}", 400, "bogus"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"messages\":[]}", 400,
	     "messages"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"adainfer\":{\"x\":1}}", 400,
	     "adainfer"},
	    {OAI_COMPLETIONS,
	     "{\"model\":\"m\",\"prompt\":\"x\",\"adainfer\":{\"template\":\"chatml\"}}", 400,
	     "adainfer"},
	    {OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\",\"adainfer\":{\"profile\":1}}",
	     400, "adainfer.profile"},
	    {OAI_CHAT, "{\"model\":\"m\"}", 400, "messages"},
	    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", 400, "messages"},
	    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
	     400, "messages[0].role"},
	    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400,
	     "messages[0].content"},
	    {OAI_CHAT,
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
	     "\"image_url\"}]}]}",
	     400, "messages[0].content"},
	    {OAI_CHAT,
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":"
	     "[]}]}",
	     400, "messages[0]"},
	    {OAI_CHAT, "{\"model\":\"m\",\"messages\":[\"hi\"]}", 400, "messages[0]"},
	    {OAI_CHAT, "{\"model\":\"m\",\"prompt\":\"x\",\"messages\":[]}", 400, "prompt"},
	    {OAI_CHAT,
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":"
	     "[{}]}",
	     400, "tools"},
	    {OAI_CHAT,
	     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
	     "\"response_format\":{\"type\":\"json_object\"}}",
	     400, "response_format"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct oai_req r;
		struct oai_err e;
		int rc = parse(cases[i].kind, cases[i].body, &r, &e);
		if (rc != -1 || e.status != cases[i].status || strcmp(e.param, cases[i].param) != 0)
			TEST_FAIL_("case %zu %s: rc %d status %d param '%s' (%s)", i, cases[i].body,
				   rc, e.status, e.param, e.message);
		oai_req_deinit(&r);
	}
}

/* Mutated and cut bodies: always a clean 0 or a 400, never a crash (ASan builds check). */
static void
test_req_mutations(void)
{
	static const char *const seeds[] = {
	    "{\"model\":\"m:t\",\"prompt\":[\"hi\"],\"max_tokens\":3,\"stop\":[\"a\",\"b\"],"
	    "\"stream\":true,\"adainfer\":{\"profile\":{\"classifier\":\"gap\",\"x\":[1,2.5,"
	    "{\"y\":null}]}}}",
	    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
	    "\"text\",\"text\":\"a\"}]},{\"role\":\"assistant\",\"content\":null}],"
	    "\"temperature\":0.5,\"seed\":1,\"adainfer\":{\"template\":\"chatml\"}}",
	    "{\"model\":\"m\",\"prompt\":[[1,2,3]],\"top_p\":1,\"n\":1,\"logprobs\":null}",
	};
	static const char alphabet[] = "{}[]\",:0123456789.-eE tfnrul\\\x80\xff";
	char buf[512];

	for (int iter = 0; iter < 30000; iter++) {
		const char *seed = seeds[rng_u64() % 3];
		size_t n = strlen(seed);
		memcpy(buf, seed, n);
		for (int k = 1 + (int)(rng_u64() % 4); k > 0 && n > 1; k--) {
			size_t at = rng_u64() % n;
			switch (rng_u64() % 3) {
			case 0: /* replace a byte */
				buf[at] = alphabet[rng_u64() % (sizeof(alphabet) - 1)];
				break;
			case 1: /* delete a byte */
				memmove(buf + at, buf + at + 1, n - at - 1);
				n--;
				break;
			default: /* cut */
				n = at + 1;
			}
		}
		enum oai_kind kind = iter % 2 ? OAI_CHAT : OAI_COMPLETIONS;
		struct oai_req r;
		struct oai_err e = {0};
		int rc = oai_req_parse(&r, kind, buf, n, &e);
		if (rc == 0) {
			struct oai_params p = {0};
			char task[64];
			if (oai_req_task(&r, "m", task, sizeof(task), &e) == 0 &&
			    oai_req_params(&r, task, 16, &p, &e) == 0)
				ASSERT(p.value.type == ADAINFER_MAP);
			oai_params_deinit(&p);
		} else {
			ASSERT_EQ(rc, -1);
			ASSERT_EQ(e.status, 400);
			ASSERT(e.message[0] != '\0');
		}
		oai_req_deinit(&r);
	}
}

/* ---- responses and errors ---------------------------------------------------------- */

static void
test_resp(void)
{
	struct adainfer_value toks[] = {adainfer_int(5), adainfer_int(6)};
	struct adainfer_value exits[] = {adainfer_int(3), adainfer_int(12)};
	struct adainfer_member mem[] = {
	    {"text", adainfer_strn("ab\xff", 3)},
	    {"tokens", adainfer_array(toks, 2)},
	    {"exit_layers", adainfer_array(exits, 2)},
	    {"n_prompt", adainfer_int(10)},
	    {"n_layers", adainfer_int(12)},
	    {"layers_run", adainfer_int(15)},
	    {"layers_skipped", adainfer_int(9)},
	    {"stop_reason", adainfer_str("context")},
	    {"task", adainfer_str("sst2")},
	};
	struct adainfer_value res = adainfer_map(mem, sizeof(mem) / sizeof(mem[0]));
	struct oai_meta m;
	json_t *j, *c;

	oai_meta_init(&m, OAI_CHAT, "m:sst2");
	ASSERT(strncmp(m.id, "chatcmpl-", 9) == 0 && strlen(m.id) == 9 + 24);
	ASSERT_STREQ(oai_finish_reason(&res), "length");
	j = oai_resp_final(&m, &res, "ab", 2);
	ASSERT(j != NULL);
	ASSERT_STREQ(json_string_value(json_object_get(j, "object")), "chat.completion");
	c = json_array_get(json_object_get(j, "choices"), 0);
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(c, "message"), "content")),
		     "ab");
	ASSERT_STREQ(json_string_value(json_object_get(c, "finish_reason")), "length");
	json_t *u = json_object_get(j, "usage");
	ASSERT_EQ(json_integer_value(json_object_get(u, "prompt_tokens")), 10);
	ASSERT_EQ(json_integer_value(json_object_get(u, "completion_tokens")), 2);
	ASSERT_EQ(json_integer_value(json_object_get(u, "total_tokens")), 12);
	json_t *x = json_object_get(j, "adainfer");
	ASSERT_EQ(json_integer_value(json_object_get(x, "layers_run")), 15);
	ASSERT_NEAR(json_real_value(json_object_get(x, "pruning")), 9.0 / 24.0, 1e-12);
	ASSERT_EQ(json_array_size(json_object_get(x, "exit_layers")), 2);
	ASSERT_STREQ(json_string_value(json_object_get(x, "task")), "sst2");
	json_decref(j);

	j = oai_value_json(&mem[0].value); /* a bin text becomes valid UTF-8 */
	ASSERT_STREQ(json_string_value(j), "ab\xef\xbf\xbd");
	json_decref(j);

	j = oai_resp_chunk(&m, "hi", 2, true, NULL);
	c = json_array_get(json_object_get(j, "choices"), 0);
	ASSERT_STREQ(json_string_value(json_object_get(j, "object")), "chat.completion.chunk");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(c, "delta"), "role")),
		     "assistant");
	ASSERT_STREQ(json_string_value(json_object_get(json_object_get(c, "delta"), "content")),
		     "hi");
	ASSERT(json_is_null(json_object_get(c, "finish_reason")));
	json_decref(j);

	oai_meta_init(&m, OAI_COMPLETIONS, "m");
	j = oai_resp_chunk(&m, NULL, 0, false, "stop");
	c = json_array_get(json_object_get(j, "choices"), 0);
	ASSERT_STREQ(json_string_value(json_object_get(j, "object")), "text_completion");
	ASSERT_STREQ(json_string_value(json_object_get(c, "text")), "");
	ASSERT_STREQ(json_string_value(json_object_get(c, "finish_reason")), "stop");
	json_decref(j);

	struct adainfer_value tasks[] = {adainfer_str("sst2"), adainfer_str("trec")};
	struct adainfer_member model[] = {{"name", adainfer_str("tiny")}};
	struct adainfer_member info[] = {{"model", adainfer_map(model, 1)},
					 {"tasks", adainfer_array(tasks, 2)}};
	struct adainfer_value iv = adainfer_map(info, 2);
	j = oai_models(&iv);
	ASSERT_EQ(json_array_size(json_object_get(j, "data")), 3);
	ASSERT_STREQ(
	    json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 2), "id")),
	    "tiny:trec");
	json_decref(j);
}

static void
test_errors(void)
{
	static const struct {
		int rc, serr, status;
	} map[] = {
	    {ADAINFER_ESERVER, ADAINFER_SERR_BAD_REQUEST, 400},
	    {ADAINFER_ESERVER, ADAINFER_SERR_UNKNOWN_TASK, 404},
	    {ADAINFER_ESERVER, ADAINFER_SERR_TOO_LARGE, 400},
	    {ADAINFER_ESERVER, ADAINFER_SERR_CONTEXT, 400},
	    {ADAINFER_ESERVER, ADAINFER_SERR_BUSY, 503},
	    {ADAINFER_ESERVER, ADAINFER_SERR_TIMEOUT, 504},
	    {ADAINFER_ESERVER, ADAINFER_SERR_SHUTTING_DOWN, 503},
	    {ADAINFER_ESERVER, ADAINFER_SERR_INTERNAL, 500},
	    {ADAINFER_ESERVER, 99, 500},
	    {-ENOENT, 0, 503},
	    {-ECONNREFUSED, 0, 503},
	    {-ECONNRESET, 0, 503},
	    {-ETIMEDOUT, 0, 504},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		struct oai_err e;
		ASSERT_EQ(oai_err_from_client(&e, map[i].rc, map[i].serr, "name", "msg"), -1);
		ASSERT_EQ(e.status, map[i].status);
	}
	struct oai_err e;
	oai_err_set(&e, 400, NULL, "x", "bad \xff byte");
	json_t *j = oai_err_json(&e), *o = json_object_get(j, "error");
	ASSERT(json_is_string(json_object_get(o, "message")));
	ASSERT_STREQ(json_string_value(json_object_get(o, "type")), "invalid_request_error");
	ASSERT(json_is_null(json_object_get(o, "param")));
	ASSERT_STREQ(json_string_value(json_object_get(o, "code")), "x");
	json_decref(j);
}

TEST_MAIN(TEST_CASE(test_utf8_examples), TEST_CASE(test_utf8_complete), TEST_CASE(test_utf8_random),
	  TEST_CASE(test_stop_reference), TEST_CASE(test_stream_filter),
	  TEST_CASE(test_req_completions), TEST_CASE(test_req_chat), TEST_CASE(test_req_errors),
	  TEST_CASE(test_req_mutations), TEST_CASE(test_resp), TEST_CASE(test_errors))
