/*
 * adainfer.h — libadainfer-client: talk to adainferd from any local process.
 *
 * The daemon speaks MessagePack-RPC over a Unix stream socket (see
 * adainfer-protocol(7) for the methods and their parameters). This library
 * hides the framing: connect, call a method with a parameter map, get the
 * result back as a tree of struct adainfer_value, optionally receive the
 * streamed "token" notifications through a callback, cancel, close;
 * adainfer_chat() sends a conversation to the "chat" method.
 *
 *   struct adainfer_client *c = adainfer_new();
 *   struct adainfer_member m[] = {
 *           {"prompt", adainfer_str("Review: a gem\nSentiment:")},
 *           {"task", adainfer_str("sst2")},
 *   };
 *   struct adainfer_value params = adainfer_map(m, 2), *res = NULL;
 *
 *   if (c == NULL || adainfer_connect(c, NULL) < 0 ||
 *       adainfer_call(c, "complete", &params, &res, NULL, NULL) < 0)
 *           fprintf(stderr, "%s\n", adainfer_errmsg(c));
 *   else
 *           puts(adainfer_value_str(adainfer_value_get(res, "text"), NULL));
 *   adainfer_value_free(res);
 *   adainfer_free(c);
 *
 * Conventions. Functions that can fail return 0 (or a documented
 * non-negative value) on success and a negative errno-style code on
 * failure; adainfer_strerror() names the code and adainfer_errmsg() gives
 * the detailed reason of the last failure on that client (the socket path,
 * the daemon's error message). The library never aborts, never exits, never
 * prints and never raises SIGPIPE: every failure is a return value.
 *
 * Threads: a client may be used by one thread at a time; distinct clients
 * are independent. Blocking calls are bounded by adainfer_set_timeout().
 *
 * Pipelining: adainfer_send() sends without waiting; responses may come
 * back in any order and are collected with adainfer_wait() (one msgid) or
 * adainfer_recv() (whichever is ready first). Responses that arrive while
 * waiting for another one are kept until asked for.
 */
#ifndef ADAINFER_H
#define ADAINFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(ADAINFER_BUILDING)
#define ADAINFER_API __attribute__((visibility("default")))
#else
#define ADAINFER_API
#endif

/* ---- error codes --------------------------------------------------------
 * Besides negative errno values (-EINVAL bad argument, -ENOMEM, connect(2)'s
 * -ENOENT / -ECONNREFUSED / -EACCES / -ENAMETOOLONG, -ETIMEDOUT no answer
 * within the timeout, -ECONNRESET the daemon closed the connection,
 * -EPROTO the daemon sent something outside the protocol, -EMSGSIZE a
 * message over the size limit, -ECANCELED a streaming callback stopped the
 * request, -ENOTCONN not connected), one code of the library's own:
 */
/** The daemon answered with an error; see adainfer_server_error(). */
#define ADAINFER_ESERVER (-20001)

/**
 * Error codes the daemon sends (numbers fixed by the protocol; the daemon
 * may add codes, so treat unknown ones as failures).
 */
enum adainfer_server_err {
	ADAINFER_SERR_BAD_REQUEST = 1,
	ADAINFER_SERR_NO_METHOD = 2,
	ADAINFER_SERR_UNKNOWN_TASK = 3,
	ADAINFER_SERR_TOO_LARGE = 4,
	ADAINFER_SERR_CONTEXT = 5,
	ADAINFER_SERR_BUSY = 6,
	ADAINFER_SERR_CANCELLED = 7,
	ADAINFER_SERR_TIMEOUT = 8,
	ADAINFER_SERR_DENIED = 9,
	ADAINFER_SERR_LIMIT = 10,
	ADAINFER_SERR_SHUTTING_DOWN = 11,
	ADAINFER_SERR_RELOAD = 12,
	ADAINFER_SERR_INTERNAL = 13,
};

/* ---- values ---------------------------------------------------------------
 * Parameters and results are trees of adainfer_value. Results are owned by
 * the caller and freed with adainfer_value_free() (one allocation; every
 * pointer inside borrows from it). Parameters are built by the caller, e.g.
 * on the stack with the constructors below; the library only reads them.
 */
enum adainfer_type {
	ADAINFER_NIL = 0,
	ADAINFER_BOOL,
	ADAINFER_INT, /* integers beyond int64 arrive as ADAINFER_FLOAT */
	ADAINFER_FLOAT,
	ADAINFER_STR, /* text; sent as str when valid UTF-8, else as bin */
	ADAINFER_BIN, /* raw bytes (the daemon sends text that is not UTF-8 this way) */
	ADAINFER_ARRAY,
	ADAINFER_MAP,
};

struct adainfer_member;

struct adainfer_value {
	enum adainfer_type type;
	union {
		bool b;
		int64_t i;
		double f;
		struct {
			const char *ptr; /* in results also NUL-terminated (bytes may hold NULs) */
			size_t len;
		} str; /* ADAINFER_STR and ADAINFER_BIN */
		struct {
			const struct adainfer_value *v;
			size_t n;
		} array;
		struct {
			const struct adainfer_member *v;
			size_t n;
		} map;
	} u;
};

/** A map entry; keys are text (NUL-terminated). */
struct adainfer_member {
	const char *key;
	struct adainfer_value value;
};

/** Constructors for parameters (no allocation; the value borrows its arguments). */
static inline struct adainfer_value
adainfer_nil(void)
{
	struct adainfer_value v = {ADAINFER_NIL, {0}};
	return v;
}
static inline struct adainfer_value
adainfer_bool(bool b)
{
	struct adainfer_value v = {ADAINFER_BOOL, {0}};
	v.u.b = b;
	return v;
}
static inline struct adainfer_value
adainfer_int(int64_t i)
{
	struct adainfer_value v = {ADAINFER_INT, {0}};
	v.u.i = i;
	return v;
}
static inline struct adainfer_value
adainfer_float(double f)
{
	struct adainfer_value v = {ADAINFER_FLOAT, {0}};
	v.u.f = f;
	return v;
}
/** Text of len bytes, UTF-8 or not. */
static inline struct adainfer_value
adainfer_strn(const char *s, size_t len)
{
	struct adainfer_value v = {ADAINFER_STR, {0}};
	v.u.str.ptr = s;
	v.u.str.len = len;
	return v;
}
/** A NUL-terminated string. */
static inline struct adainfer_value
adainfer_str(const char *s)
{
	size_t n = 0;
	while (s[n] != '\0')
		n++;
	return adainfer_strn(s, n);
}
static inline struct adainfer_value
adainfer_array(const struct adainfer_value *items, size_t n)
{
	struct adainfer_value v = {ADAINFER_ARRAY, {0}};
	v.u.array.v = items;
	v.u.array.n = n;
	return v;
}
static inline struct adainfer_value
adainfer_map(const struct adainfer_member *members, size_t n)
{
	struct adainfer_value v = {ADAINFER_MAP, {0}};
	v.u.map.v = members;
	v.u.map.n = n;
	return v;
}

/** Frees a result tree; NULL is fine. */
ADAINFER_API void adainfer_value_free(struct adainfer_value *v);
/** The value of key in map v; NULL when v is NULL, not a map or has no such key. Borrows from v. */
ADAINFER_API const struct adainfer_value *adainfer_value_get(const struct adainfer_value *v,
							     const char *key);
/** v as an integer (a float is truncated); dflt when v is NULL or neither. */
ADAINFER_API int64_t adainfer_value_int(const struct adainfer_value *v, int64_t dflt);
/** v as a double (an integer is converted); dflt when v is NULL or neither. */
ADAINFER_API double adainfer_value_float(const struct adainfer_value *v, double dflt);
/** v as a bool; dflt when v is NULL or not a bool. */
ADAINFER_API bool adainfer_value_bool(const struct adainfer_value *v, bool dflt);
/**
 * The bytes of a str or bin value (NUL-terminated in results), their length
 * in *len when len is not NULL; NULL when v is NULL or of another type.
 */
ADAINFER_API const char *adainfer_value_str(const struct adainfer_value *v, size_t *len);

/* ---- the client ------------------------------------------------------------ */

/** Opaque connection state. */
struct adainfer_client;

/**
 * Called for every notification that arrives while a call waits: method is
 * its name ("token"), params its parameter map (NULL when it has none),
 * borrowed for the duration of the call. A "token" notification's params
 * hold msgid, index, id, text and exit_layer. Return 0 to go on; any other
 * value stops the request the notification belongs to: the library sends
 * `cancel` for it, and waiting for it returns -ECANCELED once the daemon
 * has answered (the connection stays usable).
 */
typedef int (*adainfer_notify_fn)(void *arg, const char *method,
				  const struct adainfer_value *params);

/** A new, unconnected client; NULL when out of memory. Free with adainfer_free(). */
ADAINFER_API struct adainfer_client *adainfer_new(void);
/** Closes the connection if open and frees c and everything it holds; NULL is fine. */
ADAINFER_API void adainfer_free(struct adainfer_client *c);

/**
 * The socket path used when none is given: $ADAINFER_SOCKET when set and
 * not empty, else the daemon's compiled-in default. Borrowed, static.
 */
ADAINFER_API const char *adainfer_default_socket(void);

/**
 * Connects c to the daemon's socket at path (NULL: adainfer_default_socket()).
 * Returns 0, -EISCONN when already connected, -ENAMETOOLONG, -ENOMEM, or
 * connect(2)'s error (-ENOENT, -ECONNREFUSED, -EACCES, ...) with a message
 * naming the path in adainfer_errmsg().
 */
ADAINFER_API int adainfer_connect(struct adainfer_client *c, const char *path);

/**
 * Closes the connection (pending requests are abandoned; their results
 * are dropped). c may be connected again. Safe when not connected.
 */
ADAINFER_API void adainfer_close(struct adainfer_client *c);

/**
 * Bounds every later blocking call (connect, send, wait, recv, call,
 * cancel) to timeout_ms milliseconds; 0 (the default) waits forever. A call
 * that runs out returns -ETIMEDOUT; the requests it waited for stay pending.
 */
ADAINFER_API void adainfer_set_timeout(struct adainfer_client *c, int timeout_ms);

/** The file descriptor of the connection (for poll(2) by the caller), or -1. */
ADAINFER_API int adainfer_fd(const struct adainfer_client *c);

/**
 * Sends the request `method` with params (NULL for none, else a MAP)
 * without waiting; *msgid (when not NULL) receives its message id.
 * Returns 0, -EINVAL (bad method or params), -ENOTCONN, -ENOMEM, -EMSGSIZE,
 * -ETIMEDOUT or a socket error.
 */
ADAINFER_API int adainfer_send(struct adainfer_client *c, const char *method,
			       const struct adainfer_value *params, uint32_t *msgid);

/**
 * Waits for the response to msgid (from adainfer_send), passing the
 * notifications that arrive meanwhile to cb (may be NULL). On success
 * returns 0 and, when result is not NULL, gives the caller the result tree
 * in *result (free with adainfer_value_free). Returns ADAINFER_ESERVER when
 * the daemon answered with an error (adainfer_server_error() has it),
 * -ECANCELED when cb stopped the request, -ENOENT for a msgid that is not
 * pending, or the errors of adainfer_send. *result is NULL on failure.
 */
ADAINFER_API int adainfer_wait(struct adainfer_client *c, uint32_t msgid,
			       struct adainfer_value **result, adainfer_notify_fn cb, void *arg);

/**
 * Waits for the next response to any pending request (one that arrived
 * earlier first) and returns as adainfer_wait() does, with its msgid in
 * *msgid. Returns -ENOENT when no request is pending.
 */
ADAINFER_API int adainfer_recv(struct adainfer_client *c, uint32_t *msgid,
			       struct adainfer_value **result, adainfer_notify_fn cb, void *arg);

/** adainfer_send() then adainfer_wait(): one blocking call. */
ADAINFER_API int adainfer_call(struct adainfer_client *c, const char *method,
			       const struct adainfer_value *params, struct adainfer_value **result,
			       adainfer_notify_fn cb, void *arg);

/**
 * Asks the daemon to cancel the pending request msgid and waits for the
 * answer to that ask (notifications arriving meanwhile are dropped).
 * Returns 1 when the request was cancelled (waiting for it will return
 * ADAINFER_ESERVER with ADAINFER_SERR_CANCELLED), 0 when it had already
 * finished (its result stays to be collected), or a negative code. msgid
 * stays pending either way.
 */
ADAINFER_API int adainfer_cancel(struct adainfer_client *c, uint32_t msgid);

/* ---- chat -------------------------------------------------------------------------
 * The "chat" method: the daemon renders a conversation with the model's chat
 * template (or the one named by a "template" option), generates the
 * assistant's answer and returns complete's result map (text, tokens,
 * exit_layers, stop_reason, timings, ...), streaming "token" notifications
 * when the "stream" option is true. Generation ends at the model's
 * end-of-generation token, which is never part of the text.
 *
 *   struct adainfer_message conv[] = {
 *           {"system", "Answer briefly.", 15},
 *           {"user", "What is the capital of France?", 30},
 *   };
 *   struct adainfer_member o[] = {{"max_tokens", adainfer_int(64)}};
 *   struct adainfer_value opts = adainfer_map(o, 1), *res = NULL;
 *
 *   if (adainfer_chat(c, conv, 2, &opts, &res, NULL, NULL) == 0)
 *           puts(adainfer_value_str(adainfer_value_get(res, "text"), NULL));
 *   adainfer_value_free(res);
 */

/**
 * One message of a conversation: role "system", "user" or "assistant"
 * (NUL-terminated), content the content_len bytes of its text (UTF-8 or
 * not). The library only reads it.
 */
struct adainfer_message {
	const char *role;
	const char *content;
	size_t content_len;
};

/**
 * Sends a "chat" request without waiting: the conversation msgs[0..n) as
 * its messages, plus the members of options (NULL, or a MAP of chat's other
 * parameters: task, max_tokens, stop, temperature, top_p, seed, stream,
 * template, ...; see adainfer-protocol(7)). *msgid (when not NULL) receives
 * its message id, to wait for with adainfer_wait() or cancel with
 * adainfer_cancel(). Returns as adainfer_send(), and -EINVAL when n is 0, a
 * role or content is NULL, or options is not a map or holds "messages".
 */
ADAINFER_API int adainfer_chat_send(struct adainfer_client *c, const struct adainfer_message *msgs,
				    size_t n, const struct adainfer_value *options,
				    uint32_t *msgid);

/**
 * adainfer_chat_send() then adainfer_wait(): one blocking call; cb receives
 * the "token" notifications (with the "stream" option) and may stop the
 * answer as for adainfer_wait(). Returns as adainfer_wait(); *result is
 * complete's result map (free with adainfer_value_free).
 */
ADAINFER_API int adainfer_chat(struct adainfer_client *c, const struct adainfer_message *msgs,
			       size_t n, const struct adainfer_value *options,
			       struct adainfer_value **result, adainfer_notify_fn cb, void *arg);

/**
 * After ADAINFER_ESERVER: the daemon's error code (enum adainfer_server_err)
 * and, when name is not NULL, its name ("busy", "unknown_task", ...;
 * borrowed from c until its next call). 0 when the last failure was not a
 * server error.
 */
ADAINFER_API int adainfer_server_error(const struct adainfer_client *c, const char **name);

/**
 * The detailed reason of c's last failure ("connect /run/adainfer/adainferd.sock:
 * No such file or directory", "unknown_task: no profile for task 'x'"), or ""
 * after a success. Borrowed from c until its next call. c may be NULL
 * (then "out of memory", what adainfer_new's failure means).
 */
ADAINFER_API const char *adainfer_errmsg(const struct adainfer_client *c);

/** A static description of an error code returned by this library. */
ADAINFER_API const char *adainfer_strerror(int rc);

/** The library's version string (the daemon's version it was built with). */
ADAINFER_API const char *adainfer_version(void);

#ifdef __cplusplus
}
#endif

#endif
