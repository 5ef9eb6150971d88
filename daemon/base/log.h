/*
 * log.h — ntpd's logging vocabulary. One line per event on stderr; when
 * running under journald (JOURNAL_STREAM set) each line carries a <N> syslog
 * priority prefix so journald records the level.
 */
#ifndef ADAINFER_LOG_H
#define ADAINFER_LOG_H

enum log_level {
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7
};

/** Sets the program name and the most verbose level printed; detects journald. */
void log_init(const char *progname, enum log_level max_level);
/** Changes the level; "error", "warning", "info", "debug". Returns 0 or -EINVAL. */
int log_parse_level(const char *name, enum log_level *out);
void log_set_level(enum log_level max_level);

void log_warn(const char *fmt, ...)
    __attribute__((format(printf, 1, 2))); /* adds strerror(errno) */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* main.c only */
_Noreturn void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* main.c only */

#endif
