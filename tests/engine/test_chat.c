/*
 * test_chat.c — chat template recognition and rendering against llama.cpp's
 * own cases (tests/fixtures/chat/llamacpp-chat-template.json: the inputs and
 * expected outputs of its tests/test-chat-template.cpp at c392e509), plus
 * the template markers of the popular small models, names, unknown
 * templates and odd bytes; and phi-3's own GGUF template, recognised,
 * rendered and tokenized with parse_special into its control tokens.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/engine/chat.h"
#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/tokenizer.h"
#include "test.h"

#define MAX_MSGS 16

/* JSON messages into chat_msg views (borrowing from j). Returns the count or -1. */
static int
load_msgs(json_t *arr, struct chat_msg *out)
{
	size_t i;
	json_t *m;

	if (!json_is_array(arr) || json_array_size(arr) > MAX_MSGS)
		return -1;
	json_array_foreach(arr, i, m)
	{
		json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");

		if (!json_is_string(role) || !json_is_string(content))
			return -1;
		out[i] = (struct chat_msg){json_string_value(role), json_string_length(role),
					   json_string_value(content), json_string_length(content)};
	}
	return (int)i;
}

static json_t *
load_cases(void)
{
	json_error_t err;
	json_t *j = json_load_file(test_fixture("chat/llamacpp-chat-template.json"), 0, &err);

	if (j == NULL)
		fprintf(stderr, "llamacpp-chat-template.json:%d: %s\n", err.line, err.text);
	return j;
}

/* Each llama.cpp case: its template text is recognised as the expected family and renders
 * the conversation plus the generation prompt byte for byte as llama.cpp does. */
static void
test_llamacpp_cases(void)
{
	json_t *j = load_cases(), *c;
	struct chat_msg msgs[MAX_MSGS];
	int n, bad = 0, seen = 0;
	size_t i;

	ASSERT(j != NULL);
	n = load_msgs(json_object_get(j, "messages"), msgs);
	ASSERT(n == 6);
	json_array_foreach(json_object_get(j, "cases"), i, c)
	{
		json_t *tj = json_object_get(c, "template"), *ej = json_object_get(c, "expected");
		const char *want = json_string_value(json_object_get(c, "detected"));
		enum chat_tmpl t = chat_tmpl_detect(json_string_value(tj), json_string_length(tj));
		char *out = NULL;
		size_t len = 0;

		seen++;
		if (want == NULL || t != chat_tmpl_from_name(want, strlen(want))) {
			fprintf(stderr, "%s: detected %s, want %s\n",
				json_string_value(json_object_get(c, "name")), chat_tmpl_name(t),
				want ? want : "?");
			bad++;
			continue;
		}
		if (chat_render(t, msgs, (size_t)n, true, &out, &len) != 0 ||
		    len != json_string_length(ej) || memcmp(out, json_string_value(ej), len) != 0) {
			fprintf(stderr, "%s (%s):\n  got  [%s]\n  want [%s]\n",
				json_string_value(json_object_get(c, "name")), want,
				out ? out : "(error)", json_string_value(ej));
			bad++;
		}
		free(out);
	}
	json_decref(j);
	ASSERT_EQ(seen, 30);
	ASSERT_EQ(bad, 0);
}

/* llama.cpp's fmt_sys cases: a template name (or "mistral", recognised as llama2), the system
 * message alone, no generation prompt. */
static void
test_system_only(void)
{
	json_t *j = load_cases(), *c;
	json_t *so = json_object_get(j, "system_only");
	struct chat_msg msg;
	int bad = 0;
	size_t i;

	ASSERT(j != NULL);
	{
		json_t *arr = json_array();

		json_array_append(arr, json_object_get(so, "message"));
		ASSERT_EQ(load_msgs(arr, &msg), 1);
		json_decref(arr); /* msg borrows from so's message, still held by j */
	}
	json_array_foreach(json_object_get(so, "cases"), i, c)
	{
		const char *name = json_string_value(json_object_get(c, "template"));
		json_t *ej = json_object_get(c, "expected");
		enum chat_tmpl t = chat_tmpl_detect(name, strlen(name));
		char *out = NULL;
		size_t len;

		if (t == CHAT_TMPL_UNKNOWN || chat_render(t, &msg, 1, false, &out, &len) != 0 ||
		    len != json_string_length(ej) || memcmp(out, json_string_value(ej), len) != 0) {
			fprintf(stderr, "%s: got [%s] want [%s]\n", name, out ? out : "(error)",
				json_string_value(ej));
			bad++;
		}
		free(out);
	}
	ASSERT_EQ(json_array_size(json_object_get(so, "cases")), 11);
	json_decref(j);
	ASSERT_EQ(bad, 0);
}

/* Markers of the chat templates the popular small models ship, in the family llama.cpp's
 * rules give them (excerpts that hold the markers; the rules only look for substrings). */
static void
test_popular_models(void)
{
	static const struct {
		const char *model, *tmpl, *want;
	} cases[] = {
	    {"Qwen2.5-Instruct",
	     "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- endif %}{{- '<|im_start|>' + "
	     "message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}",
	     "chatml"},
	    {"SmolLM2-Instruct",
	     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' "
	     "%}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
	     "Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
	     "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
	     "chatml"},
	    {"Llama-3.2-Instruct",
	     "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
	     "message['content'] | trim + '<|eot_id|>' }}",
	     "llama3"},
	    {"Phi-3-mini",
	     "{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + "
	     "'<|assistant|>' + '\n'}}",
	     "phi3"},
	    {"Gemma-2-it",
	     "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + "
	     "'<end_of_turn>\n' }}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}",
	     "gemma"},
	    {"Mistral-7B-Instruct-v0.1/0.2",
	     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
	     "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
	     "'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
	     "llama2"},
	    {"Mistral-7B-Instruct-v0.3",
	     "{%- if tools is not none %}{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[INST] \" "
	     "+ message[\"content\"] + \"[/INST]\" }}",
	     "mistral-v3"},
	    {"Mistral-Small-24B-Instruct-2501",
	     "{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{- '[INST]' + "
	     "message['content'] + '[/INST]' }}",
	     "mistral-v7"},
	    {"stablelm-2-zephyr-1_6b",
	     "{% for message in messages %}{% if message['role'] == 'user' %}{{'<|user|>\n' + "
	     "message['content'] + '<|endoftext|>'}}{% endif %}{% endfor %}",
	     "zephyr"},
	    /* TinyLlama-1.1B-Chat ends turns with eos_token, not a literal "</s>" or
	     * "<|endoftext|>": llama.cpp's rules take it for glmedge. */
	    {"TinyLlama-1.1B-Chat-v1.0",
	     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
	     "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
	     "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% endfor %}",
	     "glmedge"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum chat_tmpl t = chat_tmpl_detect(cases[i].tmpl, strlen(cases[i].tmpl));

		if (strcmp(chat_tmpl_name(t), cases[i].want) != 0)
			TEST_FAIL_("%s: detected %s, want %s", cases[i].model, chat_tmpl_name(t),
				   cases[i].want);
	}
}

/* zephyr has no llama.cpp case: its rule, written out for the standard conversation. */
static void
test_zephyr(void)
{
	const struct chat_msg msgs[] = {{"system", 6, "You are a helpful assistant", 27},
					{"user", 4, "Hello", 5},
					{"assistant", 9, "  Hi  ", 6}};
	char *out;
	size_t len;

	ASSERT_OK(chat_render(CHAT_TMPL_ZEPHYR, msgs, 3, true, &out, &len));
	ASSERT_STREQ(out, "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello"
			  "<|endoftext|>\n<|assistant|>\n  Hi  <|endoftext|>\n<|assistant|>\n");
	ASSERT_EQ(len, strlen(out));
	free(out);
}

/* Every name maps to itself; non-names, near misses and unknown texts are UNKNOWN. */
static void
test_names(void)
{
	char *out = (char *)1;
	size_t len = 1;
	const struct chat_msg m = {"user", 4, "x", 1};

	for (int t = CHAT_TMPL_UNKNOWN + 1; t < CHAT_TMPL_COUNT; t++) {
		const char *name = chat_tmpl_name((enum chat_tmpl)t);

		ASSERT_EQ(chat_tmpl_from_name(name, strlen(name)), t);
		ASSERT_EQ(chat_tmpl_detect(name, strlen(name)), t);
		ASSERT_OK(chat_render((enum chat_tmpl)t, &m, 1, true, &out, &len));
		free(out);
	}
	ASSERT_EQ(chat_tmpl_from_name("chatm", 5), CHAT_TMPL_UNKNOWN);
	ASSERT_EQ(chat_tmpl_from_name("chatml ", 7), CHAT_TMPL_UNKNOWN);
	ASSERT_EQ(chat_tmpl_from_name("unknown", 7), CHAT_TMPL_UNKNOWN);
	ASSERT_EQ(chat_tmpl_detect("INVALID TEMPLATE", 16), CHAT_TMPL_UNKNOWN);
	ASSERT_EQ(chat_tmpl_detect("", 0), CHAT_TMPL_UNKNOWN);
	ASSERT_STREQ(chat_tmpl_name(CHAT_TMPL_UNKNOWN), "unknown");
	ASSERT_STREQ(chat_tmpl_name(CHAT_TMPL_COUNT), "unknown");
	/* "mistral" at the start, not elsewhere, selects the [INST] family */
	ASSERT_EQ(chat_tmpl_detect("mistral", 7), CHAT_TMPL_LLAMA2);
	ASSERT_EQ(chat_tmpl_detect("not mistral", 11), CHAT_TMPL_UNKNOWN);
	ASSERT_EQ(chat_render(CHAT_TMPL_UNKNOWN, &m, 1, true, &out, &len), -EINVAL);
	ASSERT(out == NULL && len == 0);
	ASSERT_EQ(chat_render(CHAT_TMPL_COUNT, &m, 1, true, &out, &len), -EINVAL);
}

/* Content is bytes: NULs and invalid UTF-8 pass through; trimming is ASCII whitespace only;
 * no messages renders the generation prompt alone (or an empty string). */
static void
test_bytes(void)
{
	const struct chat_msg m = {"user", 4, "\t a\0\xff\xc3 \n", 8};
	const char want[] = "<|start_header_id|>user<|end_header_id|>\n\na\0\xff\xc3<|eot_id|>";
	char *out;
	size_t len;

	ASSERT_OK(chat_render(CHAT_TMPL_LLAMA3, &m, 1, false, &out, &len));
	ASSERT_EQ(len, sizeof(want) - 1);
	ASSERT(memcmp(out, want, len) == 0);
	ASSERT_EQ(out[len], '\0');
	free(out);
	ASSERT_OK(chat_render(CHAT_TMPL_CHATML, NULL, 0, true, &out, &len));
	ASSERT_STREQ(out, "<|im_start|>assistant\n");
	free(out);
	ASSERT_OK(chat_render(CHAT_TMPL_CHATML, NULL, 0, false, &out, &len));
	ASSERT_EQ(len, 0);
	ASSERT_STREQ(out, "");
	free(out);
	/* the template text may hold NULs too: detection looks at all of it */
	ASSERT_EQ(chat_tmpl_detect("x\0<|im_start|>", 14), CHAT_TMPL_CHATML);
}

/* A long conversation renders in one piece (the buffer grows past its first size). */
static void
test_long(void)
{
	enum { N = 1000 };
	static struct chat_msg msgs[N];
	char content[300];
	char *out;
	size_t len;

	memset(content, 'y', sizeof(content));
	for (int i = 0; i < N; i++)
		msgs[i] = (struct chat_msg){i % 2 ? "assistant" : "user", i % 2 ? 9 : 4, content,
					    sizeof(content)};
	ASSERT_OK(chat_render(CHAT_TMPL_CHATML, msgs, N, true, &out, &len));
	ASSERT_EQ(len, (size_t)N / 2 * (12 + 4 + 1 + 300 + 11 + 12 + 9 + 1 + 300 + 11) + 22);
	ASSERT_EQ(strlen(out), len);
	ASSERT_STREQ(out + len - 22, "<|im_start|>assistant\n");
	free(out);
}

static int32_t
find_token(const struct vocab *v, const char *text)
{
	for (uint32_t i = 0; i < v->n_tokens; i++)
		if (strcmp(v->tokens[i].text, text) == 0)
			return (int32_t)i;
	return -1;
}

/* phi-3's vocabulary file carries its tokenizer.chat_template: recognised as phi3, and the
 * rendering tokenized with parse_special has each marker as one control id, <|end|> ending
 * generation; without parse_special none of them appears. */
static void
test_phi3_gguf(void)
{
	const struct chat_msg msgs[] = {{"system", 6, "Be brief.", 9},
					{"user", 4, "Hello", 5},
					{"assistant", 9, "Hi there", 8},
					{"user", 4, "Who are you", 11}};
	const char *path = test_fixture("tokenizer/ggml-vocab-phi-3.gguf");
	struct mapping map;
	struct gguf g;
	struct vocab v;
	struct diag d = {{0}};
	const struct gguf_kv *kv;
	int32_t ids[256], id_user, id_ass, id_sys, id_end;
	long n, n_plain;
	char *out = NULL;
	size_t len;
	int c_user = 0, c_ass = 0, c_sys = 0, c_end = 0;

	ASSERT_OK(mapping_open(&map, path, &d));
	ASSERT_OK(gguf_parse(&g, map.base, map.size, path, &d));
	ASSERT_OK(tokenizer_init(&v, &g, &d));
	kv = gguf_find_kv(&g, CHAT_TEMPLATE_KEY);
	ASSERT(kv != NULL && kv->type == GGUF_VT_STRING);
	ASSERT_EQ(chat_tmpl_detect(kv->v.s.ptr, (size_t)kv->v.s.len), CHAT_TMPL_PHI3);
	ASSERT_OK(chat_render(CHAT_TMPL_PHI3, msgs, 4, true, &out, &len));
	ASSERT_STREQ(out, "<|system|>\nBe brief.<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
			  "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n");
	id_user = find_token(&v, "<|user|>");
	id_ass = find_token(&v, "<|assistant|>");
	id_sys = find_token(&v, "<|system|>");
	id_end = find_token(&v, "<|end|>");
	ASSERT(id_user >= 0 && id_ass >= 0 && id_sys >= 0 && id_end >= 0);
	n = tokenizer_encode(&v, out, len, true, true, ids, ARRAY_LEN(ids));
	ASSERT(n > 0 && n <= (long)ARRAY_LEN(ids));
	ASSERT_EQ(ids[0], v.bos_id);
	for (long i = 0; i < n; i++) {
		c_user += ids[i] == id_user;
		c_ass += ids[i] == id_ass;
		c_sys += ids[i] == id_sys;
		c_end += ids[i] == id_end;
	}
	ASSERT(c_user == 2 && c_ass == 2 && c_sys == 1 && c_end == 4);
	ASSERT(ids[n - 1] == id_ass || ids[n - 2] == id_ass); /* the generation prompt */
	ASSERT(tokenizer_is_eog(&v, id_end));
	ASSERT(!tokenizer_is_eog(&v, id_user) && !tokenizer_is_eog(&v, id_ass));
	n_plain = tokenizer_encode(&v, out, len, true, false, ids, ARRAY_LEN(ids));
	ASSERT(n_plain > n && n_plain <= (long)ARRAY_LEN(ids));
	for (long i = 0; i < n_plain; i++)
		ASSERT(ids[i] != id_user && ids[i] != id_end);
	free(out);
	tokenizer_deinit(&v);
	gguf_deinit(&g);
	mapping_close(&map);
}

TEST_MAIN(TEST_CASE(test_llamacpp_cases), TEST_CASE(test_system_only),
	  TEST_CASE(test_popular_models), TEST_CASE(test_zephyr), TEST_CASE(test_names),
	  TEST_CASE(test_bytes), TEST_CASE(test_long), TEST_CASE(test_phi3_gguf))
