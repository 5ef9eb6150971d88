/*
 * test_lib.c — libadainfer-client's API from C: error codes and strings,
 * connect failures naming the path, a deterministic timeout against a fake
 * server that accepts and never answers, and against a real adainferd
 * ($ADAINFERD, the bundled model, a temporary socket): calls, server
 * errors, the streaming callback (including one that stops a stream
 * early, after which the connection still serves), pipelining with
 * out-of-order collection, cancel, raw non-UTF-8 bytes, and the chat
 * helper (a streamed conversation, a refusal, a cancel; its argument checks).
 */
#include "test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "adainfer.h"

static char tmpdir[] = "/tmp/adainfer-libtest.XXXXXX";
static char sock_path[256];
static pid_t daemon_pid = -1;

static void
stop_daemon(void)
{
	char p[300];

	if (daemon_pid > 0) {
		kill(daemon_pid, SIGTERM);
		waitpid(daemon_pid, NULL, 0);
		daemon_pid = -1;
	}
	snprintf(p, sizeof(p), "%s/fake.sock", tmpdir);
	unlink(p);
	unlink(sock_path);
	rmdir(tmpdir);
}

/* Starts adainferd once; returns a connected client, or NULL (test skipped). */
static struct adainfer_client *
daemon_client(void)
{
	const char *bin = getenv("ADAINFERD"), *src = getenv("ADAINFER_SOURCE_ROOT");
	struct adainfer_client *c = adainfer_new();
	char model[4096];

	if (c == NULL || bin == NULL || src == NULL)
		return adainfer_free(c), NULL;
	if (daemon_pid < 0) {
		snprintf(model, sizeof(model), "%s/models/tiny-tasks.gguf", src);
		if ((daemon_pid = fork()) == 0) {
			execl(bin, bin, "--model", model, "--socket", sock_path, "--log-level",
			      "warning", (char *)NULL);
			_exit(127);
		}
	}
	for (int i = 0; i < 600; i++) { /* up to 30 s for the model to map */
		if (adainfer_connect(c, sock_path) == 0)
			return c;
		if (waitpid(daemon_pid, NULL, WNOHANG) == daemon_pid) {
			daemon_pid = -2;
			break;
		}
		usleep(50 * 1000);
	}
	adainfer_free(c);
	return NULL;
}

#define NEED_DAEMON(c)                                                                             \
	do {                                                                                       \
		if ((c = daemon_client()) == NULL) {                                               \
			if (getenv("ADAINFERD") == NULL)                                           \
				TEST_SKIP("ADAINFERD not set");                                    \
			TEST_FAIL_("adainferd did not start on %s", sock_path);                    \
		}                                                                                  \
	} while (0)

static void
test_errors(void)
{
	struct adainfer_client *c = adainfer_new();
	char longp[200];

	ASSERT(c != NULL);
	ASSERT_STREQ(adainfer_errmsg(NULL), "out of memory");
	ASSERT_CONTAINS(adainfer_strerror(ADAINFER_ESERVER), "daemon");
	ASSERT_CONTAINS(adainfer_strerror(-ETIMEDOUT), "timed out");
	ASSERT_STREQ(adainfer_strerror(-ENOENT), strerror(ENOENT));
	ASSERT_EQ(adainfer_send(c, "info", NULL, NULL), -ENOTCONN);
	ASSERT_EQ(adainfer_connect(c, "/nonexistent/adainfer.sock"), -ENOENT);
	ASSERT_CONTAINS(adainfer_errmsg(c), "/nonexistent/adainfer.sock");
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	ASSERT_EQ(adainfer_connect(c, longp), -ENAMETOOLONG);
	ASSERT_EQ(adainfer_fd(c), -1);
	ASSERT_EQ(adainfer_server_error(c, NULL), 0);
	setenv("ADAINFER_SOCKET", "/x/y.sock", 1);
	ASSERT_STREQ(adainfer_default_socket(), "/x/y.sock");
	unsetenv("ADAINFER_SOCKET");
	ASSERT(adainfer_default_socket()[0] == '/');
	adainfer_free(c);
	adainfer_free(NULL);
	adainfer_value_free(NULL);
	ASSERT(adainfer_value_get(NULL, "x") == NULL);
	ASSERT_EQ(adainfer_value_int(NULL, 7), 7);
}

/* A server that listens and never answers: the call must time out, not hang. */
static void
test_timeout(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct adainfer_client *c = adainfer_new();
	struct adainfer_value *res = (struct adainfer_value *)1;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	uint32_t id;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/fake.sock", tmpdir);
	ASSERT(fd >= 0 && c != NULL);
	ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	ASSERT_OK(listen(fd, 4));
	adainfer_set_timeout(c, 200);
	ASSERT_OK(adainfer_connect(c, sa.sun_path));
	ASSERT_EQ(adainfer_call(c, "info", NULL, &res, NULL, NULL), -ETIMEDOUT);
	ASSERT(res == NULL);
	ASSERT_CONTAINS(adainfer_errmsg(c), "200 ms");
	/* the request stays pending: waiting again times out again */
	ASSERT_OK(adainfer_send(c, "ping", NULL, &id));
	ASSERT_EQ(adainfer_wait(c, id, NULL, NULL, NULL), -ETIMEDOUT);
	ASSERT_EQ(adainfer_wait(c, id + 100, NULL, NULL, NULL), -ENOENT);
	adainfer_close(c);
	ASSERT_EQ(adainfer_fd(c), -1);
	adainfer_free(c);
	close(fd);
}

static void
test_call(void)
{
	struct adainfer_client *c;
	struct adainfer_value *res = NULL;
	const struct adainfer_value *m;
	struct adainfer_value bad = adainfer_int(3);

	NEED_DAEMON(c);
	ASSERT_OK(adainfer_call(c, "info", NULL, &res, NULL, NULL));
	m = adainfer_value_get(res, "model");
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(m, "n_layers"), 0), 12);
	ASSERT_STREQ(adainfer_value_str(adainfer_value_get(m, "name"), NULL), "tiny-tasks");
	ASSERT_EQ(adainfer_value_int(adainfer_value_get(res, "protocol"), 0), 1);
	adainfer_value_free(res);
	res = NULL;
	ASSERT_EQ(adainfer_call(c, "info", &bad, &res, NULL, NULL), -EINVAL);
	ASSERT_EQ(adainfer_call(c, "no_such_method", NULL, &res, NULL, NULL), ADAINFER_ESERVER);
	ASSERT_EQ(adainfer_server_error(c, NULL), ADAINFER_SERR_NO_METHOD);
	ASSERT(res == NULL);
	{
		struct adainfer_member mm[] = {{"prompt", adainfer_str("x")},
					       {"task", adainfer_str("no-such-task")}};
		struct adainfer_value p = adainfer_map(mm, 2);
		const char *name = NULL;

		ASSERT_EQ(adainfer_call(c, "complete", &p, &res, NULL, NULL), ADAINFER_ESERVER);
		ASSERT_EQ(adainfer_server_error(c, &name), ADAINFER_SERR_UNKNOWN_TASK);
		ASSERT_STREQ(name, "unknown_task");
		ASSERT_CONTAINS(adainfer_errmsg(c), "no-such-task");
	}
	/* the connection survives a server error */
	ASSERT_OK(adainfer_call(c, "ping", NULL, &res, NULL, NULL));
	ASSERT(adainfer_value_bool(adainfer_value_get(res, "pong"), false));
	adainfer_value_free(res);
	adainfer_free(c);
}

struct stream_count {
	int n, stop_after;
	char text[4096];
	size_t len;
};

static int
on_token(void *arg, const char *method, const struct adainfer_value *params)
{
	struct stream_count *s = arg;
	size_t n;
	const char *t = adainfer_value_str(adainfer_value_get(params, "text"), &n);

	if (strcmp(method, "token") != 0)
		return 0;
	if (t != NULL && s->len + n < sizeof(s->text)) {
		memcpy(s->text + s->len, t, n);
		s->len += n;
	}
	s->n++;
	return s->stop_after > 0 && s->n >= s->stop_after;
}

static void
test_stream(void)
{
	struct adainfer_client *c;
	struct adainfer_value *res = NULL;
	struct stream_count s = {0, 0, {0}, 0};
	struct adainfer_member mm[] = {{"prompt", adainfer_str("Once upon a time")},
				       {"max_tokens", adainfer_int(12)},
				       {"eos", adainfer_bool(false)},
				       {"stream", adainfer_bool(true)}};
	struct adainfer_value p = adainfer_map(mm, 4);
	const struct adainfer_value *toks;
	size_t tl;
	const char *text;

	NEED_DAEMON(c);
	ASSERT_OK(adainfer_call(c, "complete", &p, &res, on_token, &s));
	toks = adainfer_value_get(res, "tokens");
	ASSERT(toks != NULL && toks->type == ADAINFER_ARRAY);
	ASSERT_EQ(s.n, toks->u.array.n);
	ASSERT_EQ(s.n, 12);
	text = adainfer_value_str(adainfer_value_get(res, "text"), &tl);
	ASSERT(text != NULL);
	ASSERT_EQ(tl, s.len); /* the streamed pieces add up to the text */
	ASSERT(memcmp(text, s.text, tl) == 0);
	adainfer_value_free(res);
	res = NULL;

	/* a callback that stops the stream after 2 of 200 tokens */
	mm[1].value = adainfer_int(200);
	memset(&s, 0, sizeof(s));
	s.stop_after = 2;
	ASSERT_EQ(adainfer_call(c, "complete", &p, &res, on_token, &s), -ECANCELED);
	ASSERT(res == NULL);
	ASSERT(s.n >= 2 && s.n < 200);
	/* still in sync: the next call gets its own answer */
	ASSERT_OK(adainfer_call(c, "ping", NULL, &res, NULL, NULL));
	ASSERT(adainfer_value_bool(adainfer_value_get(res, "pong"), false));
	adainfer_value_free(res);
	adainfer_free(c);
}

static void
test_pipeline_and_cancel(void)
{
	struct adainfer_client *c;
	struct adainfer_value *res = NULL;
	struct adainfer_member mm[] = {{"prompt", adainfer_str("Once upon a time")},
				       {"max_tokens", adainfer_int(200)},
				       {"eos", adainfer_bool(false)}};
	struct adainfer_value p = adainfer_map(mm, 3);
	uint32_t long_id, ping_id, got = 0;
	int rc;

	NEED_DAEMON(c);
	ASSERT_OK(adainfer_send(c, "complete", &p, &long_id));
	ASSERT_OK(adainfer_send(c, "ping", NULL, &ping_id));
	ASSERT_NE(long_id, ping_id);
	/* ping is answered on the loop, long before the generation: out of order */
	ASSERT_OK(adainfer_recv(c, &got, &res, NULL, NULL));
	ASSERT_EQ(got, ping_id);
	adainfer_value_free(res);
	res = NULL;
	/* 200 tokens take far longer than the round trip of the cancel */
	rc = adainfer_cancel(c, long_id);
	ASSERT_EQ(rc, 1);
	ASSERT_EQ(adainfer_wait(c, long_id, &res, NULL, NULL), ADAINFER_ESERVER);
	ASSERT_EQ(adainfer_server_error(c, NULL), ADAINFER_SERR_CANCELLED);
	ASSERT(res == NULL);
	ASSERT_EQ(adainfer_cancel(c, long_id), -ENOENT);
	ASSERT_EQ(adainfer_recv(c, &got, NULL, NULL, NULL), -ENOENT);
	adainfer_free(c);
}

/* Prompt bytes that are not UTF-8 go out as bin and come back unchanged. */
static void
test_raw_bytes(void)
{
	static const char raw[] = "caf\xc3\xa9 na\xefve \xff";
	struct adainfer_client *c;
	struct adainfer_value *res = NULL, *back = NULL;
	struct adainfer_member mm[] = {{"text", adainfer_strn(raw, sizeof(raw) - 1)}};
	struct adainfer_value p = adainfer_map(mm, 1);
	size_t n;
	const char *t;

	NEED_DAEMON(c);
	ASSERT_OK(adainfer_call(c, "tokenize", &p, &res, NULL, NULL));
	{
		struct adainfer_member dm[] = {{"tokens", *adainfer_value_get(res, "tokens")}};
		struct adainfer_value dp = adainfer_map(dm, 1);

		ASSERT_OK(adainfer_call(c, "detokenize", &dp, &back, NULL, NULL));
	}
	t = adainfer_value_str(adainfer_value_get(back, "text"), &n);
	ASSERT(t != NULL);
	ASSERT_EQ(n, sizeof(raw) - 1);
	ASSERT(memcmp(t, raw, n) == 0);
	ASSERT_EQ(adainfer_value_get(back, "text")->type, ADAINFER_BIN);
	adainfer_value_free(res);
	adainfer_value_free(back);
	adainfer_free(c);
}

/* A conversation through the chat method: streamed pieces add up to the text; cancel works. */
static void
test_chat(void)
{
	struct adainfer_client *c;
	struct adainfer_value *res = NULL;
	struct stream_count s = {0, 0, {0}, 0};
	struct adainfer_message conv[] = {{"system", "Be brief.", 9},
					  {"user", "Hello", 5},
					  {"assistant", "Hi", 2},
					  {"user", "Once upon a time", 16}};
	struct adainfer_member om[] = {{"template", adainfer_str("chatml")},
				       {"max_tokens", adainfer_int(12)},
				       {"eos", adainfer_bool(false)},
				       {"stream", adainfer_bool(true)}};
	struct adainfer_value opts = adainfer_map(om, 4);
	const char *text;
	uint32_t id;
	size_t tl;

	NEED_DAEMON(c);
	ASSERT_OK(adainfer_chat(c, conv, 4, &opts, &res, on_token, &s));
	ASSERT_EQ(s.n, 12);
	ASSERT(adainfer_value_int(adainfer_value_get(res, "n_prompt"), 0) > 20);
	text = adainfer_value_str(adainfer_value_get(res, "text"), &tl);
	ASSERT(text != NULL);
	ASSERT_EQ(tl, s.len);
	ASSERT(memcmp(text, s.text, tl) == 0);
	adainfer_value_free(res);
	res = NULL;
	/* without a template the bundled model's chat is refused, naming the config key */
	ASSERT_EQ(adainfer_chat(c, conv, 4, NULL, &res, NULL, NULL), ADAINFER_ESERVER);
	ASSERT_EQ(adainfer_server_error(c, NULL), ADAINFER_SERR_BAD_REQUEST);
	ASSERT(strstr(adainfer_errmsg(c), "chat_template") != NULL);
	/* sent, then cancelled before it is done */
	om[1].value = adainfer_int(200);
	om[3].value = adainfer_bool(false);
	ASSERT_OK(adainfer_chat_send(c, conv, 4, &opts, &id));
	ASSERT_EQ(adainfer_cancel(c, id), 1);
	ASSERT_EQ(adainfer_wait(c, id, &res, NULL, NULL), ADAINFER_ESERVER);
	ASSERT_EQ(adainfer_server_error(c, NULL), ADAINFER_SERR_CANCELLED);
	adainfer_free(c);
}

/* adainfer_chat_send refuses what cannot be a conversation before touching the socket. */
static void
test_chat_args(void)
{
	struct adainfer_client *c = adainfer_new();
	struct adainfer_message conv[] = {{"user", "hi", 2}}, bad[] = {{"user", NULL, 0}};
	struct adainfer_member om[] = {{"messages", adainfer_int(1)}};
	struct adainfer_value opts = adainfer_map(om, 1), not_map = adainfer_int(3), *res = NULL;
	uint32_t id;

	ASSERT(c != NULL);
	ASSERT_EQ(adainfer_chat_send(c, conv, 0, NULL, &id), -EINVAL);
	ASSERT_EQ(adainfer_chat_send(c, NULL, 1, NULL, &id), -EINVAL);
	ASSERT_EQ(adainfer_chat_send(c, bad, 1, NULL, &id), -EINVAL);
	ASSERT_EQ(adainfer_chat_send(c, conv, 1, &opts, &id), -EINVAL);
	ASSERT(strstr(adainfer_errmsg(c), "messages") != NULL);
	ASSERT_EQ(adainfer_chat_send(c, conv, 1, &not_map, &id), -EINVAL);
	ASSERT_EQ(adainfer_chat(c, conv, 1, NULL, &res, NULL, NULL), -ENOTCONN);
	ASSERT(res == NULL);
	adainfer_free(c);
}

static void
test_setup(void)
{
	ASSERT(mkdtemp(tmpdir) != NULL);
	snprintf(sock_path, sizeof(sock_path), "%s/d.sock", tmpdir);
	atexit(stop_daemon);
}

TEST_MAIN(TEST_CASE(test_setup), TEST_CASE(test_errors), TEST_CASE(test_timeout),
	  TEST_CASE(test_call), TEST_CASE(test_stream), TEST_CASE(test_pipeline_and_cancel),
	  TEST_CASE(test_raw_bytes), TEST_CASE(test_chat), TEST_CASE(test_chat_args))
