/*
 * oai_listen.h — the listening sockets of adainfer-openai: a Unix socket
 * (stale-socket check, mode, group) and a TCP address, loopback unless the
 * caller allows others; and sd_notify(3) by hand.
 */
#ifndef OAI_LISTEN_H
#define OAI_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/**
 * Binds and listens on the Unix socket path with file mode `mode` and, when
 * gid is not (gid_t)-1, that group. An existing socket nobody listens on is
 * replaced; a live one or another kind of file is an error. Returns the
 * descriptor or -1 with a reason in err[0..cap).
 */
int oai_listen_unix(const char *path, unsigned mode, gid_t gid, char *err, size_t cap);

/**
 * Parses "ADDR:PORT" ("127.0.0.1:8080", "[::1]:8080", "localhost:8080")
 * or a bare port (then 127.0.0.1). Binds and listens; *loopback says
 * whether the address is a loopback one. A non-loopback address is refused
 * unless allow_remote. *bound receives "ADDR:PORT" as bound (port 0 gets
 * its real number). Returns the descriptor or -1 with a reason in err.
 */
int oai_listen_tcp(const char *spec, bool allow_remote, bool *loopback, char *bound,
		   size_t bound_cap, char *err, size_t cap);

/** Sends state to $NOTIFY_SOCKET when set; 0 or a negative errno (never blocks). */
int oai_notify(const char *state);

#endif
