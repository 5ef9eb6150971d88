/*
 * bench_vs.c — adainfer-bench's --vs: llama-bench run as a child process on
 * the same files with the same -p/-n/-t, one repetition per round, and its
 * JSON output read back into the tests' samples. It leaves llama-bench's
 * process alone apart from reading its standard output (at most OUT_MAX
 * bytes are kept; the rest is drained so the child can finish), and it
 * never passes anything through a shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"

#define OUT_MAX ((size_t)16 << 20) /* bytes of llama-bench output read at most */

/* Runs argv with stdout into *out (NUL-terminated, caller frees), stderr to the terminal
 * or /dev/null. Returns the exit status, or a negative errno. */
static int
spawn_read(char *const argv[], bool quiet, char **out, size_t *len)
{
	posix_spawn_file_actions_t fa;
	int pfd[2], status = 0, rc;
	size_t cap = 65536, n = 0;
	char *buf;
	pid_t pid;

	*out = NULL;
	*len = 0;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	if (quiet)
		posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (rc != 0) {
		close(pfd[0]);
		return -rc;
	}
	buf = malloc(cap);
	for (;;) {
		ssize_t k;

		if (buf != NULL && cap - n < 4096 && cap < OUT_MAX) {
			char *nb = realloc(buf, cap * 2);

			if (nb == NULL) {
				free(buf);
				buf = NULL;
			} else {
				buf = nb;
				cap *= 2;
			}
		}
		if (buf == NULL || cap - n <= 1) {
			char sink[4096]; /* out of room: drain so the child can finish */

			k = read(pfd[0], sink, sizeof(sink));
		} else {
			k = read(pfd[0], buf + n, cap - n - 1);
			if (k > 0)
				n += (size_t)k;
		}
		if (k == 0 || (k < 0 && errno != EINTR))
			break;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (buf == NULL)
		return -ENOMEM;
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Does this llama-bench accept -ctk kv -ctv kv? (c392e509's refuses f32.) No model is loaded. */
bool
vs_accepts_kv(const char *vs, const char *kv)
{
	char *argv[] = {(char *)vs, "-ctk", (char *)kv, "-ctv", (char *)kv, "--help", NULL};
	char *out;
	size_t len;
	int rc = spawn_read(argv, true, &out, &len);

	free(out);
	return rc == 0;
}

static void
join_list(const uint32_t *v, int n, char *buf, size_t cap)
{
	size_t at = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && at < cap; i++)
		at += (size_t)snprintf(buf + at, cap - at, "%s%u", i ? "," : "", v[i]);
	if (n == 0)
		snprintf(buf, cap, "0");
}

/*
 * One llama-bench run (-r 1) on r->path with all the tests: appends one
 * sample to every test it reported. Returns 0 or -1 (message printed).
 */
int
vs_round(const struct opts *o, const struct host *h, struct model_run *r)
{
	char pp[MAX_VALUES * 8 + 8], tg[MAX_VALUES * 8 + 8], th[16];
	char *argv[24], *out = NULL;
	uint32_t pps[MAX_VALUES], tgs[MAX_VALUES];
	int n_pps = 0, n_tgs = 0, a = 0, rc;
	json_error_t jerr;
	json_t *root;
	size_t len, i;
	json_t *item;

	for (int k = 0; k < o->n_pp; k++)
		if (o->pp[k] > 0)
			pps[n_pps++] = o->pp[k];
	for (int k = 0; k < o->n_tg; k++)
		if (o->tg[k] > 0)
			tgs[n_tgs++] = o->tg[k];
	join_list(pps, n_pps, pp, sizeof(pp));
	join_list(tgs, n_tgs, tg, sizeof(tg));
	snprintf(th, sizeof(th), "%d", o->threads);
	argv[a++] = (char *)o->vs;
	argv[a++] = "-m";
	argv[a++] = (char *)r->path;
	argv[a++] = "-p";
	argv[a++] = pp;
	argv[a++] = "-n";
	argv[a++] = tg;
	argv[a++] = "-t";
	argv[a++] = th;
	argv[a++] = "-r";
	argv[a++] = "1";
	argv[a++] = "-o";
	argv[a++] = "json";
	if (h->vs_ctk) {
		argv[a++] = "-ctk";
		argv[a++] = (char *)o->kv;
		argv[a++] = "-ctv";
		argv[a++] = (char *)o->kv;
	}
	argv[a] = NULL;
	rc = spawn_read(argv, false, &out, &len);
	if (rc != 0) {
		fprintf(stderr, "adainfer-bench: %s on %s: %s %d\n", o->vs, r->path,
			rc < 0 ? "cannot run it: errno" : "exit status", rc < 0 ? -rc : rc);
		free(out);
		return -1;
	}
	root = json_loadb(out, len, 0, &jerr);
	free(out);
	if (!json_is_array(root)) {
		fprintf(stderr, "adainfer-bench: %s: output is not a JSON array (line %d: %s)\n",
			o->vs, jerr.line, jerr.text);
		json_decref(root);
		return -1;
	}
	json_array_foreach(root, i, item)
	{
		json_int_t np = json_integer_value(json_object_get(item, "n_prompt"));
		json_int_t ng = json_integer_value(json_object_get(item, "n_gen"));
		json_t *samples = json_object_get(item, "samples_ts");
		const char *tk = json_string_value(json_object_get(item, "type_k"));

		if (tk != NULL)
			snprintf(r->their_kv, sizeof(r->their_kv), "%s", tk);
		for (int k = 0; k < r->n_tests; k++) {
			struct test *t = &r->tests[k];
			bool match =
			    t->kind == TEST_PP ? (np == t->n && ng == 0) : (np == 0 && ng == t->n);

			if (match && json_array_size(samples) > 0 && t->n_theirs < o->reps)
				t->theirs[t->n_theirs++] =
				    json_number_value(json_array_get(samples, 0));
		}
	}
	json_decref(root);
	return 0;
}
