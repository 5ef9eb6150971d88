/*
 * test_tasks.c — the daemon's profile set: the shipped profiles against the
 * bundled model, inline profiles joining them, a profile for another model
 * refused, lookup with the default, and inline profiles from msgpack.
 */
#include <stdlib.h>

#include "daemon/engine/model.h"
#include "daemon/profile/profile.h"
#include "daemon/tasks.h"
#include "test.h"

static struct model m;

static bool
model_open(void)
{
	struct diag d = {{0}};
	char path[4096];

	if (m.hp.n_layers != 0)
		return true;
	snprintf(path, sizeof(path), "%s/models/tiny-tasks.gguf",
		 getenv("ADAINFER_SOURCE_ROOT") ? getenv("ADAINFER_SOURCE_ROOT") : ".");
	if (model_load(&m, path, &d) < 0)
		return false;
	model_hash(&m); /* what the shipped profiles' provenance names */
	return true;
}

static void
test_load_shipped_and_inline(void)
{
	struct conf c;
	struct profile_set *ps = NULL;
	struct diag d = {{0}};

	ASSERT(model_open());
	conf_defaults(&c);
	snprintf(c.profile_dir, sizeof(c.profile_dir), "%s/etc/profiles",
		 getenv("ADAINFER_SOURCE_ROOT") ? getenv("ADAINFER_SOURCE_ROOT") : ".");
	profile_init(&c.inline_profiles[0]);
	strlcpy_(c.inline_profiles[0].task, "demo", PROFILE_TASK_MAX);
	c.n_inline_profiles = 1;
	ASSERT_OK(tasks_load(&ps, &c, &m, &d));
	ASSERT_EQ(tasks_count(ps), 4); /* sst2, agnews, trec + demo */
	ASSERT(tasks_find(ps, "sst2") != NULL);
	ASSERT(tasks_find(ps, "demo") != NULL);
	ASSERT(tasks_find(ps, "no-such-task") == NULL); /* no default profile shipped */
	tasks_free(ps);
	/* the same task inline and in the directory: refused, naming it */
	strlcpy_(c.inline_profiles[0].task, "sst2", PROFILE_TASK_MAX);
	ASSERT_EQ(tasks_load(&ps, &c, &m, &d), -EEXIST);
	ASSERT_CONTAINS(d.msg, "sst2");
}

static void
test_other_model_refused(void)
{
	struct conf c;
	struct profile_set *ps = NULL;
	struct diag d = {{0}};
	struct profile *p = &c.inline_profiles[0];

	ASSERT(model_open());
	conf_defaults(&c);
	profile_init(p);
	strlcpy_(p->task, "x", PROFILE_TASK_MAX);
	p->prov.present = true;
	p->prov.n_layers = m.hp.n_layers;
	memset(p->prov.model_sha256, 'a', 64);
	c.n_inline_profiles = 1;
	ASSERT_EQ(tasks_load(&ps, &c, &m, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "sha256");
}

static void
test_inline_from_msgpack(void)
{
	/* {"classifier": "gap", "threshold": 0.25, "min_layer": 3} */
	static const char ok[] =
	    "\x83\xaa"
	    "classifier\xa3gap\xa9threshold\xcb\x3f\xd0\x00\x00\x00\x00\x00\x00"
	    "\xa9min_layer\x03";
	/* {"classifier": "gap", "threshold": "0.25"} */
	static const char quoted[] = "\x82\xaa"
				     "classifier\xa3gap\xa9threshold\xa4"
				     "0.25";
	msgpack_unpacked u;
	struct profile *p = NULL;
	struct diag d = {{0}};
	size_t off = 0;

	ASSERT(model_open());
	msgpack_unpacked_init(&u);
	ASSERT_EQ(msgpack_unpack_next(&u, ok, sizeof(ok) - 1, &off), MSGPACK_UNPACK_SUCCESS);
	ASSERT_OK(tasks_inline(&p, &u.data, &m, &d));
	ASSERT_NEAR(p->pol.clf.threshold, 0.25, 0);
	ASSERT_EQ(p->pol.min_layer, 3);
	tasks_free_profile(p);
	off = 0;
	ASSERT_EQ(msgpack_unpack_next(&u, quoted, sizeof(quoted) - 1, &off),
		  MSGPACK_UNPACK_SUCCESS);
	ASSERT_EQ(tasks_inline(&p, &u.data, &m, &d), -EINVAL);
	ASSERT_CONTAINS(d.msg, "quoted string");
	msgpack_unpacked_destroy(&u);
}

TEST_MAIN(TEST_CASE(test_load_shipped_and_inline), TEST_CASE(test_other_model_refused),
	  TEST_CASE(test_inline_from_msgpack))
