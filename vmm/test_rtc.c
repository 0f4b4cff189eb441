// SPDX-License-Identifier: MIT
/* Unit tests for the MC146818 RTC, driven by the timer queue's manual clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

#include "vmm/rtc.h"

#define NSEC	1000000000ULL
#define T0	(1000 * NSEC)		/* queue time when the test starts */
#define EPOCH	1709251198		/* 2024-02-29 23:59:58 UTC, a Thursday */

struct fake_irq {
	int level;
	unsigned rises;
	unsigned bad_gsi;
};

struct fx {
	struct timer_queue q;
	struct rtc rtc;
	struct fake_irq irq;
	struct irq_sink sink;
};

static void fake_set_irq(void *ctx, unsigned gsi, int level)
{
	struct fake_irq *f = ctx;

	if (gsi != RTC_IRQ)
		f->bad_gsi++;
	if (level && !f->level)
		f->rises++;
	f->level = level;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	timer_queue_init(&f->q, NULL, NULL);
	timer_queue_set_time(&f->q, T0);
	f->sink.set_irq = fake_set_irq;
	f->sink.ctx = &f->irq;
	assert_int_equal(rtc_init(&f->rtc, &f->q, &f->sink), 0);
	rtc_set_time(&f->rtc, EPOCH);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	assert_int_equal(f->irq.bad_gsi, 0);
	rtc_destroy(&f->rtc);
	timer_queue_destroy(&f->q);
	free(f);
	return 0;
}

static uint8_t rd(struct fx *f, uint8_t idx)
{
	rtc_outb(&f->rtc, 0x70, idx);
	return rtc_inb(&f->rtc, 0x71);
}

static void wr(struct fx *f, uint8_t idx, uint8_t val)
{
	rtc_outb(&f->rtc, 0x70, idx);
	rtc_outb(&f->rtc, 0x71, val);
}

static void advance(struct fx *f, uint64_t t)
{
	timer_queue_set_time(&f->q, t);
	timer_queue_run(&f->q);
}

static void test_host_time_at_init(void **state)
{
	struct timer_queue q;
	struct rtc r;
	int64_t before = time(NULL), got;

	(void)state;
	timer_queue_init(&q, NULL, NULL);
	assert_int_equal(rtc_init(&r, &q, NULL), 0);
	got = rtc_get_time(&r);
	assert_true(got >= before && got <= time(NULL));
	/* A PC BIOS's defaults. */
	rtc_outb(&r, 0x70, 0x0b);
	assert_int_equal(rtc_inb(&r, 0x71), 0x02);
	rtc_outb(&r, 0x70, 0x0a);
	assert_int_equal(rtc_inb(&r, 0x71) & 0x7f, 0x26);
	rtc_outb(&r, 0x70, 0x0d);
	assert_int_equal(rtc_inb(&r, 0x71), 0x80);
	rtc_destroy(&r);
	timer_queue_destroy(&q);
}

static void test_read_bcd(void **state)
{
	struct fx *f = *state;

	assert_int_equal(rd(f, 0x00), 0x58);
	assert_int_equal(rd(f, 0x02), 0x59);
	assert_int_equal(rd(f, 0x04), 0x23);
	assert_int_equal(rd(f, 0x06), 0x05);
	assert_int_equal(rd(f, 0x07), 0x29);
	assert_int_equal(rd(f, 0x08), 0x02);
	assert_int_equal(rd(f, 0x09), 0x24);
	assert_int_equal(rd(f, 0x32), 0x20);
	/* Two seconds later: leap day rolls over into March. */
	timer_queue_set_time(&f->q, T0 + 2 * NSEC);
	assert_int_equal(rd(f, 0x00), 0x00);
	assert_int_equal(rd(f, 0x02), 0x00);
	assert_int_equal(rd(f, 0x04), 0x00);
	assert_int_equal(rd(f, 0x07), 0x01);
	assert_int_equal(rd(f, 0x08), 0x03);
	assert_int_equal(rd(f, 0x06), 0x06);
	/* One ns short of a second does not tick. */
	timer_queue_set_time(&f->q, T0 + 3 * NSEC - 1);
	assert_int_equal(rd(f, 0x00), 0x00);
	/* NMI-disable bit in the index is ignored. */
	rtc_outb(&f->rtc, 0x70, 0x80 | 0x08);
	assert_int_equal(rtc_inb(&f->rtc, 0x71), 0x03);
	assert_int_equal(rtc_inb(&f->rtc, 0x70), 0xff);
}

static void test_read_binary_and_12h(void **state)
{
	struct fx *f = *state;

	wr(f, 0x0b, 0x06);	/* binary, 24 h */
	assert_int_equal(rd(f, 0x00), 58);
	assert_int_equal(rd(f, 0x04), 23);
	assert_int_equal(rd(f, 0x07), 29);
	assert_int_equal(rd(f, 0x09), 24);
	assert_int_equal(rd(f, 0x32), 20);
	wr(f, 0x0b, 0x04);	/* binary, 12 h: 11 PM */
	assert_int_equal(rd(f, 0x04), 0x80 | 11);
	wr(f, 0x0b, 0x00);	/* BCD, 12 h */
	assert_int_equal(rd(f, 0x04), 0x91);
	timer_queue_set_time(&f->q, T0 + 2 * NSEC);
	assert_int_equal(rd(f, 0x04), 0x12);	/* midnight is 12 AM */
	timer_queue_set_time(&f->q, T0 + 2 * NSEC + 12 * 3600 * NSEC);
	assert_int_equal(rd(f, 0x04), 0x92);	/* noon is 12 PM */
	timer_queue_set_time(&f->q, T0 + 2 * NSEC + 13 * 3600 * NSEC);
	assert_int_equal(rd(f, 0x04), 0x81);
}

static void test_uip_window(void **state)
{
	struct fx *f = *state;
	uint64_t boundary = T0 + NSEC;	/* the set time starts a second */
	uint64_t t;
	int spins = 0;

	timer_queue_set_time(&f->q, boundary - 300000);
	assert_false(rd(f, 0x0a) & 0x80);
	timer_queue_set_time(&f->q, boundary - 200000);
	assert_true(rd(f, 0x0a) & 0x80);
	/* During UIP the registers still hold the old second. */
	assert_int_equal(rd(f, 0x00), 0x58);
	timer_queue_set_time(&f->q, boundary);
	assert_false(rd(f, 0x0a) & 0x80);
	assert_int_equal(rd(f, 0x00), 0x59);
	/* Linux's read loop: spin while UIP, in 10 us steps; it ends. */
	t = 2 * NSEC + T0 - 240000;
	timer_queue_set_time(&f->q, t);
	while (rd(f, 0x0a) & 0x80) {
		t += 10000;
		timer_queue_set_time(&f->q, t);
		assert_true(++spins < 30);
	}
	assert_true(spins > 20);
	assert_int_equal(rd(f, 0x00), 0x00);
	/* UIP high for about 244 us out of every second. */
	spins = 0;
	for (t = T0 + 5 * NSEC; t < T0 + 7 * NSEC; t += 1000) {
		timer_queue_set_time(&f->q, t);
		spins += !!(rd(f, 0x0a) & 0x80);
	}
	assert_in_range(spins, 2 * 243, 2 * 245);
}

static void test_uip_clear_when_set(void **state)
{
	struct fx *f = *state;

	wr(f, 0x0b, 0x82);
	timer_queue_set_time(&f->q, T0 + NSEC - 1000);
	assert_false(rd(f, 0x0a) & 0x80);
	/* Time is frozen while SET. */
	timer_queue_set_time(&f->q, T0 + 10 * NSEC);
	assert_int_equal(rd(f, 0x00), 0x58);
}

/* Runs a guest that reads C on each IRQ; returns how many it took. */
static unsigned run_periodic(struct fx *f, uint64_t from, uint64_t until)
{
	unsigned irqs = 0;

	while (vtimer_pending(&f->rtc.timer) && f->rtc.timer.deadline_ns <= until) {
		uint64_t t = f->rtc.timer.deadline_ns;

		assert_true(t >= from);
		advance(f, t);
		if (f->irq.level) {
			irqs++;
			assert_true(rd(f, 0x0c) & 0x40);
			assert_int_equal(f->irq.level, 0);
		}
	}
	return irqs;
}

static void test_periodic_rates(void **state)
{
	struct fx *f = *state;
	static const struct { uint8_t rs; unsigned hz; } rates[] = {
		{ 6, 1024 }, { 15, 2 }, { 3, 8192 }, { 1, 256 }, { 2, 128 }, { 10, 64 },
	};
	uint64_t t = T0;

	for (unsigned i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		wr(f, 0x0a, 0x20 | rates[i].rs);
		wr(f, 0x0b, 0x42);
		rd(f, 0x0c);
		assert_int_equal(run_periodic(f, t, t + NSEC), rates[i].hz);
		t += NSEC;
		advance(f, t);
		wr(f, 0x0b, 0x02);
		rd(f, 0x0c);
		assert_false(vtimer_pending(&f->rtc.timer));
	}
	/* Rate 0 disables the periodic interrupt even with PIE. */
	wr(f, 0x0a, 0x20);
	wr(f, 0x0b, 0x42);
	assert_false(vtimer_pending(&f->rtc.timer));
	advance(f, t + NSEC);
	assert_false(rd(f, 0x0c) & 0x40);
}

static void test_reg_c_clears_and_lowers(void **state)
{
	struct fx *f = *state;

	wr(f, 0x0b, 0x42);
	advance(f, f->rtc.timer.deadline_ns);
	assert_int_equal(f->irq.level, 1);
	assert_int_equal(f->irq.rises, 1);
	/* With IRQ 8 up and C unread, no timer runs. */
	assert_false(vtimer_pending(&f->rtc.timer));
	advance(f, T0 + NSEC / 2);
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(rd(f, 0x0c), 0xc0);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(rd(f, 0x0c), 0x00);
	assert_true(vtimer_pending(&f->rtc.timer));
	/* Disabling PIE with PF pending drops IRQF. */
	advance(f, f->rtc.timer.deadline_ns);
	assert_int_equal(f->irq.level, 1);
	wr(f, 0x0b, 0x02);
	assert_int_equal(f->irq.level, 0);
	assert_int_equal(rd(f, 0x0c), 0x40);
}

static void test_flags_without_interrupts(void **state)
{
	struct fx *f = *state;

	/* PF and UF are set even when their interrupts are disabled. */
	assert_int_equal(rd(f, 0x0c), 0x00);
	timer_queue_set_time(&f->q, T0 + 2000000);
	assert_int_equal(rd(f, 0x0c), 0x40);
	timer_queue_set_time(&f->q, T0 + NSEC);
	assert_int_equal(rd(f, 0x0c), 0x50);
	assert_int_equal(f->irq.rises, 0);
	assert_false(vtimer_pending(&f->rtc.timer));
	/* Enabling PIE with PF already set raises IRQ 8 at once. */
	timer_queue_set_time(&f->q, T0 + NSEC + 2000000);
	wr(f, 0x0b, 0x42);
	assert_int_equal(f->irq.level, 1);
}

static void test_update_interrupt(void **state)
{
	struct fx *f = *state;

	wr(f, 0x05, 0x12);	/* keep the alarm (00:00:00 at reset) away */
	wr(f, 0x0b, 0x12);
	for (unsigned s = 1; s <= 5; s++) {
		assert_int_equal(f->rtc.timer.deadline_ns, T0 + s * NSEC);
		advance(f, f->rtc.timer.deadline_ns);
		assert_int_equal(f->irq.rises, s);
		assert_int_equal(rd(f, 0x0c) & ~0x40, 0x90);	/* PF runs too */
	}
	/* Late by a minute: one interrupt, not sixty. */
	advance(f, T0 + 65 * NSEC + 5);
	assert_int_equal(f->irq.rises, 6);
	assert_int_equal(rd(f, 0x0c) & ~0x40, 0x90);	/* PF runs too */
	assert_int_equal(f->rtc.timer.deadline_ns, T0 + 66 * NSEC);
}

static void test_alarm(void **state)
{
	struct fx *f = *state;

	/* Alarm at 00:00:03 on the next day. */
	wr(f, 0x01, 0x03);
	wr(f, 0x03, 0x00);
	wr(f, 0x05, 0x00);
	wr(f, 0x0b, 0x22);
	for (unsigned s = 1; s <= 4; s++) {
		advance(f, f->rtc.timer.deadline_ns);
		assert_int_equal(f->irq.rises, 0);
		assert_int_equal(rd(f, 0x0c) & 0x20, 0);
	}
	advance(f, f->rtc.timer.deadline_ns);
	assert_int_equal(f->irq.rises, 1);
	assert_int_equal(rd(f, 0x00), 0x03);
	assert_int_equal(rd(f, 0x0c) & 0xa0, 0xa0);
	/* Don't-care bytes: every second. */
	wr(f, 0x01, 0xff);
	wr(f, 0x03, 0xc0);
	wr(f, 0x05, 0xc5);
	for (unsigned s = 0; s < 3; s++) {
		advance(f, f->rtc.timer.deadline_ns);
		assert_int_equal(rd(f, 0x0c) & ~0x40, 0xb0);
	}
	assert_int_equal(f->irq.rises, 4);
}

/* The sequence of Linux's mc146818_set_time(). */
static void linux_set_time(struct fx *f, const uint8_t v[7])
{
	uint8_t save_b = rd(f, 0x0b), save_a = rd(f, 0x0a) & 0x7f;

	wr(f, 0x0b, save_b | 0x80);
	wr(f, 0x0a, save_a | 0x70);
	wr(f, 0x09, v[0]);
	wr(f, 0x08, v[1]);
	wr(f, 0x07, v[2]);
	wr(f, 0x04, v[3]);
	wr(f, 0x02, v[4]);
	wr(f, 0x00, v[5]);
	wr(f, 0x32, v[6]);
	wr(f, 0x0b, save_b);
	wr(f, 0x0a, save_a);
}

static void test_set_time(void **state)
{
	struct fx *f = *state;
	/* 2031-12-31 23:59:30 */
	static const uint8_t v[7] = { 0x31, 0x12, 0x31, 0x23, 0x59, 0x30, 0x20 };
	uint64_t t = T0 + 300 * NSEC;

	timer_queue_set_time(&f->q, t);
	linux_set_time(f, v);
	assert_int_equal(rtc_get_time(&f->rtc), 1956527970);
	assert_int_equal(rd(f, 0x00), 0x30);
	assert_int_equal(rd(f, 0x06), 0x04);	/* a Wednesday */
	/* Out of divider reset the first update comes after 500 ms. */
	timer_queue_set_time(&f->q, t + NSEC / 2 - 1);
	assert_int_equal(rd(f, 0x00), 0x30);
	timer_queue_set_time(&f->q, t + NSEC / 2);
	assert_int_equal(rd(f, 0x00), 0x31);
	/* Across the year. */
	timer_queue_set_time(&f->q, t + NSEC / 2 + 30 * NSEC);
	assert_int_equal(rd(f, 0x09), 0x32);
	assert_int_equal(rd(f, 0x08), 0x01);
	assert_int_equal(rd(f, 0x32), 0x20);
}

static void test_set_time_binary_no_set_bit(void **state)
{
	struct fx *f = *state;

	wr(f, 0x0b, 0x06);
	/* A write without SET takes effect at once. */
	wr(f, 0x02, 10);
	assert_int_equal(rd(f, 0x02), 10);
	assert_int_equal(rd(f, 0x00), 58);
	assert_int_equal(rtc_get_time(&f->rtc), EPOCH - 49 * 60);
	/* The divider phase is kept: the next second comes on time. */
	timer_queue_set_time(&f->q, T0 + NSEC);
	assert_int_equal(rd(f, 0x00), 59);
	/* 12-hour write, binary: 3 PM. */
	wr(f, 0x0b, 0x04);
	wr(f, 0x04, 0x83);
	wr(f, 0x0b, 0x06);
	assert_int_equal(rd(f, 0x04), 15);
	/* Garbage is clamped, never a crash. */
	wr(f, 0x08, 0xff);
	wr(f, 0x07, 0xff);
	wr(f, 0x32, 0xff);
	rd(f, 0x09);
	rd(f, 0x32);
}

static void test_set_bit_clears_uie(void **state)
{
	struct fx *f = *state;

	wr(f, 0x0b, 0x12);
	wr(f, 0x0b, 0x92);
	assert_int_equal(rd(f, 0x0b), 0x82);
	assert_false(vtimer_pending(&f->rtc.timer));
	/* No update while SET: no UF. */
	timer_queue_set_time(&f->q, T0 + 3 * NSEC);
	assert_int_equal(rd(f, 0x0c) & 0x10, 0);
	wr(f, 0x0b, 0x02);
	/* The time kept the frozen value; updates resume without a burst. */
	assert_int_equal(rd(f, 0x00), 0x58);
	assert_int_equal(rd(f, 0x0c) & 0x10, 0);
	timer_queue_set_time(&f->q, T0 + 4 * NSEC);
	assert_int_equal(rd(f, 0x00), 0x59);
	assert_int_equal(rd(f, 0x0c) & 0x10, 0x10);
}

static void test_cmos_ram(void **state)
{
	struct fx *f = *state;

	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			wr(f, (uint8_t)i, (uint8_t)(i ^ 0x5a));
	for (unsigned i = 0x0e; i < 0x80; i++)
		if (i != 0x32)
			assert_int_equal(rd(f, (uint8_t)i), i ^ 0x5a);
	/* C and D are read-only. */
	wr(f, 0x0d, 0x00);
	assert_int_equal(rd(f, 0x0d), 0x80);
	wr(f, 0x0c, 0xff);
	assert_int_equal(rd(f, 0x0c), 0x00);
	assert_int_equal(rtc_set_cmos(&f->rtc, 0x00, 1), -EINVAL);
	assert_int_equal(rtc_set_cmos(&f->rtc, 0x0b, 1), -EINVAL);
	assert_int_equal(rtc_set_cmos(&f->rtc, 0x32, 1), -EINVAL);
	assert_int_equal(rtc_set_cmos(&f->rtc, 0x80, 1), -EINVAL);
	assert_int_equal(rtc_set_cmos(&f->rtc, 0x5f, 3), 0);
	assert_int_equal(rd(f, 0x5f), 3);
}

static void test_memory_size(void **state)
{
	struct fx *f = *state;
	unsigned sum = 0;

	rtc_set_memory_size(&f->rtc, 3ULL << 30, 5ULL << 30);
	assert_int_equal(rd(f, 0x15) | rd(f, 0x16) << 8, 640);
	assert_int_equal(rd(f, 0x17) | rd(f, 0x18) << 8, 0xffff);
	assert_int_equal(rd(f, 0x30) | rd(f, 0x31) << 8, 0xffff);
	assert_int_equal(rd(f, 0x34) | rd(f, 0x35) << 8, ((3ULL << 30) - (16 << 20)) >> 16);
	assert_int_equal(rd(f, 0x5b) | rd(f, 0x5c) << 8 | rd(f, 0x5d) << 16,
			 (5ULL << 30) >> 16);
	for (unsigned i = 0x10; i <= 0x2d; i++)
		sum += rd(f, (uint8_t)i);
	assert_int_equal(rd(f, 0x2e) << 8 | rd(f, 0x2f), sum);

	rtc_set_memory_size(&f->rtc, 8 << 20, 0);
	assert_int_equal(rd(f, 0x17) | rd(f, 0x18) << 8, 7 * 1024);
	assert_int_equal(rd(f, 0x34) | rd(f, 0x35) << 8, 0);
	assert_int_equal(rd(f, 0x5b) | rd(f, 0x5c) | rd(f, 0x5d), 0);
}

static void test_save_restore(void **state)
{
	struct fx *f = *state;
	struct rtc_state st;
	struct timer_queue q2;
	struct rtc r2;
	struct fake_irq irq2 = { 0 };
	struct irq_sink sink2 = { fake_set_irq, &irq2 };

	wr(f, 0x0b, 0x16);
	wr(f, 0x40, 0x77);
	timer_queue_set_time(&f->q, T0 + NSEC / 4);
	rtc_save(&f->rtc, &st);

	timer_queue_init(&q2, NULL, NULL);
	timer_queue_set_time(&q2, 7 * NSEC);
	assert_int_equal(rtc_init(&r2, &q2, &sink2), 0);
	assert_int_equal(rtc_restore(&r2, &st), 0);
	assert_int_equal(rtc_get_time(&r2), EPOCH);
	rtc_outb(&r2, 0x70, 0x40);
	assert_int_equal(rtc_inb(&r2, 0x71), 0x77);
	/* The divider phase travelled: the update is 750 ms away. */
	assert_int_equal(r2.timer.deadline_ns, 7 * NSEC + 3 * NSEC / 4);
	timer_queue_set_time(&q2, 7 * NSEC + 3 * NSEC / 4);
	timer_queue_run(&q2);
	assert_int_equal(irq2.rises, 1);
	assert_int_equal(rtc_get_time(&r2), EPOCH + 1);

	st.version = 42;
	assert_int_equal(rtc_restore(&r2, &st), -EINVAL);
	rtc_destroy(&r2);
	timer_queue_destroy(&q2);
}

static void test_io_bus(void **state)
{
	struct fx *f = *state;
	struct io_bus bus;
	struct io_req req = { .space = IO_SPACE_PIO, .is_write = 1, .len = 1 };

	io_bus_init(&bus);
	assert_int_equal(rtc_register(&f->rtc, &bus), 0);
	/* outw 0x70: index in the low byte, data in the high byte. */
	req.len = 2;
	req.addr = 0x70;
	req.data = 0x5a50;
	assert_true(io_bus_dispatch(&bus, &req));
	req.is_write = 0;
	req.len = 1;
	req.addr = 0x71;
	io_bus_dispatch(&bus, &req);
	assert_int_equal(req.data, 0x5a);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_time_at_init),
		T(test_read_bcd),
		T(test_read_binary_and_12h),
		T(test_uip_window),
		T(test_uip_clear_when_set),
		T(test_periodic_rates),
		T(test_reg_c_clears_and_lowers),
		T(test_flags_without_interrupts),
		T(test_update_interrupt),
		T(test_alarm),
		T(test_set_time),
		T(test_set_time_binary_no_set_bit),
		T(test_set_bit_clears_uie),
		T(test_cmos_ram),
		T(test_memory_size),
		T(test_save_restore),
		T(test_io_bus),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
