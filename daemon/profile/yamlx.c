/*
 * yamlx.c — the YAML reading rules of yamlx.h. Input is untrusted (files,
 * inline profiles from requests): nothing here aborts or trusts a length.
 */
#include "yamlx.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
yx_err(const struct yx *y, const yaml_node_t *n, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return diag_set(y->d, -EINVAL, "%s:%zu:%zu: %s", y->file, n->start_mark.line + 1,
			n->start_mark.column + 1, msg);
}

const char *
yx_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

int
yx_scalar(const struct yx *y, const yaml_node_t *n, const char *key, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return yx_err(y, n, "'%s' must be a scalar, got %s", key, yx_kind(n));
	*out = (const char *)n->data.scalar.value;
	return 0;
}

/* The text of a plain scalar, or an error saying what n is instead. */
static int
plain(const struct yx *y, const yaml_node_t *n, const char *key, const char *what, const char **out)
{
	if (n->type != YAML_SCALAR_NODE)
		return yx_err(y, n, "'%s' must be %s, got %s", key, what, yx_kind(n));
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return yx_err(y, n, "'%s' must be %s, got a quoted string", key, what);
	*out = (const char *)n->data.scalar.value;
	return 0;
}

int
yx_double(const struct yx *y, const yaml_node_t *n, const char *key, double lo, double hi,
	  double *out)
{
	const char *s = NULL;
	char *end;
	double v;
	int rc;

	if ((rc = plain(y, n, key, "a number", &s)) < 0)
		return rc;
	errno = 0;
	v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v))
		return yx_err(y, n, "'%s' must be a finite number, not '%s'", key, s);
	if (v < lo || v > hi)
		return yx_err(y, n, "'%s' = %g is out of range [%g, %g]", key, v, lo, hi);
	*out = v;
	return 0;
}

int
yx_uint(const struct yx *y, const yaml_node_t *n, const char *key, uint64_t lo, uint64_t hi,
	int base, uint64_t *out)
{
	const char *s = NULL;
	char *end;
	unsigned long long v;
	int rc;

	if (base == 8 && n->type == YAML_SCALAR_NODE) /* a mode: octal digits, quoted or not */
		s = (const char *)n->data.scalar.value;
	else if ((rc = plain(y, n, key, "a non-negative integer", &s)) < 0)
		return rc;
	if (!isdigit((unsigned char)*s))
		return yx_err(y, n, "'%s' must be a non-negative integer, not '%s'", key, s);
	errno = 0;
	v = strtoull(s, &end, base);
	if (*end != '\0')
		return yx_err(y, n, "'%s' must be a non-negative integer, not '%s'", key, s);
	if (errno == ERANGE || v < lo || v > hi)
		return yx_err(y, n, "'%s' = %s is out of range [%llu, %llu]", key, s,
			      (unsigned long long)lo, (unsigned long long)hi);
	*out = v;
	return 0;
}

int
yx_walk(const struct yx *y, yaml_node_t *map, const char *what, const char *const *names,
	int n_names, yx_pair_fn fn, void *ud, unsigned *seen_out)
{
	unsigned seen = 0;
	int rc;

	if (map == NULL)
		return diag_set(y->d, -EINVAL, "%s: %s is missing", y->file, what);
	if (map->type != YAML_MAPPING_NODE)
		return yx_err(y, map, "%s must be a mapping, got %s", what, yx_kind(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(y->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(y->doc, p->value);
		const char *ks;
		int i;

		if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE)
			return yx_err(y, k ? k : map, "keys of %s must be scalars", what);
		ks = (const char *)k->data.scalar.value;
		for (i = 0; i < n_names; i++)
			if (strcmp(ks, names[i]) == 0)
				break;
		if (i == n_names)
			return yx_err(y, k, "unknown key '%s' in %s", ks, what);
		if (seen & (1u << i))
			return yx_err(y, k, "duplicate key '%s' in %s", ks, what);
		seen |= 1u << i;
		if ((rc = fn(y, v, i, ud)) < 0)
			return rc;
	}
	if (seen_out != NULL)
		*seen_out = seen;
	return 0;
}

int
yx_load(yaml_parser_t *ps, yaml_document_t *doc, const char *name, struct diag *d)
{
	if (yaml_parser_load(ps, doc))
		return 0;
	return diag_set(d, -EINVAL, "%s:%zu:%zu: %s%s%s", name, ps->problem_mark.line + 1,
			ps->problem_mark.column + 1, ps->problem ? ps->problem : "bad YAML",
			ps->context ? " " : "", ps->context ? ps->context : "");
}
