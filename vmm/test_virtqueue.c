// SPDX-License-Identifier: MIT
/*
 * Split virtqueues: the happy paths a driver takes, and every way a guest
 * can break the rules, which must leave the queue broken, never crash.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/virtqueue.h"

#define MEM_SIZE   (4u << 20)
#define QSIZE      8
#define DESC_GPA   0x10000
#define AVAIL_GPA  0x11000
#define USED_GPA   0x12000
#define BUF_GPA    0x20000
#define ALL_FEATURES ((1ULL << VIRTIO_F_INDIRECT_DESC) | (1ULL << VIRTIO_F_EVENT_IDX))

struct fx {
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_chain c;
	uint16_t avail_idx;
};

static uint8_t *gp(struct fx *f, uint64_t gpa)
{
	return f->mem.host + gpa;
}

static void set_desc_at(struct fx *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	uint8_t *d = gp(f, table + 16ULL * i);

	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
}

static void set_desc(struct fx *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	set_desc_at(f, DESC_GPA, i, addr, len, flags, next);
}

static void publish(struct fx *f, uint16_t head)
{
	uint16_t slot = f->avail_idx % QSIZE;

	memcpy(gp(f, AVAIL_GPA + 4 + 2 * slot), &head, 2);
	f->avail_idx++;
	memcpy(gp(f, AVAIL_GPA + 2), &f->avail_idx, 2);
}

static uint16_t used_idx(struct fx *f)
{
	uint16_t v;

	memcpy(&v, gp(f, USED_GPA + 2), 2);
	return v;
}

static void used_elem(struct fx *f, unsigned slot, uint32_t *id, uint32_t *len)
{
	memcpy(id, gp(f, USED_GPA + 4 + 8 * slot), 4);
	memcpy(len, gp(f, USED_GPA + 8 + 8 * slot), 4);
}

static int setup_features(void **state, uint64_t features)
{
	struct fx *f = test_calloc(1, sizeof(*f));

	assert_int_equal(guest_mem_init(&f->mem, MEM_SIZE), 0);
	assert_int_equal(virtq_enable(&f->vq, &f->mem, QSIZE, DESC_GPA, AVAIL_GPA, USED_GPA,
				      features), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_features(state, ALL_FEATURES);
}

static int setup_plain(void **state)
{
	return setup_features(state, 0);
}

static int teardown(void **state)
{
	struct fx *f = *state;

	guest_mem_destroy(&f->mem);
	test_free(f);
	return 0;
}

static void expect_broken(struct fx *f, const char *why)
{
	assert_int_equal(virtq_pop(&f->vq, &f->c), -EINVAL);
	assert_true(f->vq.broken);
	if (!strstr(f->vq.why, why))
		print_error("why is '%s', wanted '%s'\n", f->vq.why, why);
	assert_non_null(strstr(f->vq.why, why));
	/* Broken stays broken. */
	assert_int_equal(virtq_pop(&f->vq, &f->c), -EINVAL);
	assert_false(virtq_enable_notify(&f->vq));
}

static void test_empty(void **state)
{
	struct fx *f = *state;

	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
	assert_false(f->vq.broken);
}

static void test_chain_and_used(void **state)
{
	struct fx *f = *state;
	uint32_t id, len;
	uint8_t hdr[24], got[8];

	for (unsigned i = 0; i < 24; i++)
		gp(f, BUF_GPA)[i] = (uint8_t)i;
	set_desc(f, 0, BUF_GPA, 10, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA + 10, 14, VIRTQ_DESC_F_NEXT, 5);
	set_desc(f, 5, BUF_GPA + 0x1000, 100, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, 3, BUF_GPA + 0x2000, 1, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.head, 0);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.nr_in, 2);
	assert_int_equal(f->c.out_bytes, 24);
	assert_int_equal(f->c.in_bytes, 101);
	assert_ptr_equal(f->c.seg[2].host, gp(f, BUF_GPA + 0x1000));
	/* Reads and writes cross buffer boundaries by byte offset. */
	assert_int_equal(virtq_chain_read(&f->c, 0, hdr, sizeof(hdr)), 24);
	for (unsigned i = 0; i < 24; i++)
		assert_int_equal(hdr[i], i);
	assert_int_equal(virtq_chain_read(&f->c, 20, hdr, 10), 4);
	memcpy(got, "ABCDEFGH", 8);
	assert_int_equal(virtq_chain_write(&f->c, 96, got, 8), 5);
	assert_memory_equal(gp(f, BUF_GPA + 0x1000 + 96), "ABCD", 4);
	assert_int_equal(*gp(f, BUF_GPA + 0x2000), 'E');
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);

	virtq_push(&f->vq, 0, 101);
	assert_int_equal(used_idx(f), 1);
	used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 101);
}

static void test_wraparound(void **state)
{
	struct fx *f = *state;

	set_desc(f, 2, BUF_GPA, 16, VIRTQ_DESC_F_WRITE, 0);
	/* Several times around the rings, and across the 16-bit index wrap. */
	for (unsigned round = 0; round < 5 * QSIZE; round++) {
		uint32_t id, len;

		publish(f, 2);
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
		assert_int_equal(f->c.head, 2);
		virtq_push(&f->vq, 2, round);
		used_elem(f, round % QSIZE, &id, &len);
		assert_int_equal(len, round);
	}
	assert_int_equal(used_idx(f), 5 * QSIZE);
}

static void test_index_wrap_16bit(void **state)
{
	struct fx *f = *state;

	/* A queue enabled at avail 0xfffe by a driver... the device starts at 0. */
	set_desc(f, 1, BUF_GPA, 16, 0, 0);
	f->vq.last_avail = 0xfffe;
	f->vq.used_idx = 0xfffe;
	f->avail_idx = 0xfffe;
	for (int i = 0; i < 4; i++) {
		publish(f, 1);
		assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
		virtq_push(&f->vq, 1, 0);
	}
	assert_int_equal(used_idx(f), 2);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 0);
}

static void test_indirect(void **state)
{
	struct fx *f = *state;
	uint64_t table = BUF_GPA + 0x8000;

	set_desc_at(f, table, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
	set_desc_at(f, table, 2, BUF_GPA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc_at(f, table, 1, BUF_GPA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	/* A direct buffer first, then the indirect table. */
	set_desc(f, 4, BUF_GPA + 0x800, 8, VIRTQ_DESC_F_NEXT, 6);
	set_desc(f, 6, table, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 4);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out, 2);
	assert_int_equal(f->c.nr_in, 2);
	assert_int_equal(f->c.out_bytes, 24);
	assert_int_equal(f->c.in_bytes, 513);
}

static void test_zero_length_skipped(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, 0xffffffffffULL, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(f, 2, BUF_GPA, 4, VIRTQ_DESC_F_WRITE, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out + f->c.nr_in, 1);
}

static void test_loop(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	publish(f, 0);
	expect_broken(f, "loops");
}

static void test_self_loop_indirect(void **state)
{
	struct fx *f = *state;
	uint64_t table = BUF_GPA + 0x8000;

	set_desc_at(f, table, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "loops");
}

static void test_bad_head(void **state)
{
	struct fx *f = *state;

	publish(f, QSIZE);
	expect_broken(f, "out of range");
}

static void test_bad_next(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 200);
	publish(f, 0);
	expect_broken(f, "out of range");
}

static void test_buffer_outside_ram(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, MEM_SIZE - 4, 8, 0, 0);
	publish(f, 0);
	expect_broken(f, "not in guest RAM");
}

static void test_buffer_wraps_address_space(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, UINT64_MAX - 3, 8, 0, 0);
	publish(f, 0);
	expect_broken(f, "not in guest RAM");
}

static void test_readable_after_writable(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, 1, BUF_GPA, 8, 0, 0);
	publish(f, 0);
	expect_broken(f, "readable buffer follows a writable");
}

static void test_indirect_not_negotiated(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA + 0x8000, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "not negotiated");
}

static void test_nested_indirect(void **state)
{
	struct fx *f = *state;
	uint64_t table = BUF_GPA + 0x8000;

	set_desc_at(f, table, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, 0, table, 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "inside an indirect");
}

static void test_indirect_and_next(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA + 0x8000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
	publish(f, 0);
	expect_broken(f, "both INDIRECT and NEXT");
}

static void test_indirect_bad_len(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA + 0x8000, 20, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "indirect table of 20 bytes");
}

static void test_indirect_too_big(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, BUF_GPA, (VIRTQ_MAX_SEGS + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "indirect table of");
}

static void test_indirect_table_outside_ram(void **state)
{
	struct fx *f = *state;

	set_desc(f, 0, MEM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	expect_broken(f, "is not in RAM");
}

static void test_avail_jump(void **state)
{
	struct fx *f = *state;
	uint16_t idx = QSIZE + 1;

	memcpy(gp(f, AVAIL_GPA + 2), &idx, 2);
	expect_broken(f, "moved by 9");
}

/* The longest chain the segment array holds is fine; one more is not. */
static void test_max_segments(void **state)
{
	struct fx *f = *state;
	uint64_t table = BUF_GPA + 0x10000;

	for (unsigned i = 0; i < VIRTQ_MAX_SEGS; i++)
		set_desc_at(f, table, i, BUF_GPA, 8,
			    i + 1 < VIRTQ_MAX_SEGS ? VIRTQ_DESC_F_NEXT : 0, (uint16_t)(i + 1));
	set_desc(f, 0, table, VIRTQ_MAX_SEGS * 16, VIRTQ_DESC_F_INDIRECT, 0);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	assert_int_equal(f->c.nr_out, VIRTQ_MAX_SEGS);

	/* A direct buffer before the full table is one too many. */
	set_desc(f, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	publish(f, 1);
	expect_broken(f, "more than");
}

static void test_enable_checks(void **state)
{
	struct fx *f = *state;
	struct virtq vq;

	assert_int_equal(virtq_enable(&vq, &f->mem, 6, DESC_GPA, AVAIL_GPA, USED_GPA, 0), -EINVAL);
	assert_non_null(strstr(vq.why, "power of two"));
	assert_int_equal(virtq_enable(&vq, &f->mem, 0, DESC_GPA, AVAIL_GPA, USED_GPA, 0), -EINVAL);
	assert_int_equal(virtq_enable(&vq, &f->mem, 8, DESC_GPA + 8, AVAIL_GPA, USED_GPA, 0),
			 -EINVAL);
	assert_non_null(strstr(vq.why, "misaligned"));
	assert_int_equal(virtq_enable(&vq, &f->mem, 8, DESC_GPA, AVAIL_GPA + 1, USED_GPA, 0),
			 -EINVAL);
	assert_int_equal(virtq_enable(&vq, &f->mem, 8, DESC_GPA, AVAIL_GPA, USED_GPA + 2, 0),
			 -EINVAL);
	assert_int_equal(virtq_enable(&vq, &f->mem, 8, MEM_SIZE - 64, AVAIL_GPA, USED_GPA, 0),
			 -EINVAL);
	assert_non_null(strstr(vq.why, "outside guest RAM"));
	assert_int_equal(virtq_enable(&vq, &f->mem, 8, DESC_GPA, AVAIL_GPA, 0xfffffffffff0ULL, 0),
			 -EINVAL);
	assert_false(vq.ready);
	/* Nothing pops from a queue that is not ready. */
	assert_int_equal(virtq_pop(&vq, &f->c), -EINVAL);
	virtq_reset(&vq);
	assert_int_equal(virtq_pop(&vq, &f->c), 0);
}

static void test_notify_flags(void **state)
{
	struct fx *f = *state;
	uint16_t flags;

	set_desc(f, 0, BUF_GPA, 8, 0, 0);
	virtq_disable_notify(&f->vq);
	memcpy(&flags, gp(f, USED_GPA), 2);
	assert_int_equal(flags, VIRTQ_USED_F_NO_NOTIFY);
	assert_false(virtq_enable_notify(&f->vq));
	memcpy(&flags, gp(f, USED_GPA), 2);
	assert_int_equal(flags, 0);
	publish(f, 0);
	/* Work that arrived while notifications were off is seen. */
	virtq_disable_notify(&f->vq);
	assert_true(virtq_enable_notify(&f->vq));

	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	virtq_push(&f->vq, 0, 0);
	assert_true(virtq_should_notify(&f->vq));
	flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	memcpy(gp(f, AVAIL_GPA), &flags, 2);
	assert_false(virtq_should_notify(&f->vq));
}

static void test_event_idx(void **state)
{
	struct fx *f = *state;
	uint16_t used_event, avail_event;

	set_desc(f, 0, BUF_GPA, 8, 0, 0);
	/* The driver wants an interrupt when used_idx passes 1 (i.e. after the 2nd). */
	used_event = 1;
	memcpy(gp(f, AVAIL_GPA + 4 + 2 * QSIZE), &used_event, 2);
	for (int i = 0; i < 3; i++)
		publish(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	/* avail_event follows our progress. */
	memcpy(&avail_event, gp(f, USED_GPA + 4 + 8 * QSIZE), 2);
	assert_int_equal(avail_event, 1);
	virtq_push(&f->vq, 0, 0);
	/* The first decision after enabling is always yes (nothing signalled yet). */
	assert_true(virtq_should_notify(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	virtq_push(&f->vq, 0, 0);             /* used 2: crossed event 1 */
	assert_true(virtq_should_notify(&f->vq));
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	virtq_push(&f->vq, 0, 0);             /* used 3: event still 1 */
	assert_false(virtq_should_notify(&f->vq));
	used_event = 5;
	memcpy(gp(f, AVAIL_GPA + 4 + 2 * QSIZE), &used_event, 2);
	assert_false(virtq_should_notify(&f->vq));  /* nothing new */

	/* While notifications are off, avail_event is left alone. */
	virtq_disable_notify(&f->vq);
	publish(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->c), 1);
	memcpy(&avail_event, gp(f, USED_GPA + 4 + 8 * QSIZE), 2);
	assert_int_equal(avail_event, 3);
	assert_false(virtq_enable_notify(&f->vq));
	memcpy(&avail_event, gp(f, USED_GPA + 4 + 8 * QSIZE), 2);
	assert_int_equal(avail_event, 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_and_used, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_index_wrap_16bit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_self_loop_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_wraps_address_space, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readable_after_writable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_not_negotiated, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_nested_indirect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_and_next, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_bad_len, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_table_outside_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_avail_jump, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_checks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_flags, setup_plain, teardown),
		cmocka_unit_test_setup_teardown(test_event_idx, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
