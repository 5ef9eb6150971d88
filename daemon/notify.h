/*
 * notify.h — the systemd side of the process, written by hand (no
 * libsystemd): readiness messages to $NOTIFY_SOCKET and the listening
 * socket passed by socket activation ($LISTEN_FDS / $LISTEN_PID).
 */
#ifndef ADAINFER_NOTIFY_H
#define ADAINFER_NOTIFY_H

/**
 * Sends state (e.g. "READY=1", "STOPPING=1") to $NOTIFY_SOCKET as one
 * datagram. Returns 0 (also when the variable is unset: nothing to do) or
 * a negative errno. Abstract socket names ('@' prefix) are supported.
 */
int notify_send(const char *state);

/**
 * The socket systemd passed, if any: returns its fd (3) when $LISTEN_PID is
 * our pid and $LISTEN_FDS is 1, 0 when nothing was passed, or -EINVAL when
 * the variables are set but unusable (more than one fd, not a Unix stream
 * socket). Unsets LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES so children do not
 * inherit them, and marks the fd close-on-exec.
 */
int notify_listen_fd(void);

#endif
