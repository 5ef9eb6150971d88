/*
 * server.c — the listening socket (ntpd's control_init: length check,
 * unlink only a stale socket, umask around bind, explicit chmod, the
 * system's backlog; or the fd systemd passed), and the daemon-wide state changes
 * driven from the loop: reload with an atomic snapshot swap, and the
 * graceful stop. Loop thread only; the one slow step, loading a changed
 * model, runs on the libuv threadpool. It must never unlink a live socket
 * or one systemd owns, and never replace the snapshot with a half-checked one.
 */
#include "server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/base/log.h"

/*
 * What listens at path: SOCKET_LIVE (a connect succeeded), SOCKET_STUCK
 * (bound and listening but its backlog is full: a stopped or hung daemon),
 * SOCKET_STALE (nobody), or a negative errno. Never blocks: the connect is
 * non-blocking, so a live-but-stopped daemon cannot hold the start-up.
 */
enum { SOCKET_STALE, SOCKET_LIVE, SOCKET_STUCK };

static int
socket_live(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, rc;

	strlcpy_(sa.sun_path, path, sizeof(sa.sun_path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? SOCKET_LIVE : -errno;
	close(fd);
	if (rc == -ECONNREFUSED || rc == -ENOENT)
		rc = SOCKET_STALE;
	else if (rc == -EAGAIN || rc == -EINPROGRESS) /* a Unix socket's full backlog */
		rc = SOCKET_STUCK;
	return rc;
}

int
server_open(struct server *sv, uv_loop_t *loop, const struct conf *c, int fd,
	    uv_connection_cb on_connection, void *data, struct diag *d)
{
	struct stat st;
	mode_t old;
	int rc;

	if ((rc = uv_pipe_init(loop, &sv->pipe, 0)) < 0)
		return diag_set(d, rc, "uv_pipe_init: %s", uv_strerror(rc));
	sv->pipe.data = data;
	if (fd >= 0) {
		if ((rc = uv_pipe_open(&sv->pipe, fd)) < 0)
			return diag_set(d, rc, "socket from systemd (fd %d): %s", fd,
					uv_strerror(rc));
		sv->activated = true;
	} else {
		const char *path = c->socket_path;

		if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
			return diag_set(d, -ENAMETOOLONG, "%s: socket path too long", path);
		if (lstat(path, &st) == 0) {
			if (!S_ISSOCK(st.st_mode))
				return diag_set(d, -EEXIST, "%s: exists and is not a socket", path);
			if ((rc = socket_live(path)) == SOCKET_LIVE)
				return diag_set(d, -EADDRINUSE,
						"%s: another daemon is listening on this socket",
						path);
			if (rc == SOCKET_STUCK)
				return diag_set(d, -EADDRINUSE,
						"%s: a process listens on this socket but does not "
						"accept (its backlog is full: a stopped or hung "
						"daemon?); stop it or choose another --socket",
						path);
			if (rc < 0)
				return diag_set(d, rc, "%s: %s", path, strerror(-rc));
			log_info("%s: replacing a stale socket", path);
			if (unlink(path) < 0)
				return diag_set(d, -errno, "%s: unlink: %s", path, strerror(errno));
		}
		old = umask(0177);
		rc = uv_pipe_bind(&sv->pipe, path);
		umask(old);
		if (rc == UV_EACCES || rc == UV_EPERM || rc == UV_EROFS || rc == UV_ENOENT)
			return diag_set(d, rc,
					"%s: bind: %s; choose a socket this user may create with "
					"--socket PATH (or socket.path in the config)",
					path, uv_strerror(rc));
		if (rc < 0)
			return diag_set(d, rc, "%s: bind: %s", path, uv_strerror(rc));
		strlcpy_(sv->path, path, sizeof(sv->path));
		if (chmod(path, c->socket_mode) < 0)
			return diag_set(d, -errno, "%s: chmod %o: %s", path, c->socket_mode,
					strerror(errno));
	}
	if ((rc = uv_listen((uv_stream_t *)&sv->pipe, SOMAXCONN, on_connection)) < 0)
		return diag_set(d, rc, "listen: %s", uv_strerror(rc));
	sv->listening = true;
	return 0;
}

void
server_close(struct server *sv)
{
	if (!sv->listening)
		return;
	sv->listening = false;
	uv_close((uv_handle_t *)&sv->pipe, NULL);
	/* libuv's uv_close on a bound pipe already unlinks its path; ENOENT is that. */
	if (!sv->activated && sv->path[0] != '\0' && unlink(sv->path) < 0 && errno != ENOENT)
		log_warn("unlink %s", sv->path);
}
