/*
 * oai_err.c — OpenAI-style errors: statuses, types and codes, and the map
 * from adainferd's error codes and libadainfer-client's failures to them.
 * Messages are ours or the daemon's; nothing here reads a request.
 */
#include "oai_err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/adainfer.h"
#include "oai_text.h"

static const char *
type_of(int status)
{
	switch (status) {
	case 400:
	case 413:
	case 415:
		return "invalid_request_error";
	case 401:
		return "authentication_error";
	case 403:
		return "permission_error";
	case 404:
		return "not_found_error";
	case 405:
		return "invalid_request_error";
	case 429:
		return "rate_limit_error";
	default:
		return "server_error";
	}
}

static void
copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "");
}

int
oai_err_set(struct oai_err *e, int status, const char *param, const char *code, const char *fmt,
	    ...)
{
	va_list ap;

	e->status = status;
	copy(e->type, sizeof(e->type), type_of(status));
	copy(e->param, sizeof(e->param), param);
	copy(e->code, sizeof(e->code), code);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

int
oai_err_from_client(struct oai_err *e, int rc, int serr, const char *name, const char *msg)
{
	if (msg == NULL || msg[0] == '\0')
		msg = adainfer_strerror(rc);
	if (rc != ADAINFER_ESERVER) {
		switch (rc) {
		case -ETIMEDOUT:
			return oai_err_set(e, 504, NULL, "timeout",
					   "adainferd did not answer in time: %s", msg);
		case -EINVAL:
		case -EMSGSIZE:
			return oai_err_set(e, 400, NULL, NULL, "request refused: %s", msg);
		case -ENOMEM:
			return oai_err_set(e, 500, NULL, NULL, "out of memory");
		default:
			/* -ENOENT, -ECONNREFUSED, -EACCES, -ECONNRESET, -EPROTO, ... */
			return oai_err_set(e, 503, NULL, "daemon_unavailable",
					   "adainferd is unavailable: %s", msg);
		}
	}
	switch (serr) {
	case ADAINFER_SERR_BAD_REQUEST:
		return oai_err_set(e, 400, NULL, name, "%s", msg);
	case ADAINFER_SERR_UNKNOWN_TASK:
		return oai_err_set(e, 404, "model", "model_not_found", "%s", msg);
	case ADAINFER_SERR_TOO_LARGE:
	case ADAINFER_SERR_CONTEXT:
		return oai_err_set(e, 400, NULL, "context_length_exceeded", "%s", msg);
	case ADAINFER_SERR_NO_METHOD:
		return oai_err_set(e, 501, NULL, name,
				   "this adainferd does not serve the request: %s", msg);
	case ADAINFER_SERR_TIMEOUT:
		return oai_err_set(e, 504, NULL, name, "%s", msg);
	case ADAINFER_SERR_BUSY:
	case ADAINFER_SERR_DENIED:
	case ADAINFER_SERR_LIMIT:
	case ADAINFER_SERR_SHUTTING_DOWN:
	case ADAINFER_SERR_CANCELLED:
		return oai_err_set(e, 503, NULL, name, "adainferd: %s", msg);
	default:
		return oai_err_set(e, 500, NULL, name != NULL ? name : "internal", "adainferd: %s",
				   msg);
	}
}

static json_t *
str_or_null(const char *s)
{
	return s[0] != '\0' ? json_string(s) : json_null();
}

json_t *
oai_err_json(const struct oai_err *e)
{
	/* Messages may quote request bytes, cut anywhere; JSON strings must be UTF-8. */
	char *m = NULL;
	size_t len = 0, cap = 0;
	json_t *msg;

	if (oai_utf8_append(&m, &len, &cap, e->message, strlen(e->message)) < 0)
		return NULL;
	msg = json_stringn(m != NULL ? m : "", len);
	free(m);
	return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", msg, "type", e->type, "param",
			 str_or_null(e->param), "code", str_or_null(e->code));
}
