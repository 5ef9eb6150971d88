/*
 * test_scheduler.c — admission and fairness of the request queue without a
 * model: a scheduler with no workers, requests queued by three clients and
 * taken back the way a worker takes them.
 */
#include <uv.h>

#include "daemon/scheduler.h"
#include "test.h"

static void
drop(struct sched_out *o, void *ud)
{
	(void)ud;
	req_free(o->req);
	sched_out_free(o);
}

static struct req *
req_for(struct sched_client *c, uint32_t msgid)
{
	struct req *r = req_new();

	r->client = c;
	r->msgid = msgid;
	return r;
}

/* Clients take turns: a long pipeline from one cannot starve the others. */
static void
test_round_robin(void)
{
	static const uint32_t want[] = {11, 21, 31, 12, 22, 13};
	struct sched_client a = {0}, b = {0}, c = {0};
	struct sched s;
	uv_loop_t loop;

	uv_loop_init(&loop);
	ASSERT_OK(sched_init(&s, &loop, 0, 1, 16, drop, NULL));
	ASSERT_OK(sched_submit(&s, req_for(&a, 11)));
	ASSERT_OK(sched_submit(&s, req_for(&a, 12)));
	ASSERT_OK(sched_submit(&s, req_for(&a, 13)));
	ASSERT_OK(sched_submit(&s, req_for(&b, 21)));
	ASSERT_OK(sched_submit(&s, req_for(&b, 22)));
	ASSERT_OK(sched_submit(&s, req_for(&c, 31)));
	ASSERT_EQ(sched_queued(&s), 6);
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		struct req *r = sched_take(&s);

		ASSERT(r != NULL);
		ASSERT_EQ(r->msgid, want[i]);
		req_free(r);
	}
	ASSERT(sched_take(&s) == NULL);
	ASSERT_EQ(sched_queued(&s), 0);
	/* a client that comes back joins the end of the line */
	ASSERT_OK(sched_submit(&s, req_for(&b, 23)));
	ASSERT_OK(sched_submit(&s, req_for(&a, 14)));
	{
		struct req *r1 = sched_take(&s), *r2 = sched_take(&s);
		uint32_t id1 = r1 ? r1->msgid : 0, id2 = r2 ? r2->msgid : 0;

		req_free(r1);
		req_free(r2);
		ASSERT_EQ(id1, 23);
		ASSERT_EQ(id2, 14);
	}
	sched_deinit(&s, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_OK(uv_loop_close(&loop));
}

/* max_queued waiting requests, then -EBUSY (the caller keeps the request); a take frees a place. */
static void
test_admission(void)
{
	struct sched_client a = {0}, b = {0};
	struct sched s;
	uv_loop_t loop;
	struct req *extra;

	uv_loop_init(&loop);
	ASSERT_OK(sched_init(&s, &loop, 0, 1, 3, drop, NULL));
	ASSERT_OK(sched_submit(&s, req_for(&a, 1)));
	ASSERT_OK(sched_submit(&s, req_for(&a, 2)));
	ASSERT_OK(sched_submit(&s, req_for(&b, 3)));
	extra = req_for(&b, 4);
	ASSERT_EQ(sched_submit(&s, extra), -EBUSY);
	ASSERT_EQ(sched_queued(&s), 3);
	req_free(sched_take(&s));
	ASSERT_OK(sched_submit(&s, extra));
	sched_set_max_queued(&s, 1); /* a reload lowering the bound: nothing queued is dropped */
	ASSERT_EQ(sched_queued(&s), 3);
	extra = req_for(&a, 5);
	ASSERT_EQ(sched_submit(&s, extra), -EBUSY);
	req_free(extra);
	/* deinit answers what is still queued (shutting_down) through on_out */
	sched_deinit(&s, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	ASSERT_OK(uv_loop_close(&loop));
}

TEST_MAIN(TEST_CASE(test_round_robin), TEST_CASE(test_admission))
