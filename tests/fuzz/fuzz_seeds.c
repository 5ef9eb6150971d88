/*
 * fuzz_seeds.c — writes the generated part of the fuzz seed corpora:
 *   corpus/gguf:  small generated llama models that bind (tests/util's
 *                 gguf_writer: F32, F16, Q8_0, tied output, GGUF v2), one
 *                 file per broken-file class of gguf_writer.h, and the
 *                 header + metadata (+ tensor infos, or alone with
 *                 n_tensors = 0) of real models in the tree;
 *   corpus/proto: MessagePack-RPC streams like the tests/daemon scripts send, each
 *                 behind fuzz_proto.c's 2-byte header + chunk sizes.
 * usage: fuzz_seeds CORPUS_DIR  (run from anywhere; fixtures are found
 * through $ADAINFER_SOURCE_ROOT or the build directory's parent). Not a
 * test and not run by the build: its output is committed.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <msgpack.h>

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/types.h"
#include "fuzz_common.h"
#include "proto/proto.h"
#include "util/gguf_writer.h"

static const char *out_dir;

static void
put(const char *sub, const char *name, const void *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, sub);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, sub, name);
	if ((f = fopen(path, "wb")) == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
	printf("%s (%zu bytes)\n", path, n);
}

/* ---- GGUF ------------------------------------------------------------------- */

static void
model_seed(const char *name, void (*tweak)(struct gguf_writer_model_opts *))
{
	struct gguf_writer_model_opts o;
	struct gw w = {0};

	gguf_writer_model_defaults(&o);
	o.n_embd = 8;
	o.n_layers = 1;
	o.n_heads = 2;
	o.n_kv_heads = 1;
	o.n_ff = 8;
	o.n_ctx = 16;
	o.tied_output = true;
	if (tweak != NULL)
		tweak(&o);
	gguf_writer_model_mem(&w, &o);
	put("gguf", name, w.buf, w.len);
	gw_free(&w);
}

static void
t_untied(struct gguf_writer_model_opts *o)
{
	o->tied_output = false;
	o->n_layers = 2;
}

static void
t_f16(struct gguf_writer_model_opts *o)
{
	o->weight_type = GGML_TYPE_F16;
}

static void
t_q8(struct gguf_writer_model_opts *o)
{
	o->n_embd = 32; /* a Q8_0 row is blocks of 32 */
	o->n_heads = 4;
	o->n_kv_heads = 2;
	o->n_ff = 32;
	o->weight_type = GGML_TYPE_Q8_0;
}

static void
t_v2(struct gguf_writer_model_opts *o)
{
	o->version = 2;
	o->name = NULL;
}

/*
 * The file up to its data section (header, metadata, tensor infos: gguf_parse
 * refuses it, the tensors' data being past the end), or with meta_only the
 * header and metadata alone with n_tensors = 0, which parses and gets the
 * real vocabulary to tokenizer_init.
 */
static void
header_seed(const char *rel, const char *name, bool meta_only)
{
	char path[4096];
	struct mapping m;
	struct gguf g;
	struct diag d = {{0}};
	uint8_t *buf;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", fuzz_source_root(), rel);
	if (mapping_open(&m, path, &d) < 0 || gguf_parse(&g, m.base, m.size, path, &d) < 0) {
		fprintf(stderr, "%s\n", d.msg);
		exit(1);
	}
	n = meta_only && g.n_tensors > 0 ? g.tensors[0].info_offset : g.data_offset;
	if ((buf = malloc(n)) == NULL)
		exit(1);
	memcpy(buf, m.base, n);
	if (meta_only)
		memset(buf + 8, 0, 8); /* u64 n_tensors */
	put("gguf", name, buf, n);
	free(buf);
	gguf_deinit(&g);
	mapping_close(&m);
}

/*
 * A vocabulary-only byte-level BPE file: the 256 GPT-2 byte symbols, a few
 * merges up to "Ġthe", an <|endoftext|> control token, the named
 * pre-tokenizer; small enough for the gguf corpus, so the fuzzer reaches
 * the merge table, the pre-tokenizer regexes and BPE encode/decode.
 */
static void
bpe_vocab_seed(const char *name, const char *pre)
{
	static const char *const extra[] = {"\xc4\xa0t", "he", "\xc4\xa0the", "<|endoftext|>"};
	static const char *const merges[] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he"};
	const char *tok[256 + ARRAY_LEN(extra)];
	char sym[256][3];
	int32_t types[256 + ARRAY_LEN(extra)];
	struct gw w = {0};
	unsigned next = 256;

	for (int b = 0; b < 256; b++) { /* bytes_to_unicode, as UTF-8 */
		bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
		unsigned c = keep ? (unsigned)b : next++;

		if (c < 0x80) {
			sym[b][0] = (char)c, sym[b][1] = 0;
		} else {
			sym[b][0] = (char)(0xc0 | c >> 6), sym[b][1] = (char)(0x80 | (c & 0x3f));
			sym[b][2] = 0;
		}
		tok[b] = sym[b];
		types[b] = 1;
	}
	for (size_t i = 0; i < ARRAY_LEN(extra); i++) {
		tok[256 + i] = extra[i];
		types[256 + i] = i + 1 == ARRAY_LEN(extra) ? 3 : 1;
	}
	gw_bytes(&w, "GGUF", 4);
	gw_u32(&w, 3);
	gw_u64(&w, 0);
	gw_u64(&w, 6);
	gw_kv_str(&w, "tokenizer.ggml.model", "gpt2");
	gw_kv_str(&w, "tokenizer.ggml.pre", pre);
	gw_kv_arr_str(&w, "tokenizer.ggml.tokens", tok, ARRAY_LEN(tok));
	gw_kv_arr_i32(&w, "tokenizer.ggml.token_type", types, ARRAY_LEN(types));
	gw_kv_arr_str(&w, "tokenizer.ggml.merges", merges, ARRAY_LEN(merges));
	gw_kv_u32(&w, "tokenizer.ggml.eos_token_id", 259);
	gw_pad(&w, 32);
	put("gguf", name, w.buf, w.len);
	gw_free(&w);
}

static void
gguf_seeds(void)
{
	model_seed("model-tied-f32.gguf", NULL);
	model_seed("model-untied-2layers.gguf", t_untied);
	model_seed("model-f16.gguf", t_f16);
	model_seed("model-q8_0.gguf", t_q8);
	model_seed("model-v2-noname.gguf", t_v2);
	for (int k = 0; k < GW_BROKEN_COUNT; k++) {
		struct gw w = {0};
		char name[64];

		gw_broken_build(&w, (enum gw_broken)k);
		snprintf(name, sizeof(name), "broken-%s.gguf", gw_broken_name((enum gw_broken)k));
		put("gguf", name, w.buf, w.len);
		gw_free(&w);
	}
	header_seed("tests/fixtures/models/stories260K.gguf", "header-stories260K.gguf", false);
	header_seed("tests/fixtures/models/stories260K.gguf", "meta-stories260K.gguf", true);
	header_seed("tests/fixtures/models/rq-q4_k_m.gguf", "header-rq-q4_k_m.gguf", false);
	header_seed("models/tiny-tasks.gguf", "meta-tiny-tasks.gguf", true);
	bpe_vocab_seed("vocab-bpe-llama3.gguf", "llama-bpe");
	bpe_vocab_seed("vocab-bpe-deepseek-llm.gguf", "deepseek-llm");
}

/* ---- MessagePack-RPC ---------------------------------------------------------- */

struct stream {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void
s_init(struct stream *s, uint8_t limit, const uint8_t *chunks, uint8_t n_chunks)
{
	msgpack_sbuffer_init(&s->sb);
	msgpack_packer_init(&s->pk, &s->sb, msgpack_sbuffer_write);
	msgpack_sbuffer_write(&s->sb, (const char *)&limit, 1);
	msgpack_sbuffer_write(&s->sb, (const char *)&n_chunks, 1);
	msgpack_sbuffer_write(&s->sb, (const char *)chunks, n_chunks);
}

static void
s_str(struct stream *s, const char *v)
{
	msgpack_pack_str_with_body(&s->pk, v, strlen(v));
}

static void
s_req(struct stream *s, uint32_t id, const char *method, int n_params)
{
	msgpack_pack_array(&s->pk, 4);
	msgpack_pack_uint8(&s->pk, 0);
	msgpack_pack_uint32(&s->pk, id);
	s_str(s, method);
	msgpack_pack_array(&s->pk, n_params > 0 ? 1 : 0);
	if (n_params > 0)
		msgpack_pack_map(&s->pk, (size_t)n_params);
}

static void
s_done(struct stream *s, const char *name)
{
	put("proto", name, s->sb.data, s->sb.size);
	msgpack_sbuffer_destroy(&s->sb);
}

static void
proto_seeds(void)
{
	static const uint8_t small[] = {3, 0xf0, 0, 17};
	static const char prompt[] = "Review: a gentle, funny and moving film\nSentiment:";
	struct stream s;

	s_init(&s, 0, NULL, 0);
	s_req(&s, 1, "ping", 0);
	s_req(&s, 2, "info", 0);
	s_req(&s, 3, "stats", 0);
	s_done(&s, "ping-info-stats.msgpack");

	s_init(&s, 0, small, sizeof(small));
	s_req(&s, 7, "tokenize", 2);
	s_str(&s, "text");
	s_str(&s, prompt);
	s_str(&s, "add_bos");
	msgpack_pack_false(&s.pk);
	s_req(&s, 8, "tokenize", 1);
	s_str(&s, "text");
	msgpack_pack_bin_with_body(&s.pk, "bytes \xfe\xff", 8);
	s_req(&s, 9, "detokenize", 1);
	s_str(&s, "tokens");
	msgpack_pack_array(&s.pk, 4);
	msgpack_pack_int(&s.pk, 1);
	msgpack_pack_int(&s.pk, 306);
	msgpack_pack_int(&s.pk, 13);
	msgpack_pack_int(&s.pk, 1000000000);
	s_done(&s, "tokenize-detokenize.msgpack");

	s_init(&s, 16, small, 2);
	s_req(&s, 11, "complete", 13);
	s_str(&s, "prompt");
	s_str(&s, prompt);
	s_str(&s, "task");
	s_str(&s, "sst2");
	s_str(&s, "max_tokens");
	msgpack_pack_int(&s.pk, 3);
	s_str(&s, "stop");
	msgpack_pack_array(&s.pk, 2);
	s_str(&s, "\n");
	msgpack_pack_bin_with_body(&s.pk, "\xff", 1);
	s_str(&s, "temperature");
	msgpack_pack_double(&s.pk, 0.7);
	s_str(&s, "top_p");
	msgpack_pack_float(&s.pk, 0.9f);
	s_str(&s, "seed");
	msgpack_pack_uint64(&s.pk, UINT64_MAX);
	s_str(&s, "stream");
	msgpack_pack_true(&s.pk);
	s_str(&s, "full_depth");
	msgpack_pack_false(&s.pk);
	s_str(&s, "trace");
	msgpack_pack_true(&s.pk);
	s_str(&s, "eos");
	msgpack_pack_false(&s.pk);
	s_str(&s, "deadline_ms");
	msgpack_pack_int(&s.pk, 5000);
	s_str(&s, "profile");
	msgpack_pack_map(&s.pk, 5);
	s_str(&s, "classifier");
	s_str(&s, "svm");
	s_str(&s, "threshold");
	msgpack_pack_double(&s.pk, 1.5);
	s_str(&s, "min_layer");
	msgpack_pack_int(&s.pk, 2);
	s_str(&s, "features");
	msgpack_pack_array(&s.pk, 2);
	s_str(&s, "gap");
	s_str(&s, "top_prob");
	s_str(&s, "svm");
	msgpack_pack_map(&s.pk, 3);
	s_str(&s, "w_gap");
	msgpack_pack_double(&s.pk, 9.1);
	s_str(&s, "w_top_prob");
	msgpack_pack_double(&s.pk, 0.3);
	s_str(&s, "bias");
	msgpack_pack_double(&s.pk, -4.4);
	s_req(&s, 12, "trace", 2);
	s_str(&s, "tokens");
	msgpack_pack_array(&s.pk, 2);
	msgpack_pack_int(&s.pk, 1);
	msgpack_pack_int(&s.pk, 424);
	s_str(&s, "top_k");
	msgpack_pack_int(&s.pk, 5);
	s_req(&s, 13, "cancel", 1);
	s_str(&s, "msgid");
	msgpack_pack_int(&s.pk, 11);
	s_done(&s, "complete-trace-cancel.msgpack");

	/* hostile shapes from test_abuse.py, each its own message */
	s_init(&s, 0, small + 2, 1);
	s_req(&s, 20, "tokenize", 2);
	s_str(&s, "text");
	msgpack_pack_int(&s.pk, 42);
	s_str(&s, "bogus");
	msgpack_pack_int(&s.pk, 1);
	s_req(&s, 21, "complete", 2);
	s_str(&s, "prompt");
	s_str(&s, "x");
	s_str(&s, "temperature");
	msgpack_pack_double(&s.pk, NAN);
	msgpack_pack_array(&s.pk, 4); /* method not a string */
	msgpack_pack_int(&s.pk, 0);
	msgpack_pack_int(&s.pk, 77);
	msgpack_pack_int(&s.pk, 12);
	msgpack_pack_array(&s.pk, 0);
	msgpack_pack_array(&s.pk, 4); /* params not a list */
	msgpack_pack_int(&s.pk, 0);
	msgpack_pack_int(&s.pk, 78);
	s_str(&s, "ping");
	s_str(&s, "notalist");
	msgpack_pack_map(&s.pk, 1); /* not an array */
	s_str(&s, "hello");
	s_str(&s, "world");
	s_done(&s, "abuse-shapes.msgpack");

	/* a response, a notification and an error notification, as the client reads them */
	s_init(&s, 0, NULL, 0);
	msgpack_pack_array(&s.pk, 4);
	msgpack_pack_int(&s.pk, 1);
	msgpack_pack_int(&s.pk, 5);
	msgpack_pack_map(&s.pk, 3);
	s_str(&s, "code");
	msgpack_pack_int(&s.pk, 6);
	s_str(&s, "name");
	s_str(&s, "busy");
	s_str(&s, "message");
	msgpack_pack_bin_with_body(&s.pk, "queue \xff full", 12);
	msgpack_pack_nil(&s.pk);
	msgpack_pack_array(&s.pk, 3);
	msgpack_pack_int(&s.pk, 2);
	s_str(&s, "token");
	msgpack_pack_array(&s.pk, 1);
	msgpack_pack_map(&s.pk, 3);
	s_str(&s, "msgid");
	msgpack_pack_int(&s.pk, 11);
	s_str(&s, "index");
	msgpack_pack_int(&s.pk, 0);
	s_str(&s, "text");
	s_str(&s, " positive");
	msgpack_pack_array(&s.pk, 3);
	msgpack_pack_int(&s.pk, 2);
	s_str(&s, "error");
	msgpack_pack_array(&s.pk, 1);
	msgpack_pack_map(&s.pk, 1);
	s_str(&s, "code");
	msgpack_pack_int(&s.pk, 4);
	s_done(&s, "response-notifications.msgpack");

	/* nesting at the depth limit, then one deeper; a truncated str32 header */
	s_init(&s, 0, NULL, 0);
	for (int i = 0; i < PROTO_MAX_DEPTH; i++)
		msgpack_pack_array(&s.pk, 1);
	msgpack_pack_nil(&s.pk);
	for (int i = 0; i < PROTO_MAX_DEPTH + 1; i++)
		msgpack_pack_array(&s.pk, 1);
	msgpack_pack_nil(&s.pk);
	s_done(&s, "deep.msgpack");
	s_init(&s, 0, NULL, 0);
	s_req(&s, 1, "tokenize", 1);
	s_str(&s, "text");
	msgpack_sbuffer_write(&s.sb, "\xdb\x7f\xff\xff\xff", 5);
	s_done(&s, "declared-too-large.msgpack");
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	mkdir(out_dir, 0755);
	gguf_seeds();
	proto_seeds();
	return 0;
}
