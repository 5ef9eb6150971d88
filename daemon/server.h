/*
 * server.h — the listening Unix socket: path checks, stale-socket
 * replacement, umask/chmod, socket activation.
 */
#ifndef ADAINFER_SERVER_H
#define ADAINFER_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "conf.h"
#include "daemon/base/util.h"

/** The listening socket. */
struct server {
	uv_pipe_t pipe;
	bool listening;
	bool activated; /* the socket came from systemd: never unlink it */
	char path[108]; /* what we bound, for unlink at stop */
};

/**
 * Starts listening: fd (from socket activation) when >= 0, else
 * c->socket_path, replacing a stale socket but refusing a live or stuck
 * one. on_connection gets each new connection (the pipe's data is data).
 * Returns 0 or a negative errno with d naming the path.
 */
int server_open(struct server *sv, uv_loop_t *loop, const struct conf *c, int fd,
		uv_connection_cb on_connection, void *data, struct diag *d);
/** Stops accepting and removes the socket file we created. */
void server_close(struct server *sv);

#endif
