/*
 * vfile.h — a vocabulary-only GGUF opened for tokenizer tests: its mapping,
 * parsed metadata and the vocabulary built from it.
 */
#ifndef ADAINFER_TEST_VFILE_H
#define ADAINFER_TEST_VFILE_H

#include "daemon/engine/gguf.h"
#include "daemon/engine/mapping.h"
#include "daemon/engine/tokenizer.h"

struct vfile {
	struct mapping map;
	struct gguf g;
	struct vocab v;
};

/** Maps, parses and loads path's vocabulary. Returns 0 or a negative errno (d says why). */
int vfile_open(struct vfile *f, const char *path, struct diag *d);
void vfile_close(struct vfile *f);

#endif
