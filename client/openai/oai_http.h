/*
 * oai_http.h — the HTTP side of adainfer-openai: one libmicrohttpd daemon
 * per listening socket (thread per connection, bounded by a connection
 * cap), routing, the checks every request passes (Host on loopback
 * listeners, the API key, Content-Type, body size), and the endpoints.
 */
#ifndef OAI_HTTP_H
#define OAI_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/** Settings shared by every listener; borrowed for the server's life. */
struct oai_conf {
	const char *daemon_socket; /* NULL: libadainfer-client's default */
	size_t max_body;           /* bytes of a request body */
	unsigned max_connections;  /* per listener */
	unsigned idle_timeout_s;   /* an idle HTTP connection is closed after this */
	int request_timeout_ms;    /* bound on every wait for adainferd (0: none) */
	const char *api_key;       /* NULL: no Authorization needed */
	bool verbose;              /* log every request, not only failures */
};

/** One listener: a libmicrohttpd daemon and its settings. */
struct oai_server;

/**
 * Serves HTTP on the listening socket fd (bound and listening; the server
 * takes it). loopback: the socket is TCP on a loopback address, so Host
 * must name a loopback host (DNS rebinding). Returns the server or NULL
 * (logged). Free with oai_http_stop().
 */
struct oai_server *oai_http_start(int fd, bool loopback, const struct oai_conf *conf);

/** Stops accepting on s; in-flight requests go on. NULL is fine. */
void oai_http_quiesce(struct oai_server *s);

/**
 * Requests being served now on every listener (idle keep-alive connections
 * do not count): what a stop waits for.
 */
unsigned long oai_http_active(void);

/** Closes every connection (their daemon requests are cancelled) and frees s. NULL is fine. */
void oai_http_stop(struct oai_server *s);

#endif
