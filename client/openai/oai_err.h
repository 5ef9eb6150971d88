/*
 * oai_err.h — OpenAI-style errors of adainfer-openai: the HTTP status and
 * the body {"error": {"message", "type", "param", "code"}}, built from our
 * own checks or from what adainferd or libadainfer-client reported.
 */
#ifndef OAI_ERR_H
#define OAI_ERR_H

#include <jansson.h>

/** One error to answer; fixed-size, no ownership. */
struct oai_err {
	int status;     /* HTTP status: 400, 404, 405, 413, 415, 500, 503, ... */
	char type[32];  /* "invalid_request_error", "not_found_error", "server_error", ... */
	char param[64]; /* the offending request field, "" for none (sent as null) */
	char code[48];  /* a machine-readable code, "" for none (sent as null) */
	char message[400];
};

/**
 * Fills e (status, type, param or NULL, code or NULL, printf message) and
 * returns -1 so callers can `return oai_err_set(...)`.
 */
__attribute__((format(printf, 5, 6))) int oai_err_set(struct oai_err *e, int status,
						      const char *param, const char *code,
						      const char *fmt, ...);

/**
 * Fills e from a failed libadainfer-client call: rc is its return value;
 * for ADAINFER_ESERVER, serr and name are adainfer_server_error()'s; msg is
 * adainfer_errmsg(). Daemon errors map to statuses as adainfer-openai(8)
 * documents (bad_request 400, unknown_task 404, busy 503, timeout 504, ...);
 * a daemon that cannot be reached is 503. Returns -1.
 */
int oai_err_from_client(struct oai_err *e, int rc, int serr, const char *name, const char *msg);

/** The error body {"error": {...}}; a new reference, NULL when out of memory. */
json_t *oai_err_json(const struct oai_err *e);

#endif
