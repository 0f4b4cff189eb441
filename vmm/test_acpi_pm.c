// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vmm/acpi_pm.h"

#define T0 5000000000ULL	/* the machine starts at an arbitrary clock value */

struct fixture {
	struct timer_queue q;
	struct acpi_pm pm;
	struct io_bus bus;
	struct irq_sink sink;
	int sci;
	int sci_changes;
	unsigned gsi;
	int poweroffs, resets;
};

static void rec_irq(void *ctx, unsigned gsi, int level)
{
	struct fixture *f = ctx;

	f->gsi = gsi;
	f->sci = level;
	f->sci_changes++;
}

static void on_poweroff(void *ctx)
{
	((struct fixture *)ctx)->poweroffs++;
}

static void on_reset(void *ctx)
{
	((struct fixture *)ctx)->resets++;
}


static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	timer_queue_init(&f->q, NULL, NULL);
	timer_queue_set_time(&f->q, T0);
	f->sink.set_irq = rec_irq;
	f->sink.ctx = f;
	{
		/* On the stack, as the machine does: the device keeps a copy. */
		struct acpi_pm_ops ops = { .poweroff = on_poweroff, .reset = on_reset, .ctx = f };

		acpi_pm_init(&f->pm, &f->q, &f->sink, &ops);
	}
	io_bus_init(&f->bus);
	assert_int_equal(acpi_pm_register(&f->pm, &f->bus), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	acpi_pm_destroy(&f->pm);
	timer_queue_destroy(&f->q);
	test_free(f);
	return 0;
}

static uint64_t in(struct fixture *f, uint64_t port, unsigned len)
{
	struct io_req r = { .space = IO_SPACE_PIO, .len = len, .addr = port };

	assert_true(io_bus_dispatch(&f->bus, &r));
	return r.data;
}

static void out(struct fixture *f, uint64_t port, unsigned len, uint64_t v)
{
	struct io_req r = { .space = IO_SPACE_PIO, .is_write = 1, .len = len,
			    .addr = port, .data = v };

	assert_true(io_bus_dispatch(&f->bus, &r));
}

/* Queue time at which the PM timer has counted 'ticks'. */
static uint64_t at_ticks(uint64_t ticks)
{
	return T0 + (uint64_t)(((unsigned __int128)ticks * 1000000000ULL +
				PM_TMR_FREQ - 1) / PM_TMR_FREQ);
}

static void test_timer_rate(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(f, ACPI_PM_TMR, 4), 0);
	timer_queue_set_time(&f->q, T0 + 1000000000ULL);
	assert_int_equal(in(f, ACPI_PM_TMR, 4), 3579545);
	timer_queue_set_time(&f->q, T0 + 1000ULL);
	assert_int_equal(in(f, ACPI_PM_TMR, 4), 3);	/* 3.58 ticks per us */
	/* Writes are ignored. */
	out(f, ACPI_PM_TMR, 4, 0x12345678);
	assert_int_equal(in(f, ACPI_PM_TMR, 4), 3);
	/* Hours of uptime do not overflow the conversion. */
	timer_queue_set_time(&f->q, T0 + 3600ULL * 1000000000ULL * 100);
	assert_int_equal(in(f, ACPI_PM_TMR, 4),
			 (uint32_t)(3600ULL * 100 * PM_TMR_FREQ));
}

static void test_timer_wraps(void **state)
{
	struct fixture *f = *state;

	timer_queue_set_time(&f->q, at_ticks(0xffffffffULL));
	assert_int_equal(in(f, ACPI_PM_TMR, 4), 0xffffffffu);
	timer_queue_set_time(&f->q, at_ticks(0x100000005ULL));
	assert_int_equal(in(f, ACPI_PM_TMR, 4), 5);
	assert_int_equal(acpi_pm_timer(&f->pm), 5);
}

static void test_timer_overflow_status(void **state)
{
	struct fixture *f = *state;

	/* Without TMR_EN the status still appears, with no SCI. */
	timer_queue_set_time(&f->q, at_ticks(1ULL << 31));
	assert_int_equal(in(f, ACPI_PM1_EVT, 2) & PM1_STS_TMR, PM1_STS_TMR);
	assert_int_equal(f->sci, 0);
	out(f, ACPI_PM1_EVT, 2, PM1_STS_TMR);
	assert_int_equal(in(f, ACPI_PM1_EVT, 2) & PM1_STS_TMR, 0);

	/* With TMR_EN, the next toggle (bit 31 back to 0) fires the SCI. */
	out(f, ACPI_PM1_EVT + 2, 2, PM1_EN_TMR);
	timer_queue_set_time(&f->q, at_ticks(1ULL << 32) - 1);
	assert_int_equal(timer_queue_run(&f->q), 0);
	assert_int_equal(f->sci, 0);
	timer_queue_set_time(&f->q, at_ticks(1ULL << 32));
	assert_int_equal(timer_queue_run(&f->q), 1);
	assert_int_equal(f->sci, 1);
	assert_int_equal(f->gsi, ACPI_SCI_IRQ);
	out(f, ACPI_PM1_EVT, 2, PM1_STS_TMR);
	assert_int_equal(f->sci, 0);

	/* Disabling TMR_EN disarms the timer. */
	out(f, ACPI_PM1_EVT + 2, 2, 0);
	timer_queue_set_time(&f->q, at_ticks(3ULL << 31));
	assert_int_equal(timer_queue_run(&f->q), 0);
	assert_int_equal(f->sci, 0);
}

static void test_sci_en_reads_one(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in(f, ACPI_PM1_CNT, 2), PM1_CNT_SCI_EN);
	out(f, ACPI_PM1_CNT, 2, 0);
	assert_int_equal(in(f, ACPI_PM1_CNT, 2), PM1_CNT_SCI_EN);
	/* SLP_TYP reads back; SLP_EN is write-only. */
	out(f, ACPI_PM1_CNT, 2, 3 << PM1_CNT_SLP_SHIFT);
	assert_int_equal(in(f, ACPI_PM1_CNT, 2),
			 PM1_CNT_SCI_EN | (3 << PM1_CNT_SLP_SHIFT));
}

static void test_s5_powers_off(void **state)
{
	struct fixture *f = *state;
	uint16_t s5 = PM1_CNT_SLP_EN | (ACPI_S5_SLP_TYP << PM1_CNT_SLP_SHIFT);
	uint16_t other = PM1_CNT_SLP_EN |
			 (((ACPI_S5_SLP_TYP + 1) & 7) << PM1_CNT_SLP_SHIFT);

	/* Setting SLP_TYP alone does nothing. */
	out(f, ACPI_PM1_CNT, 2, ACPI_S5_SLP_TYP << PM1_CNT_SLP_SHIFT);
	assert_int_equal(f->poweroffs, 0);
	/* Another sleep type with SLP_EN does nothing either. */
	out(f, ACPI_PM1_CNT, 2, other);
	assert_int_equal(f->poweroffs, 0);
	out(f, ACPI_PM1_CNT, 2, s5);
	assert_int_equal(f->poweroffs, 1);
	/* A byte write of the high half works too (SLP_TYP and SLP_EN live there). */
	out(f, ACPI_PM1_CNT + 1, 1, s5 >> 8);
	assert_int_equal(f->poweroffs, 2);
	assert_int_equal(f->resets, 0);
}

static void test_power_button(void **state)
{
	struct fixture *f = *state;

	/* Not enabled: status only. */
	acpi_pm_power_button(&f->pm);
	assert_int_equal(in(f, ACPI_PM1_EVT, 2), PM1_STS_PWRBTN);
	assert_int_equal(f->sci, 0);
	assert_int_equal(f->sci_changes, 0);
	/* Enabling with the status pending raises the SCI. */
	out(f, ACPI_PM1_EVT + 2, 2, PM1_EN_PWRBTN);
	assert_int_equal(f->sci, 1);
	/* Writing 0 clears nothing. */
	out(f, ACPI_PM1_EVT, 2, 0);
	assert_int_equal(f->sci, 1);
	/* Write 1 to clear. */
	out(f, ACPI_PM1_EVT, 2, PM1_STS_PWRBTN);
	assert_int_equal(f->sci, 0);
	assert_int_equal(in(f, ACPI_PM1_EVT, 2), 0);

	acpi_pm_power_button(&f->pm);
	assert_int_equal(f->sci, 1);
	/* A dword access covers STS and EN: clear status, keep enable. */
	assert_int_equal(in(f, ACPI_PM1_EVT, 4),
			 PM1_STS_PWRBTN | (PM1_EN_PWRBTN << 16));
	out(f, ACPI_PM1_EVT, 4, PM1_STS_PWRBTN | (PM1_EN_PWRBTN << 16));
	assert_int_equal(f->sci, 0);
	assert_int_equal(in(f, ACPI_PM1_EVT + 2, 2), PM1_EN_PWRBTN);
	assert_int_equal(f->sci_changes, 4);
}

static void test_reset_port(void **state)
{
	struct fixture *f = *state;

	/* Linux: read, write SYS_RST, then SYS_RST|RST_CPU. */
	assert_int_equal(in(f, ACPI_RESET_PORT, 1), 0);
	out(f, ACPI_RESET_PORT, 1, RCR_SYS_RST);
	assert_int_equal(f->resets, 0);
	assert_int_equal(in(f, ACPI_RESET_PORT, 1), RCR_SYS_RST);
	out(f, ACPI_RESET_PORT, 1, ACPI_RESET_VALUE);
	assert_int_equal(f->resets, 1);
	/* RST_CPU does not stay set. */
	assert_int_equal(in(f, ACPI_RESET_PORT, 1) & RCR_RST_CPU, 0);
	acpi_pm_rcr_write(&f->pm, RCR_RST_CPU);
	assert_int_equal(f->resets, 2);
	assert_int_equal(f->poweroffs, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_timer_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_wraps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_overflow_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sci_en_reads_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_power_button, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_port, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
