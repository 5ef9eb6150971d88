/*
 * tokenizer_pre.c — the pre-tokenizers of byte-level BPE vocabularies: the
 * text of one fragment cut into words by the regular expressions that
 * llama.cpp's llm_tokenizer_bpe chooses for tokenizer.ggml.pre, applied one
 * after the other, each to every piece the previous ones left (unmatched
 * stretches stay pieces of their own), as unicode_regex_split does.
 *
 * The expressions run on PCRE2 (UTF, UCP) rather than on a regex engine of
 * our own: they need Unicode general categories (\p{L}, \p{N}, \p{P}), which
 * PCRE2 has from the Unicode tables. What llama.cpp does differently from
 * the Hugging Face (Python/Rust) originals is reproduced, not the originals:
 *
 *  - Text is decoded as unicode_cpts_from_utf8 does: a malformed sequence
 *    becomes U+FFFD and costs one byte, overlong forms are accepted, and the
 *    words handed on are re-encoded from the code points (so the U+FFFD bytes
 *    are what gets tokenized). A lead byte F5..F7 (a code point past U+10FFFF,
 *    on which llama.cpp throws) is also malformed here.
 *  - \s is llama.cpp's whitespace, not PCRE2's or Python's: its custom
 *    splitters and its std::regex fallback both see the ASCII six
 *    (\t \n \v \f \r and space) plus every other White_Space code point
 *    replaced by U+000B. We do the same replacement in the subject and write
 *    \s as [\t-\r ] (so 0x1C..0x1F are not whitespace, unlike Python, and a
 *    literal class holding U+3000, as deepseek-llm's does, does not match it).
 *  - Its collapsed-category trick (one byte per non-ASCII code point, \p{X}
 *    rewritten to a byte class) and its hand-written gpt2 / llama3 splitters
 *    match the plain expressions on those categories; we use the expressions.
 *  - llama3 / qwen2's (?i:'s|'t|...) is spelled (?:'[sS]|'[tT]|...) as
 *    llama.cpp adapted it: its custom splitter lowercases with its own table,
 *    which maps nothing else to these letters, while PCRE2's caseless 's'
 *    would also take U+017F (long s).
 *  - $ matches only at the very end (ECMAScript), hence PCRE2_DOLLAR_ENDONLY,
 *    and each piece is matched as a subject of its own, so lookaheads and $
 *    end at the piece's end as they do in llama.cpp's ranges.
 *
 * The code points' categories are PCRE2's Unicode tables (10.42: Unicode
 * 14); llama.cpp generated its own from a later UnicodeData.txt, so code
 * points assigned since can be classed differently. Compiled expressions are
 * kept per vocabulary (pre_new) and may be shared by threads; each split
 * makes its own match data. Never trusts the text to be UTF-8, never loops
 * on an empty match.
 */
#include "tokenizer_impl.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's whitespace, as it ends up in a subject (see the header): for use inside [] */
#define WS     "\\t-\\r "
#define NOT_WS "[^" WS "]"

#define CONTRACTIONS_CASED   "'s|'t|'re|'ve|'m|'ll|'d"
#define CONTRACTIONS_ANYCASE "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
/* GPT-2's expression (llama.cpp's unicode_regex_split_custom_gpt2) */
#define RE_GPT2                                                                                    \
	CONTRACTIONS_CASED "| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+|[" WS "]+(?!" NOT_WS ")"
/* Llama 3's (unicode_regex_split_custom_llama3); digits in groups of up to DIGITS */
#define RE_LLAMA3(DIGITS)                                                                          \
	CONTRACTIONS_ANYCASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}" DIGITS "| ?[^" WS             \
			     "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?!" NOT_WS      \
			     ")|[" WS "]+"
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

/* clang-format off */
/* deepseek-llm's letters (from its tokenizer.json, as llama.cpp has them) */
#define RE_DEEPSEEK_LETTERS                                                                        \
	"[" WS "]?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"     \
	"\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"       \
	"\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"\
	"\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}" \
	"\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"               \
	"\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}"               \
	"\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"       \
	"\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}"      \
	"\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"               \
	"\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}"       \
	"\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"                 \
	"\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}"       \
	"\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"                \
	"\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}"               \
	"\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"               \
	"\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}"         \
	"\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"
/* clang-format on */

enum pre_kind {
	PRE_DEFAULT,
	PRE_LLAMA3,
	PRE_DEEPSEEK_LLM,
	PRE_DEEPSEEK_CODER,
	PRE_FALCON,
	PRE_STARCODER, /* also refact, smollm, command-r, ... */
	PRE_GPT2,      /* also mpt, olmo, ... */
	PRE_QWEN2,
};

#define PRE_MAX_RE 6

static const char *const pre_regexes[][PRE_MAX_RE] = {
    [PRE_DEFAULT] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
    [PRE_LLAMA3] = {RE_LLAMA3("{1,3}")},
    [PRE_DEEPSEEK_LLM] = {"[\r\n]", RE_DEEPSEEK_LETTERS,
			  "[" WS
			  "]?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}"
			  "\\x{3000}-\\x{3002}]+",
			  "[" WS "]+$", RE_CJK, "\\p{N}+"},
    [PRE_DEEPSEEK_CODER] = {"[\r\n]", "[" WS "]?\\p{L}+", "[" WS "]?\\p{P}+", RE_CJK, "\\p{N}"},
    [PRE_FALCON] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
    [PRE_STARCODER] = {"\\p{N}", RE_GPT2},
    [PRE_GPT2] = {RE_GPT2},
    [PRE_QWEN2] = {RE_LLAMA3("")},
};

/*
 * tokenizer.ggml.pre names as llama_vocab::impl::load maps them (those of
 * its types we implement), with its per-name settings.
 */
static const struct pre_name {
	const char *name;
	enum pre_kind kind;
	unsigned flags;
} pre_names[] = {
    {"default", PRE_DEFAULT, PRE_CLEAN_SPACES},
    {"llama3", PRE_LLAMA3, PRE_CLEAN_SPACES | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-v3", PRE_LLAMA3, PRE_CLEAN_SPACES | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"llama-bpe", PRE_LLAMA3, PRE_CLEAN_SPACES | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"falcon3", PRE_LLAMA3, PRE_CLEAN_SPACES | PRE_IGNORE_MERGES | PRE_ADD_BOS},
    {"dbrx", PRE_LLAMA3, PRE_CLEAN_SPACES},
    {"smaug-bpe", PRE_LLAMA3, PRE_CLEAN_SPACES},
    {"chatglm-bpe", PRE_LLAMA3, PRE_CLEAN_SPACES | PRE_NO_BOS},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, 0},
    {"deepseek-coder", PRE_DEEPSEEK_CODER, 0},
    {"falcon", PRE_FALCON, PRE_CLEAN_SPACES},
    {"mpt", PRE_GPT2, PRE_CLEAN_SPACES},
    {"olmo", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jais", PRE_GPT2, PRE_CLEAN_SPACES},
    {"gpt-2", PRE_GPT2, PRE_CLEAN_SPACES},
    {"phi-2", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-es", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-de", PRE_GPT2, PRE_CLEAN_SPACES},
    {"gigachat", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-v1-en", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-v2-es", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-v2-de", PRE_GPT2, PRE_CLEAN_SPACES},
    {"jina-v2-code", PRE_GPT2, PRE_CLEAN_SPACES},
    {"roberta-bpe", PRE_GPT2, PRE_CLEAN_SPACES},
    {"starcoder", PRE_STARCODER, PRE_CLEAN_SPACES},
    {"refact", PRE_STARCODER, PRE_CLEAN_SPACES},
    {"command-r", PRE_STARCODER, 0},
    {"smollm", PRE_STARCODER, 0},
    {"codeshell", PRE_STARCODER, PRE_CLEAN_SPACES},
    {"exaone", PRE_STARCODER, PRE_CLEAN_SPACES},
    {"minerva-7b", PRE_STARCODER, PRE_CLEAN_SPACES},
    {"qwen2", PRE_QWEN2, 0},
    {"deepseek-r1-qwen", PRE_QWEN2, 0},
    {"megrez", PRE_QWEN2, PRE_CLEAN_SPACES},
    {"stablelm2", PRE_QWEN2, PRE_CLEAN_SPACES},
};

struct pre {
	pcre2_code *re[PRE_MAX_RE];
	size_t n_re;
};

/* White_Space code points above ASCII (llama.cpp's unicode_set_whitespace) */
static bool
is_wide_space(uint32_t c)
{
	return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int
pre_lookup(const char *name, unsigned *flags, struct diag *d, const char *path)
{
	char known[1024];
	size_t k = 0;

	if (name[0] == '\0') /* llama.cpp: a missing pre-tokenizer means 'default' */
		name = "default";
	for (size_t i = 0; i < ARRAY_LEN(pre_names); i++) {
		if (strcmp(pre_names[i].name, name) == 0) {
			*flags = pre_names[i].flags;
			return (int)i;
		}
	}
	known[0] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(pre_names) && k < sizeof(known); i++)
		k += (size_t)snprintf(known + k, sizeof(known) - k, "%s%s", i ? ", " : "",
				      pre_names[i].name);
	return diag_set(d, -ENOTSUP, "%s: pre-tokenizer '%s' is not supported (known: %s)", path,
			name, known);
}

void
pre_free(struct pre *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_re; i++)
		pcre2_code_free(p->re[i]);
	free(p);
}

int
pre_new(struct pre **out, int which, struct diag *d, const char *path)
{
	const char *const *src = pre_regexes[pre_names[which].kind];
	struct pre *p;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return diag_set(d, -ENOMEM, "%s: out of memory", path);
	for (; p->n_re < PRE_MAX_RE && src[p->n_re] != NULL; p->n_re++) {
		int err;
		PCRE2_SIZE at;
		pcre2_code *re =
		    pcre2_compile((PCRE2_SPTR)src[p->n_re], PCRE2_ZERO_TERMINATED,
				  PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &at, NULL);

		if (re == NULL) { /* our own expressions: a bug, but report, don't abort */
			PCRE2_UCHAR msg[128];
			size_t i = p->n_re;

			pcre2_get_error_message(err, msg, sizeof(msg));
			pre_free(p);
			return diag_set(d, -EINVAL, "%s: pre-tokenizer '%s': regex %zu: %s at %zu",
					path, pre_names[which].name, i, (const char *)msg,
					(size_t)at);
		}
		(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: interpreted if not */
		p->re[p->n_re] = re;
	}
	*out = p;
	return 0;
}

const char *
pre_name(int which)
{
	return pre_names[which].name;
}

/*
 * One code point at s[0..n) as unicode_cpt_from_utf8 reads it: the lead byte
 * says the length, continuation bytes must be 10xxxxxx, nothing else is
 * checked. Returns the length used, with *c = U+FFFD and 1 when malformed.
 */
static size_t
utf8_decode(const uint8_t *s, size_t n, uint32_t *c)
{
	uint8_t b = s[0];
	size_t len;

	*c = 0xFFFD;
	if (b < 0x80) {
		*c = b;
		return 1;
	}
	if (b < 0xC0 || b >= 0xF5) /* stray continuation; F5..FF: past U+10FFFF or invalid */
		return 1;
	len = b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
	if (len > n)
		return 1;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 1;
	if (len == 2)
		*c = (uint32_t)(b & 0x1F) << 6 | (s[1] & 0x3F);
	else if (len == 3)
		*c = (uint32_t)(b & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
	else
		*c = (uint32_t)(b & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
		     (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
	if (*c > 0x10FFFF) { /* F4 90.. : llama.cpp throws on re-encoding it */
		*c = 0xFFFD;
		return 1;
	}
	return len;
}

static size_t
utf8_encode(uint32_t c, uint8_t *o)
{
	if (c < 0x80) {
		o[0] = (uint8_t)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (uint8_t)(0xC0 | c >> 6);
		o[1] = (uint8_t)(0x80 | (c & 0x3F));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (uint8_t)(0xE0 | c >> 12);
		o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
		o[2] = (uint8_t)(0x80 | (c & 0x3F));
		return 3;
	}
	o[0] = (uint8_t)(0xF0 | c >> 18);
	o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
	o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
	o[3] = (uint8_t)(0x80 | (c & 0x3F));
	return 4;
}

/* Piece boundaries in code points: cuts[0] = 0 < cuts[1] < ... < cuts[n] = n_cpts. */
struct cuts {
	size_t *at;
	size_t n, cap;
};

static int
cuts_push(struct cuts *c, size_t at)
{
	if (c->n == c->cap)
		return -EOVERFLOW; /* sized for one cut per code point; cannot happen */
	c->at[c->n++] = at;
	return 0;
}

/*
 * The split state of one fragment: the code points, their UTF-8 for the
 * words (text) and for matching (subj: wide whitespace as U+000B, surrogates
 * as U+0080, both control-like to llama.cpp too), byte offsets per code
 * point and code point per byte offset.
 */
struct split {
	uint32_t *cp;
	size_t n;
	uint8_t *subj;
	size_t *off;     /* n + 1 byte offsets into subj */
	uint32_t *index; /* subj byte -> code point (at code point starts), n_subj + 1 */
	size_t n_subj;
};

static int
split_build(struct split *s, const char *text, size_t len)
{
	size_t cap, i = 0, k = 0;

	memset(s, 0, sizeof(*s));
	if (len > UINT32_MAX / 4 || size_mul(&cap, len, 4) < 0)
		return -EOVERFLOW;
	if ((s->cp = malloc(len * sizeof(*s->cp))) == NULL ||
	    (s->off = malloc((len + 1) * sizeof(*s->off))) == NULL ||
	    (s->subj = malloc(cap + 1)) == NULL ||
	    (s->index = malloc((cap + 1) * sizeof(*s->index))) == NULL)
		return -ENOMEM;
	while (i < len) {
		uint32_t c, m;

		i += utf8_decode((const uint8_t *)text + i, len - i, &c);
		m = c > 0x7F && is_wide_space(c) ? 0x0B : c;
		if (m >= 0xD800 && m <= 0xDFFF)
			m = 0x80;
		s->cp[s->n] = c;
		s->off[s->n] = k;
		s->index[k] = (uint32_t)s->n;
		k += utf8_encode(m, s->subj + k);
		s->n++;
	}
	s->off[s->n] = k;
	s->index[k] = (uint32_t)s->n;
	s->n_subj = k;
	return 0;
}

static void
split_free(struct split *s)
{
	free(s->cp);
	free(s->off);
	free(s->subj);
	free(s->index);
}

/* Splits every piece of in by re into out (matches and the stretches between them). */
static int
apply_regex(const struct split *s, const pcre2_code *re, pcre2_match_data *md,
	    const struct cuts *in, struct cuts *out)
{
	int rc;

	out->n = 0;
	if ((rc = cuts_push(out, 0)) < 0)
		return rc;
	for (size_t p = 0; p + 1 < in->n; p++) {
		size_t b0 = s->off[in->at[p]], b1 = s->off[in->at[p + 1]];
		PCRE2_SPTR piece = s->subj + b0;
		size_t plen = b1 - b0, pos = 0;

		while (pos < plen) {
			PCRE2_SIZE *ov;
			int m = pcre2_match(re, piece, plen, pos, PCRE2_NO_UTF_CHECK, md, NULL);

			if (m == PCRE2_ERROR_NOMATCH)
				break;
			if (m < 0)
				return -EPROTO; /* match limits: not reachable with these
						   expressions */
			ov = pcre2_get_ovector_pointer(md);
			if (ov[1] <= ov[0]) { /* empty match: try from the next code point */
				pos = ov[0] + 1;
				while (pos < plen && (piece[pos] & 0xC0) == 0x80)
					pos++;
				continue;
			}
			if (ov[0] > 0 && out->at[out->n - 1] != s->index[b0 + ov[0]] &&
			    (rc = cuts_push(out, s->index[b0 + ov[0]])) < 0)
				return rc;
			if ((rc = cuts_push(out, s->index[b0 + ov[1]])) < 0)
				return rc;
			pos = ov[1];
		}
		if (out->at[out->n - 1] != in->at[p + 1] &&
		    (rc = cuts_push(out, in->at[p + 1])) < 0)
			return rc;
	}
	return 0;
}

int
pre_split(const struct pre *p, const char *text, size_t len, pre_word_fn *fn, void *arg)
{
	struct split s;
	struct cuts a = {0}, b = {0}, *cur = &a, *nxt = &b;
	pcre2_match_data *md = NULL;
	uint8_t *word = NULL;
	int rc;

	if (len == 0)
		return 0;
	if ((rc = split_build(&s, text, len)) < 0)
		goto out;
	a.cap = b.cap = s.n + 1;
	if ((a.at = malloc(a.cap * sizeof(*a.at))) == NULL ||
	    (b.at = malloc(b.cap * sizeof(*b.at))) == NULL || (word = malloc(s.n * 4)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	a.at[0] = 0;
	a.at[1] = s.n;
	a.n = 2;
	for (size_t i = 0; i < p->n_re; i++) {
		struct cuts *t;

		if ((md = pcre2_match_data_create_from_pattern(p->re[i], NULL)) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		rc = apply_regex(&s, p->re[i], md, cur, nxt);
		pcre2_match_data_free(md);
		md = NULL;
		if (rc < 0)
			goto out;
		t = cur, cur = nxt, nxt = t;
	}
	for (size_t w = 0; w + 1 < cur->n; w++) {
		size_t k = 0;

		for (size_t c = cur->at[w]; c < cur->at[w + 1]; c++)
			k += utf8_encode(s.cp[c], word + k);
		if ((rc = fn(arg, (const char *)word, k)) < 0)
			goto out;
	}
out:
	free(word);
	free(a.at);
	free(b.at);
	split_free(&s);
	return rc;
}
