// SPDX-License-Identifier: MIT
/* Timer queue ordering and the I/O bus's dispatch rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmm/io.h"
#include "vmm/timer.h"

static int order[8], nr_order;

static void cb(void *opaque, uint64_t now)
{
	order[nr_order++] = (int)(intptr_t)opaque;
}

static void test_order(void **state)
{
	struct timer_queue q;
	struct vtimer a, b, c;

	(void)state;
	nr_order = 0;
	timer_queue_init(&q, NULL, NULL);
	vtimer_init(&a, &q, cb, (void *)1);
	vtimer_init(&b, &q, cb, (void *)2);
	vtimer_init(&c, &q, cb, (void *)3);
	vtimer_mod(&a, 300);
	vtimer_mod(&b, 100);
	vtimer_mod(&c, 200);
	vtimer_mod(&a, 150);   /* re-arming moves it */
	vtimer_del(&c);
	assert_false(vtimer_pending(&c));
	timer_queue_set_time(&q, 1000);
	assert_int_equal(timer_queue_run(&q), 2);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 1);
	assert_false(vtimer_pending(&a));
	timer_queue_destroy(&q);
}

static int fired;
static void real_cb(void *opaque, uint64_t now) { __atomic_add_fetch(&fired, 1, __ATOMIC_SEQ_CST); }

static void test_thread(void **state)
{
	struct timer_queue q;
	struct vtimer t;

	(void)state;
	timer_queue_init(&q, timer_clock_monotonic, NULL);
	assert_int_equal(timer_queue_start(&q), 0);
	vtimer_init(&t, &q, real_cb, NULL);
	vtimer_mod(&t, timer_monotonic_ns() + 1000000);
	for (int i = 0; i < 2000 && !__atomic_load_n(&fired, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	assert_int_equal(fired, 1);
	timer_queue_destroy(&q);
	/* A manual-clock queue cannot run in real time. */
	timer_queue_init(&q, NULL, NULL);
	assert_int_equal(timer_queue_start(&q), -EINVAL);
	timer_queue_destroy(&q);
}

static uint64_t last_off, last_val;
static void dev_read(void *dev, uint64_t off, unsigned len, uint64_t *data) { *data = 0x1122334455667788ULL; last_off = off; }
static void dev_write(void *dev, uint64_t off, unsigned len, uint64_t data) { last_off = off; last_val = data; }

static void test_bus(void **state)
{
	struct io_bus bus;
	struct io_range r = { .space = IO_SPACE_PIO, .base = 0x40, .size = 4,
			      .read = dev_read, .write = dev_write };
	struct io_req req = { .space = IO_SPACE_PIO, .len = 2, .addr = 0x42 };

	(void)state;
	io_bus_init(&bus);
	assert_int_equal(io_bus_register(&bus, &r), 0);
	r.base = 0x43;
	assert_int_equal(io_bus_register(&bus, &r), -EEXIST);
	r.space = IO_SPACE_MMIO;   /* same numbers, other space: fine */
	assert_int_equal(io_bus_register(&bus, &r), 0);
	assert_true(io_bus_dispatch(&bus, &req));
	assert_int_equal(last_off, 2);
	assert_int_equal(req.data, 0x7788);   /* truncated to the access size */
	req.is_write = 1;
	req.data = 0xabcd;
	assert_true(io_bus_dispatch(&bus, &req));
	assert_int_equal(last_val, 0xabcd);
	/* Nothing there reads as all ones. */
	req = (struct io_req){ .space = IO_SPACE_PIO, .len = 1, .addr = 0x80 };
	assert_false(io_bus_dispatch(&bus, &req));
	assert_int_equal(req.data, 0xff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_thread),
		cmocka_unit_test(test_bus),
	};

	return cmocka_run_group_tests_name("timer_io", tests, NULL, NULL);
}
