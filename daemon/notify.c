/*
 * notify.c — sd_notify(3) and sd_listen_fds(3) by hand, the way
 * knot-resolver's fallback does: one datagram to $NOTIFY_SOCKET, and fd 3
 * when $LISTEN_PID names us. Written by hand because Debian's libsystemd-dev
 * is one more build dependency for thirty lines. Must never block or exit:
 * a missing or broken notify socket is reported to the caller and ignored.
 */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_FDS_START 3

int
notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t salen;
	size_t n;
	ssize_t w;
	int fd, rc = 0;

	if (path == NULL || *path == '\0')
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	w = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa,
		   salen);
	if (w < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int
notify_listen_fd(void)
{
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	char *end;
	long pid, nfds;
	int type = 0, rc;
	socklen_t len = sizeof(type);
	struct sockaddr_un sa;
	socklen_t salen = sizeof(sa);

	if (pid_s == NULL || fds_s == NULL)
		return 0;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	pid = strtol(pid_s, &end, 10);
	if (*end != '\0' || pid != (long)getpid())
		return 0; /* meant for another process */
	nfds = strtol(fds_s, &end, 10);
	if (*end != '\0' || nfds < 0)
		return -EINVAL;
	if (nfds == 0)
		return 0;
	if (nfds != 1)
		return -EINVAL;
	if (getsockopt(LISTEN_FDS_START, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return -errno;
	if (type != SOCK_STREAM)
		return -EINVAL;
	if (getsockname(LISTEN_FDS_START, (struct sockaddr *)&sa, &salen) < 0)
		return -errno;
	if (sa.sun_family != AF_UNIX)
		return -EINVAL;
	rc = fcntl(LISTEN_FDS_START, F_GETFD);
	if (rc >= 0)
		fcntl(LISTEN_FDS_START, F_SETFD, rc | FD_CLOEXEC);
	return LISTEN_FDS_START;
}
