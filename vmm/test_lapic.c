// SPDX-License-Identifier: MIT
/* LAPIC model tests: one APIC alone, a manual clock, recorded callbacks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/lapic.h"

struct rec {
	int kicks;
	int sent;
	struct apic_msg last;
	int eoi_vec;
	bool extint;
	int extint_vec;
};

static void kick(void *ctx) { ((struct rec *)ctx)->kicks++; }
static void send(void *ctx, const struct apic_msg *m)
{
	struct rec *r = ctx;

	r->sent++;
	r->last = *m;
}
static void eoi(void *ctx, uint8_t v) { ((struct rec *)ctx)->eoi_vec = v; }
static bool ext_pending(void *ctx) { return ((struct rec *)ctx)->extint; }
static int ext_ack(void *ctx)
{
	struct rec *r = ctx;

	r->extint = false;
	return r->extint_vec;
}

struct fixture {
	struct timer_queue q;
	struct lapic l;
	struct rec r;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct lapic_ops ops = { kick, send, eoi, ext_pending, ext_ack, NULL, &f->r };

	timer_queue_init(&f->q, NULL, NULL);
	f->r.eoi_vec = -1;
	lapic_init(&f->l, 0, 3, true, &f->q, &ops);
	/* Software-enable the APIC the way Linux does. */
	lapic_write(&f->l, 0xf0, 0x1ff);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	lapic_destroy(&f->l);
	timer_queue_destroy(&f->q);
	free(f);
	return 0;
}

static struct apic_msg fixed(uint8_t vec, bool level)
{
	return (struct apic_msg){ .vector = vec, .delivery = APIC_DM_FIXED, .trigger_level = level };
}

static void test_id_version(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(lapic_read(&f->l, 0x20), 3u << 24);
	assert_int_equal(lapic_read(&f->l, 0x30) & 0xff, 0x14);
	assert_int_equal(lapic_apic_id(&f->l), 3);
}

static void test_priority_and_eoi(void **state)
{
	struct fixture *f = *state;
	bool ext;

	struct apic_msg a = fixed(0x31, false), b = fixed(0x51, false);

	lapic_accept(&f->l, &a);
	lapic_accept(&f->l, &b);
	assert_true(f->r.kicks >= 2);
	assert_int_equal(lapic_next_vector(&f->l, &ext), 0x51);
	assert_false(ext);
	lapic_ack(&f->l, 0x51);
	/* 0x31 is in a lower class than the one in service: blocked by PPR. */
	assert_int_equal(lapic_read(&f->l, 0xa0), 0x50);
	assert_int_equal(lapic_next_vector(&f->l, &ext), -1);
	lapic_write(&f->l, 0xb0, 0);
	assert_int_equal(lapic_next_vector(&f->l, &ext), 0x31);
	/* TPR masks classes at or below it. */
	lapic_write(&f->l, 0x80, 0x40);
	assert_int_equal(lapic_next_vector(&f->l, &ext), -1);
	assert_false(lapic_has_event(&f->l));
	lapic_write(&f->l, 0x80, 0x00);
	assert_true(lapic_has_event(&f->l));
	/* IRR shows the pending vector. */
	assert_true(lapic_read(&f->l, 0x200 + (0x31 / 32) * 0x10) & (1u << (0x31 % 32)));
}

static void test_level_eoi_broadcast(void **state)
{
	struct fixture *f = *state;
	struct apic_msg m = fixed(0x61, true);
	bool ext;

	lapic_accept(&f->l, &m);
	assert_int_equal(lapic_next_vector(&f->l, &ext), 0x61);
	lapic_ack(&f->l, 0x61);
	assert_true(lapic_read(&f->l, 0x180 + 3 * 0x10) & (1u << 1));
	lapic_write(&f->l, 0xb0, 0);
	assert_int_equal(f->r.eoi_vec, 0x61);
}

static void test_icr_send(void **state)
{
	struct fixture *f = *state;

	lapic_write(&f->l, 0x310, 5u << 24);
	lapic_write(&f->l, 0x300, 0x4000 | (APIC_DM_FIXED << 8) | 0xfd);
	assert_int_equal(f->r.sent, 1);
	assert_int_equal(f->r.last.vector, 0xfd);
	assert_int_equal(f->r.last.dest, 5);
	assert_int_equal(f->r.last.shorthand, APIC_SH_NONE);
	/* all-excluding-self INIT */
	lapic_write(&f->l, 0x300, (3u << 18) | (APIC_DM_INIT << 8) | 0x4000);
	assert_int_equal(f->r.last.shorthand, APIC_SH_ALL_EXCL);
	assert_int_equal(f->r.last.delivery, APIC_DM_INIT);
	assert_int_equal(f->r.last.source, 0);
	/* The delivery-status bit reads idle: delivery is synchronous. */
	assert_int_equal(lapic_read(&f->l, 0x300) & (1u << 12), 0);
}

static void test_dest_match(void **state)
{
	struct fixture *f = *state;
	struct apic_msg m = { .dest = 3 };

	assert_true(lapic_match_dest(&f->l, &m));
	m.dest = 4;
	assert_false(lapic_match_dest(&f->l, &m));
	m.dest = 0xff;
	assert_true(lapic_match_dest(&f->l, &m));
	/* Flat logical mode: Linux puts 1 << cpu in LDR. */
	lapic_write(&f->l, 0xe0, 0xffffffff);
	lapic_write(&f->l, 0xd0, 0x08u << 24);
	m = (struct apic_msg){ .dest_logical = 1, .dest = 0x0c };
	assert_true(lapic_match_dest(&f->l, &m));
	m.dest = 0x03;
	assert_false(lapic_match_dest(&f->l, &m));
	/* Cluster mode: cluster 2, member bit 1. */
	lapic_write(&f->l, 0xe0, 0x0fffffff);
	lapic_write(&f->l, 0xd0, 0x22u << 24);
	m.dest = 0x22;
	assert_true(lapic_match_dest(&f->l, &m));
	m.dest = 0x32;
	assert_false(lapic_match_dest(&f->l, &m));
	m.dest = 0xf2;
	assert_true(lapic_match_dest(&f->l, &m));
}

static void test_timer_oneshot(void **state)
{
	struct fixture *f = *state;
	bool ext;

	timer_queue_set_time(&f->q, 1000);
	lapic_write(&f->l, 0x3e0, 0xb);        /* divide by 1 */
	lapic_write(&f->l, 0x320, 0xef);       /* one-shot, vector 0xef */
	lapic_write(&f->l, 0x380, 1000000);    /* 1 ms at 1 GHz */
	timer_queue_set_time(&f->q, 1000 + 400000);
	assert_int_equal(lapic_read(&f->l, 0x390), 600000);
	assert_int_equal(timer_queue_run(&f->q), 0);
	timer_queue_set_time(&f->q, 1000 + 1000000);
	assert_int_equal(timer_queue_run(&f->q), 1);
	assert_int_equal(lapic_next_vector(&f->l, &ext), 0xef);
	assert_int_equal(lapic_read(&f->l, 0x390), 0);
	timer_queue_set_time(&f->q, 1000 + 5000000);
	assert_int_equal(timer_queue_run(&f->q), 0);
}

static void test_timer_periodic_divider(void **state)
{
	struct fixture *f = *state;

	timer_queue_set_time(&f->q, 0);
	lapic_write(&f->l, 0x3e0, 0x3);              /* divide by 16 */
	lapic_write(&f->l, 0x320, (1u << 17) | 0x30); /* periodic */
	lapic_write(&f->l, 0x380, 62500);            /* 16 * 62500 ns = 1 ms */
	for (int i = 1; i <= 5; i++) {
		timer_queue_set_time(&f->q, (uint64_t)i * 1000000);
		assert_int_equal(timer_queue_run(&f->q), 1);
	}
	assert_int_equal(f->l.timer_fired, 5);
	/* A host stall of 100 periods yields one interrupt, not a hundred. */
	timer_queue_set_time(&f->q, 105 * 1000000ULL + 10);
	assert_int_equal(timer_queue_run(&f->q), 1);
	timer_queue_set_time(&f->q, 105 * 1000000ULL + 20);
	assert_int_equal(timer_queue_run(&f->q), 0);
	/* Writing 0 stops it. */
	lapic_write(&f->l, 0x380, 0);
	timer_queue_set_time(&f->q, 200 * 1000000ULL);
	assert_int_equal(timer_queue_run(&f->q), 0);
}

static void test_masked_timer_and_disable(void **state)
{
	struct fixture *f = *state;
	bool ext;

	timer_queue_set_time(&f->q, 0);
	lapic_write(&f->l, 0x3e0, 0xb);
	lapic_write(&f->l, 0x320, (1u << 16) | 0xef);
	lapic_write(&f->l, 0x380, 100);
	timer_queue_set_time(&f->q, 1000);
	timer_queue_run(&f->q);
	assert_int_equal(lapic_next_vector(&f->l, &ext), -1);
	/* A software-disabled APIC masks every LVT entry and accepts nothing fixed. */
	lapic_write(&f->l, 0xf0, 0xff);
	assert_true(lapic_read(&f->l, 0x350) & (1u << 16));
	struct apic_msg m = fixed(0x40, false);
	lapic_accept(&f->l, &m);
	assert_int_equal(lapic_next_vector(&f->l, &ext), -1);
}

static void test_init_sipi(void **state)
{
	struct timer_queue q;
	struct lapic ap;
	struct rec r = { .eoi_vec = -1 };
	struct lapic_ops ops = { kick, send, eoi, ext_pending, ext_ack, NULL, &r };
	struct lapic_events ev;
	struct apic_msg init = { .delivery = APIC_DM_INIT, .level = 1 };
	struct apic_msg deassert = { .delivery = APIC_DM_INIT, .level = 0, .trigger_level = 1 };
	struct apic_msg sipi = { .delivery = APIC_DM_SIPI, .vector = 0x9a };

	(void)state;
	timer_queue_init(&q, NULL, NULL);
	lapic_init(&ap, 1, 1, false, &q, &ops);
	assert_true(lapic_waiting_for_sipi(&ap));
	lapic_accept(&ap, &init);
	lapic_accept(&ap, &deassert);
	lapic_accept(&ap, &sipi);
	lapic_accept(&ap, &sipi);  /* the second SIPI is ignored */
	lapic_take_events(&ap, &ev);
	assert_true(ev.init);
	assert_int_equal(ev.sipi, 0x9a);
	assert_false(lapic_waiting_for_sipi(&ap));
	lapic_accept(&ap, &sipi); /* running CPUs ignore SIPI */
	lapic_take_events(&ap, &ev);
	assert_int_equal(ev.sipi, -1);
	/* NMI */
	struct apic_msg nmi = { .delivery = APIC_DM_NMI };
	lapic_accept(&ap, &nmi);
	assert_true(lapic_has_nmi_init(&ap));
	lapic_take_events(&ap, &ev);
	assert_true(ev.nmi);
	lapic_destroy(&ap);
	timer_queue_destroy(&q);
}

static void test_extint(void **state)
{
	struct fixture *f = *state;
	bool ext;

	/* The BSP powers on with LINT0 as ExtINT (virtual wire). */
	f->r.extint = true;
	f->r.extint_vec = 0x20;
	assert_true(lapic_has_event(&f->l));
	assert_int_equal(lapic_next_vector(&f->l, &ext), 0x20);
	assert_true(ext);
	/* Masking LINT0 hides the 8259. */
	lapic_write(&f->l, 0x350, (1u << 16) | (7u << 8));
	f->r.extint = true;
	assert_false(lapic_has_event(&f->l));
}

static void test_cr8(void **state)
{
	struct fixture *f = *state;

	lapic_set_cr8(&f->l, 5);
	assert_int_equal(lapic_read(&f->l, 0x80), 0x50);
	lapic_write(&f->l, 0x80, 0x9f);
	assert_int_equal(lapic_get_cr8(&f->l), 9);
}

static void test_illegal_vector(void **state)
{
	struct fixture *f = *state;
	struct apic_msg m = fixed(3, false);
	bool ext;

	lapic_accept(&f->l, &m);
	assert_int_equal(lapic_next_vector(&f->l, &ext), -1);
	assert_true(lapic_read(&f->l, 0x280) & (1u << 6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_id_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_and_eoi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_eoi_broadcast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icr_send, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dest_match, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_oneshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_periodic_divider, setup, teardown),
		cmocka_unit_test_setup_teardown(test_masked_timer_and_disable, setup, teardown),
		cmocka_unit_test(test_init_sipi),
		cmocka_unit_test_setup_teardown(test_extint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cr8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_illegal_vector, setup, teardown),
	};

	return cmocka_run_group_tests_name("lapic", tests, NULL, NULL);
}
