/* vfile.c — see vfile.h. */
#include "vfile.h"

#include <string.h>

int
vfile_open(struct vfile *f, const char *path, struct diag *d)
{
	int rc;

	memset(f, 0, sizeof(*f));
	if ((rc = mapping_open(&f->map, path, d)) < 0)
		return rc;
	if ((rc = gguf_parse(&f->g, f->map.base, f->map.size, path, d)) < 0) {
		mapping_close(&f->map);
		return rc;
	}
	if ((rc = tokenizer_init(&f->v, &f->g, d)) < 0) {
		gguf_deinit(&f->g);
		mapping_close(&f->map);
	}
	return rc;
}

void
vfile_close(struct vfile *f)
{
	tokenizer_deinit(&f->v);
	gguf_deinit(&f->g);
	mapping_close(&f->map);
}
