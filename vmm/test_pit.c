// SPDX-License-Identifier: MIT
/* Unit tests for the 8254 PIT, driven by the timer queue's manual clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "vmm/pit.h"

#define NSEC 1000000000ULL

struct fake_irq {
	int level;
	unsigned rises;
	unsigned calls;
	unsigned bad_gsi;
	uint64_t last_rise_ns;
	struct timer_queue *q;
};

struct fx {
	struct timer_queue q;
	struct pit pit;
	struct fake_irq irq;
	struct irq_sink sink;
};

static void fake_set_irq(void *ctx, unsigned gsi, int level)
{
	struct fake_irq *f = ctx;

	f->calls++;
	if (gsi != PIT_IRQ)
		f->bad_gsi++;
	if (level && !f->level) {
		f->rises++;
		f->last_rise_ns = timer_queue_now(f->q);
	}
	f->level = level;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	timer_queue_init(&f->q, NULL, NULL);
	f->irq.q = &f->q;
	f->sink.set_irq = fake_set_irq;
	f->sink.ctx = &f->irq;
	assert_int_equal(pit_init(&f->pit, &f->q, &f->sink), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	assert_int_equal(f->irq.bad_gsi, 0);
	pit_destroy(&f->pit);
	timer_queue_destroy(&f->q);
	free(f);
	return 0;
}

/* Time at which tick k (counted from a load at time 0) has happened. */
static uint64_t tick_ns(uint64_t k)
{
	return (uint64_t)(((unsigned __int128)k * NSEC + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ);
}

static void advance(struct fx *f, uint64_t t)
{
	timer_queue_set_time(&f->q, t);
	timer_queue_run(&f->q);
}

static void program(struct fx *f, unsigned ch, uint8_t ctrl, uint16_t count)
{
	pit_outb(&f->pit, 0x43, ctrl);
	pit_outb(&f->pit, (uint16_t)(0x40 + ch), count & 0xff);
	pit_outb(&f->pit, (uint16_t)(0x40 + ch), count >> 8);
}

static uint16_t pit_latch_read(struct pit *p, unsigned ch)
{
	uint16_t lo, hi;

	pit_outb(p, 0x43, (uint8_t)(ch << 6));
	lo = pit_inb(p, (uint16_t)(0x40 + ch));
	hi = pit_inb(p, (uint16_t)(0x40 + ch));
	return (uint16_t)(lo | hi << 8);
}

static uint16_t latch_read(struct fx *f, unsigned ch)
{
	return pit_latch_read(&f->pit, ch);
}

static void test_mode2_period(void **state)
{
	struct fx *f = *state;
	const uint64_t n = 1193;	/* ~1 ms */
	unsigned rises;

	program(f, 0, 0x34, n);
	/* OUT goes high on programming: that is the one rising edge so far. */
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(f->irq.level, 1);
	rises = f->irq.rises;
	/* Step 50 us at a time over 200 periods. */
	for (uint64_t t = 0; t <= tick_ns(200 * n); t += 50000) {
		advance(f, t);
		/* Edges must land within one step of the exact period. */
		if (f->irq.rises != rises) {
			uint64_t k = f->irq.rises - 1;

			assert_true(f->irq.last_rise_ns >= tick_ns(k * n));
			assert_true(f->irq.last_rise_ns < tick_ns(k * n) + 50000);
			rises = f->irq.rises;
		}
	}
	advance(f, tick_ns(200 * n));
	assert_int_equal(f->irq.rises - 1, 200);
	/* No drift: the deadline of period k is computed from the start. */
	assert_true(vtimer_pending(&f->pit.timer));
	assert_int_equal(f->pit.timer.deadline_ns, tick_ns(201 * n));
	/* Counter runs n..1 within each period. */
	advance(f, tick_ns(200 * n + 10));
	assert_int_equal(latch_read(f, 0), n - 10);
}

static void test_mode2_drift_free_long(void **state)
{
	struct fx *f = *state;
	const uint64_t n = 11932;	/* ~10 ms: period not an integer of ns */

	program(f, 0, 0x34, n);
	for (uint64_t k = 1; k <= 5000; k++) {
		assert_int_equal(f->pit.timer.deadline_ns, tick_ns(k * n));
		advance(f, f->pit.timer.deadline_ns);
	}
	assert_int_equal(f->irq.rises, 5001);
}

static void test_mode2_catch_up(void **state)
{
	struct fx *f = *state;
	const uint64_t n = 1193;
	int ran;

	program(f, 0, 0x34, n);
	advance(f, tick_ns(n));
	assert_int_equal(f->irq.rises, 2);
	/* The host sleeps for 1000 periods: one interrupt, not 1000. */
	timer_queue_set_time(&f->q, tick_ns(1001 * n) + 5);
	ran = timer_queue_run(&f->q);
	assert_int_equal(ran, 1);
	assert_int_equal(f->irq.rises, 3);
	/* ... and the schedule stays on the original grid. */
	assert_int_equal(f->pit.timer.deadline_ns, tick_ns(1002 * n));
	advance(f, tick_ns(1002 * n));
	assert_int_equal(f->irq.rises, 4);
}

static void test_mode2_new_count_next_period(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x34, 1000);
	advance(f, tick_ns(500));
	/* Mid-period write: the running period keeps its length. */
	pit_outb(&f->pit, 0x40, 2000 & 0xff);
	pit_outb(&f->pit, 0x40, 2000 >> 8);
	assert_int_equal(latch_read(f, 0), 500);
	advance(f, tick_ns(1000));
	assert_int_equal(f->irq.rises, 2);
	assert_int_equal(latch_read(f, 0), 2000);
	advance(f, tick_ns(2999));
	assert_int_equal(f->irq.rises, 2);
	advance(f, tick_ns(3000));
	assert_int_equal(f->irq.rises, 3);
	advance(f, tick_ns(5000));
	assert_int_equal(f->irq.rises, 4);
}

static void test_mode2_reload_seen_late(void **state)
{
	struct fx *f = *state;

	/* A read after the reload boundary must not swallow its edge. */
	program(f, 0, 0x34, 1000);
	advance(f, tick_ns(10));
	pit_outb(&f->pit, 0x40, 0x00);
	pit_outb(&f->pit, 0x40, 0x08);	/* 2048 */
	timer_queue_set_time(&f->q, tick_ns(1100));
	assert_int_equal(latch_read(f, 0), 2048 - 100);
	timer_queue_run(&f->q);
	assert_int_equal(f->irq.rises, 2);
	advance(f, tick_ns(1000 + 2048));
	assert_int_equal(f->irq.rises, 3);
}

static void test_mode3_square_wave(void **state)
{
	struct fx *f = *state;
	const uint64_t n = 100;
	uint64_t t0;

	program(f, 0, 0x36, n);
	for (uint64_t k = 1; k <= 50; k++)
		advance(f, tick_ns(k * n));
	assert_int_equal(f->irq.rises, 51);
	/* Channel 2 in mode 3 shows OUT on port 0x61 bit 5: high then low. */
	t0 = tick_ns(50 * n);
	pit_outb(&f->pit, 0x61, 0x01);
	program(f, 2, 0xb6, 10);
	timer_queue_set_time(&f->q, t0 + tick_ns(2));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	assert_int_equal(latch_read(f, 2), 6);
	timer_queue_set_time(&f->q, t0 + tick_ns(5));
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	assert_int_equal(latch_read(f, 2), 10);
	timer_queue_set_time(&f->q, t0 + tick_ns(9));
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	timer_queue_set_time(&f->q, t0 + tick_ns(10));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	/* Gate low forces OUT high and holds; gate high restarts the count. */
	timer_queue_set_time(&f->q, t0 + tick_ns(16));
	pit_outb(&f->pit, 0x61, 0x00);
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	pit_outb(&f->pit, 0x61, 0x01);
	assert_int_equal(latch_read(f, 2), 10);
	timer_queue_set_time(&f->q, t0 + tick_ns(16) + tick_ns(5));
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
}

static void test_mode0_countdown(void **state)
{
	struct fx *f = *state;
	const uint16_t n = 0x1000;

	program(f, 0, 0x30, n);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(latch_read(f, 0), n);
	for (uint64_t k = 1; k < n; k += 97) {
		advance(f, tick_ns(k));
		assert_int_equal(latch_read(f, 0), n - k);
		assert_int_equal(f->irq.level, 0);
	}
	advance(f, tick_ns(n - 1));
	assert_int_equal(f->irq.rises, 0);
	advance(f, tick_ns(n));
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(f->irq.level, 1);
	assert_false(vtimer_pending(&f->pit.timer));
	/* The counter wraps and keeps counting; OUT stays high. */
	advance(f, tick_ns(n + 5));
	assert_int_equal(latch_read(f, 0), 0xfffb);
	advance(f, tick_ns(n + 70000));
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(f->irq.level, 1);
}

static void test_mode0_oneshot_rearm(void **state)
{
	struct fx *f = *state;
	uint64_t t;

	/* Linux's oneshot clockevent: control word once, then counts. */
	program(f, 0, 0x30, 100);
	advance(f, tick_ns(100));
	assert_int_equal(f->irq.rises, 1);
	t = tick_ns(100);
	pit_outb(&f->pit, 0x40, 50);
	assert_int_equal(f->irq.level, 0);	/* first byte: OUT low */
	assert_false(vtimer_pending(&f->pit.timer));
	pit_outb(&f->pit, 0x40, 0);
	assert_true(vtimer_pending(&f->pit.timer));
	advance(f, t + tick_ns(49));
	assert_int_equal(f->irq.rises, 1);
	advance(f, t + tick_ns(50));
	assert_int_equal(f->irq.rises, 2);
}

static void test_live_read_lohi(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x30, 0x1234);
	advance(f, tick_ns(0x34));
	/* Without a latch, two reads give low then high byte of the live count. */
	assert_int_equal(pit_inb(&f->pit, 0x40), 0x00);
	assert_int_equal(pit_inb(&f->pit, 0x40), 0x12);
	assert_int_equal(pit_inb(&f->pit, 0x40), 0x00);
	assert_int_equal(pit_inb(&f->pit, 0x40), 0x12);
}

static void test_latch(void **state)
{
	struct fx *f = *state;
	uint8_t lo, hi;

	program(f, 0, 0x30, 0x8000);
	advance(f, tick_ns(0x100));
	pit_outb(&f->pit, 0x43, 0x00);
	advance(f, tick_ns(0x200));
	/* A second latch before the read is ignored. */
	pit_outb(&f->pit, 0x43, 0x00);
	lo = pit_inb(&f->pit, 0x40);
	advance(f, tick_ns(0x300));
	hi = pit_inb(&f->pit, 0x40);
	assert_int_equal(lo | hi << 8, 0x8000 - 0x100);
	/* Once read, reads are live again. */
	assert_int_equal(latch_read(f, 0), 0x8000 - 0x300);
}

static void test_readback(void **state)
{
	struct fx *f = *state;
	uint8_t st;

	pit_outb(&f->pit, 0x61, 0x01);
	pit_outb(&f->pit, 0x43, 0xb0);	/* ch2, lohi, mode 0, binary */
	/* Status only: OUT low, null count, rw 3, mode 0. */
	pit_outb(&f->pit, 0x43, 0xe8);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x70);
	pit_outb(&f->pit, 0x42, 0x00);
	pit_outb(&f->pit, 0x42, 0x01);
	advance(f, tick_ns(0x10));
	/* Count and status of channels 0 and 2: status first, then count. */
	pit_outb(&f->pit, 0x43, 0xca);
	advance(f, tick_ns(0x20));
	st = pit_inb(&f->pit, 0x42);
	assert_int_equal(st, 0x30);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0xf0);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x00);
	/* Channel 0 was never programmed: status shows the reset mode. */
	assert_int_equal(pit_inb(&f->pit, 0x40) & 0x3f, 0x30);
	/* After terminal count OUT shows in the status. */
	advance(f, tick_ns(0x100));
	pit_outb(&f->pit, 0x43, 0xe8);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0xb0);
	/* Count-only read-back. */
	pit_outb(&f->pit, 0x43, 0xd8);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x00);
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x00);
}

static void test_lobyte_hibyte_only(void **state)
{
	struct fx *f = *state;

	pit_outb(&f->pit, 0x43, 0x14);	/* ch0, lobyte, mode 2 */
	pit_outb(&f->pit, 0x40, 100);
	advance(f, tick_ns(100));
	advance(f, tick_ns(200));
	assert_int_equal(f->irq.rises, 3);
	advance(f, tick_ns(230));
	/* lobyte access: each read is the low byte. */
	assert_int_equal(pit_inb(&f->pit, 0x40), 70);
	assert_int_equal(pit_inb(&f->pit, 0x40), 70);

	pit_outb(&f->pit, 0x43, 0x20 | 0x80 | 0x00);	/* ch2, hibyte, mode 0 */
	pit_outb(&f->pit, 0x61, 0x01);
	pit_outb(&f->pit, 0x42, 0x02);			/* count 0x200 */
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x02);
	advance(f, tick_ns(230) + tick_ns(0x101));
	assert_int_equal(pit_inb(&f->pit, 0x42), 0x00);
}

static void test_port61_calibration_loop(void **state)
{
	struct fx *f = *state;
	const uint16_t latch = 11932;	/* 10 ms, as Linux's pit_calibrate_tsc */
	uint64_t t = 0;
	int loops = 0;

	/* Gate high, speaker off; channel 2, lohi, mode 0. */
	pit_outb(&f->pit, 0x61, (pit_inb(&f->pit, 0x61) & ~0x02) | 0x01);
	pit_outb(&f->pit, 0x43, 0xb0);
	pit_outb(&f->pit, 0x42, latch & 0xff);
	pit_outb(&f->pit, 0x42, latch >> 8);
	while (!(pit_inb(&f->pit, 0x61) & 0x20)) {
		t += 100000;
		timer_queue_set_time(&f->q, t);
		assert_true(++loops < 1000);
	}
	assert_true(t >= tick_ns(latch));
	assert_true(t < tick_ns(latch) + 100000);
	assert_int_equal(pit_inb(&f->pit, 0x61) & 0x01, 0x01);
	/* Channel 2 never touches IRQ 0. */
	assert_int_equal(f->irq.calls, 0);
}

static void test_port61_gate_pauses_mode0(void **state)
{
	struct fx *f = *state;

	pit_outb(&f->pit, 0x61, 0x01);
	program(f, 2, 0xb0, 1000);
	timer_queue_set_time(&f->q, tick_ns(300));
	pit_outb(&f->pit, 0x61, 0x00);	/* gate low: counting holds */
	timer_queue_set_time(&f->q, tick_ns(5000));
	assert_int_equal(latch_read(f, 2), 700);
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	pit_outb(&f->pit, 0x61, 0x01);
	timer_queue_set_time(&f->q, tick_ns(5000) + tick_ns(699));
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	timer_queue_set_time(&f->q, tick_ns(5000) + tick_ns(701));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
}

static void test_port61_bits(void **state)
{
	struct fx *f = *state;
	uint8_t a, b;

	pit_outb(&f->pit, 0x61, 0xff);
	a = pit_inb(&f->pit, 0x61);
	b = pit_inb(&f->pit, 0x61);
	assert_int_equal(a & 0x0f, 0x0f);
	assert_int_equal(a & 0xc0, 0);
	/* Refresh toggle moves on every read. */
	assert_int_not_equal(a & 0x10, b & 0x10);
	pit_outb(&f->pit, 0x61, 0x02);
	assert_int_equal(pit_inb(&f->pit, 0x61) & 0x0f, 0x02);
}

static void test_mode1_gate_trigger(void **state)
{
	struct fx *f = *state;

	program(f, 2, 0xb2, 50);	/* ch2, mode 1 */
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);	/* OUT high, waiting */
	timer_queue_set_time(&f->q, tick_ns(1000));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	pit_outb(&f->pit, 0x61, 0x01);	/* trigger */
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	timer_queue_set_time(&f->q, tick_ns(1000) + tick_ns(20));
	assert_int_equal(latch_read(f, 2), 30);
	timer_queue_set_time(&f->q, tick_ns(1000) + tick_ns(50));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	/* Retrigger restarts the one-shot. */
	pit_outb(&f->pit, 0x61, 0x00);
	pit_outb(&f->pit, 0x61, 0x01);
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
}

static void test_mode5_gate_strobe(void **state)
{
	struct fx *f = *state;

	program(f, 2, 0xba, 10);	/* ch2, mode 5 */
	pit_outb(&f->pit, 0x61, 0x01);
	timer_queue_set_time(&f->q, tick_ns(9));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
	timer_queue_set_time(&f->q, tick_ns(10));
	assert_false(pit_inb(&f->pit, 0x61) & 0x20);
	timer_queue_set_time(&f->q, tick_ns(11));
	assert_true(pit_inb(&f->pit, 0x61) & 0x20);
}

static void test_mode4_strobe(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x38, 100);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.rises, 1);
	advance(f, tick_ns(100));
	assert_int_equal(f->irq.rises, 1);
	advance(f, tick_ns(101));
	assert_int_equal(f->irq.rises, 2);
	advance(f, tick_ns(100000));
	assert_int_equal(f->irq.rises, 2);
	assert_false(vtimer_pending(&f->pit.timer));
}

static void test_bcd(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x31, 0x1000);	/* mode 0, BCD 1000 */
	advance(f, tick_ns(1));
	assert_int_equal(latch_read(f, 0), 0x0999);
	advance(f, tick_ns(999));
	assert_int_equal(f->irq.rises, 0);
	advance(f, tick_ns(1000));
	assert_int_equal(f->irq.rises, 1);
	advance(f, tick_ns(1003));
	assert_int_equal(latch_read(f, 0), 0x9997);
	/* Garbage BCD does not crash and counts something sane. */
	program(f, 0, 0x35, 0xffff);
	latch_read(f, 0);
	program(f, 0, 0x35, 0x0000);	/* 0 = 10000 in BCD */
	assert_int_equal(f->pit.ch[0].n, 10000);
}

static void test_count_zero_is_65536(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x34, 0);
	advance(f, tick_ns(65535));
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(latch_read(f, 0), 1);
	advance(f, tick_ns(65536));
	assert_int_equal(f->irq.rises, 2);
	assert_int_equal(latch_read(f, 0), 0);
}

static void test_control_word_stops_channel(void **state)
{
	struct fx *f = *state;

	program(f, 0, 0x34, 100);
	advance(f, tick_ns(50));
	pit_outb(&f->pit, 0x43, 0x30);	/* mode 0, no count yet */
	assert_int_equal(f->irq.level, 0);
	assert_false(vtimer_pending(&f->pit.timer));
	advance(f, tick_ns(10000));
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(latch_read(f, 0), 50);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	struct timer_queue q2;
	struct pit p2;
	struct pit_state st;
	struct fake_irq irq2 = { .q = &q2, .level = 1 };
	struct irq_sink sink2 = { fake_set_irq, &irq2 };

	program(f, 0, 0x34, 1000);
	advance(f, tick_ns(1000) + 7);
	advance(f, tick_ns(1250));
	pit_save(&f->pit, &st);

	timer_queue_init(&q2, NULL, NULL);
	timer_queue_set_time(&q2, 5 * NSEC);
	assert_int_equal(pit_init(&p2, &q2, &sink2), 0);
	assert_int_equal(pit_restore(&p2, &st), 0);
	assert_int_equal(pit_latch_read(&p2, 0), 750);
	timer_queue_set_time(&q2, 5 * NSEC + tick_ns(2000) - tick_ns(1250) + 1);
	timer_queue_run(&q2);
	assert_int_equal(irq2.rises, 1);

	st.version = 99;
	assert_int_equal(pit_restore(&p2, &st), -EINVAL);
	st.version = PIT_STATE_VERSION;
	st.ch[1].mode = 7;
	assert_int_equal(pit_restore(&p2, &st), -EINVAL);
	pit_destroy(&p2);
	timer_queue_destroy(&q2);
}

static void test_io_bus(void **state)
{
	struct fx *f = *state;
	struct io_bus bus;
	struct io_req req = { .space = IO_SPACE_PIO, .len = 1 };

	io_bus_init(&bus);
	assert_int_equal(pit_register(&f->pit, &bus), 0);
	req.is_write = 1;
	req.addr = 0x43;
	req.data = 0x34;
	assert_true(io_bus_dispatch(&bus, &req));
	req.addr = 0x40;
	req.data = 0x10;
	io_bus_dispatch(&bus, &req);
	req.data = 0x00;
	io_bus_dispatch(&bus, &req);
	assert_int_equal(f->pit.ch[0].n, 0x10);
	req.is_write = 0;
	req.addr = 0x43;
	io_bus_dispatch(&bus, &req);
	assert_int_equal(req.data, 0xff);
	req.addr = 0x61;
	assert_true(io_bus_dispatch(&bus, &req));
	assert_int_equal(req.data & 0xc0, 0);
	/* A second registration collides. */
	assert_int_not_equal(pit_register(&f->pit, &bus), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_mode2_period),
		T(test_mode2_drift_free_long),
		T(test_mode2_catch_up),
		T(test_mode2_new_count_next_period),
		T(test_mode2_reload_seen_late),
		T(test_mode3_square_wave),
		T(test_mode0_countdown),
		T(test_mode0_oneshot_rearm),
		T(test_live_read_lohi),
		T(test_latch),
		T(test_readback),
		T(test_lobyte_hibyte_only),
		T(test_port61_calibration_loop),
		T(test_port61_gate_pauses_mode0),
		T(test_port61_bits),
		T(test_mode1_gate_trigger),
		T(test_mode5_gate_strobe),
		T(test_mode4_strobe),
		T(test_bcd),
		T(test_count_zero_is_65536),
		T(test_control_word_stops_channel),
		T(test_save_restore),
		T(test_io_bus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
