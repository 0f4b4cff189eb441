// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "vmm/acpi.h"
#include "vmm/ioapic.h"
#include "vmm/irq.h"

#define MAX_MSGS 32

struct fixture {
	struct ioapic io;
	struct apic_bus bus;
	struct io_bus mmio;
	struct apic_msg msg[MAX_MSGS];
	unsigned n;
	int eoi_from_deliver;  /* a LAPIC that EOIs at once, this many times */
};

static void rec_deliver(void *ctx, const struct apic_msg *m)
{
	struct fixture *f = ctx;

	assert_true(f->n < MAX_MSGS);
	f->msg[f->n++] = *m;
	/* The IOAPIC lock must not be held here: re-enter it. */
	if (f->eoi_from_deliver > 0 && m->trigger_level) {
		f->eoi_from_deliver--;
		ioapic_eoi(&f->io, m->vector);
	}
}

static int setup(void **state)
{
	struct fixture *f = test_calloc(1, sizeof(*f));

	f->bus.deliver = rec_deliver;
	f->bus.ctx = f;
	ioapic_init(&f->io, 1, &f->bus);
	io_bus_init(&f->mmio);
	assert_int_equal(ioapic_register(&f->io, &f->mmio), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ioapic_destroy(&f->io);
	test_free(f);
	return 0;
}

static void mmio(struct fixture *f, uint64_t off, int write, uint32_t *val)
{
	struct io_req r = { .space = IO_SPACE_MMIO, .is_write = write, .len = 4,
			    .addr = IOAPIC_BASE_GPA + off, .data = write ? *val : 0 };

	assert_true(io_bus_dispatch(&f->mmio, &r));
	if (!write)
		*val = r.data;
}

static uint32_t reg_read(struct fixture *f, uint32_t reg)
{
	uint32_t v;

	mmio(f, IOAPIC_IOREGSEL, 1, &reg);
	mmio(f, IOAPIC_IOWIN, 0, &v);
	return v;
}

static void reg_write(struct fixture *f, uint32_t reg, uint32_t v)
{
	mmio(f, IOAPIC_IOREGSEL, 1, &reg);
	mmio(f, IOAPIC_IOWIN, 1, &v);
}

/* Programs a pin the way Linux does: high dword, then low dword. */
static void set_rte(struct fixture *f, unsigned pin, uint64_t e)
{
	reg_write(f, IOAPIC_REG_REDTBL + 2 * pin + 1, e >> 32);
	reg_write(f, IOAPIC_REG_REDTBL + 2 * pin, (uint32_t)e);
}

static uint64_t get_rte(struct fixture *f, unsigned pin)
{
	return (uint64_t)reg_read(f, IOAPIC_REG_REDTBL + 2 * pin + 1) << 32 |
	       reg_read(f, IOAPIC_REG_REDTBL + 2 * pin);
}

static uint64_t rte(uint8_t vector, unsigned delmode, int logical, int level, uint8_t dest)
{
	return vector | (uint64_t)delmode << IOAPIC_RTE_DELMODE_SHIFT |
	       (logical ? IOAPIC_RTE_DESTMODE : 0) | (level ? IOAPIC_RTE_TRIGGER : 0) |
	       (uint64_t)dest << IOAPIC_RTE_DEST_SHIFT;
}

static void test_version_and_id(void **state)
{
	struct fixture *f = *state;
	uint32_t v;

	assert_int_equal(reg_read(f, IOAPIC_REG_VER), 0x00170020);
	assert_int_equal((reg_read(f, IOAPIC_REG_VER) >> 16) & 0xff, IOAPIC_NR_PINS - 1);
	assert_int_equal(reg_read(f, IOAPIC_REG_ID), 1u << 24);
	assert_int_equal(reg_read(f, IOAPIC_REG_ARB), 1u << 24);
	reg_write(f, IOAPIC_REG_ID, 5u << 24);
	assert_int_equal(reg_read(f, IOAPIC_REG_ID), 5u << 24);
	/* Version is read-only. */
	reg_write(f, IOAPIC_REG_VER, 0);
	assert_int_equal(reg_read(f, IOAPIC_REG_VER), 0x00170020);
	/* IOREGSEL reads back. */
	mmio(f, IOAPIC_IOREGSEL, 0, &v);
	assert_int_equal(v, IOAPIC_REG_VER);
	/* Every pin comes up masked. */
	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++)
		assert_int_equal(get_rte(f, pin), IOAPIC_RTE_MASK);
}

static void test_register_reads(void **state)
{
	struct fixture *f = *state;
	uint32_t v = 0x1234;

	/* Read-only and reserved bits do not stick. */
	set_rte(f, 3, 0x00ffffffffffffffULL | (0xabULL << IOAPIC_RTE_DEST_SHIFT));
	assert_int_equal(get_rte(f, 3), (0xabULL << IOAPIC_RTE_DEST_SHIFT) | 0x1afff);
	/* Registers past the table read as 0. */
	assert_int_equal(reg_read(f, IOAPIC_REG_REDTBL + 2 * IOAPIC_NR_PINS), 0);
	assert_int_equal(reg_read(f, 0x03), 0);
	/* So do unknown offsets in the window. */
	mmio(f, 0x20, 0, &v);
	assert_int_equal(v, 0);
	assert_int_equal(f->n, 0);
}

static void test_edge_delivery(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 4, rte(0x24, APIC_DM_FIXED, 0, 0, 3));
	assert_int_equal(f->n, 0);
	ioapic_set_irq(&f->io, 4, 1);
	assert_int_equal(f->n, 1);
	assert_int_equal(f->msg[0].vector, 0x24);
	assert_int_equal(f->msg[0].delivery, APIC_DM_FIXED);
	assert_int_equal(f->msg[0].dest_logical, 0);
	assert_int_equal(f->msg[0].dest, 3);
	assert_int_equal(f->msg[0].level, 1);
	assert_int_equal(f->msg[0].trigger_level, 0);
	assert_int_equal(f->msg[0].shorthand, APIC_SH_NONE);
	assert_int_equal(f->msg[0].source, IOAPIC_MSG_SOURCE);
	/* No new edge while the line stays up; none on the falling edge. */
	ioapic_set_irq(&f->io, 4, 1);
	ioapic_set_irq(&f->io, 4, 0);
	assert_int_equal(f->n, 1);
	ioapic_set_irq(&f->io, 4, 1);
	assert_int_equal(f->n, 2);
	/* Edge pins have no remote IRR; an EOI does nothing. */
	assert_int_equal(get_rte(f, 4) & IOAPIC_RTE_REMOTE_IRR, 0);
	ioapic_eoi(&f->io, 0x24);
	assert_int_equal(f->n, 2);
	/* Out-of-range pins are ignored. */
	ioapic_set_irq(&f->io, IOAPIC_NR_PINS, 1);
	assert_int_equal(f->n, 2);
}

static void test_masked_edge_is_lost(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 4, rte(0x24, APIC_DM_FIXED, 0, 0, 0) | IOAPIC_RTE_MASK);
	ioapic_set_irq(&f->io, 4, 1);
	assert_int_equal(f->n, 0);
	set_rte(f, 4, rte(0x24, APIC_DM_FIXED, 0, 0, 0));
	assert_int_equal(f->n, 0);
	ioapic_set_irq(&f->io, 4, 0);
	ioapic_set_irq(&f->io, 4, 1);
	assert_int_equal(f->n, 1);
}

static void test_level_remote_irr_and_eoi(void **state)
{
	struct fixture *f = *state;

	/* The SCI as Linux programs it: level, active low. */
	set_rte(f, 9, rte(0x39, APIC_DM_FIXED, 0, 1, 0) | IOAPIC_RTE_POLARITY);
	ioapic_set_irq(&f->io, 9, 1);
	assert_int_equal(f->n, 1);
	assert_int_equal(f->msg[0].vector, 0x39);
	assert_int_equal(f->msg[0].trigger_level, 1);
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* Held back by remote IRR. */
	ioapic_set_irq(&f->io, 9, 1);
	assert_int_equal(f->n, 1);
	/* An EOI for another vector leaves it alone. */
	ioapic_eoi(&f->io, 0x40);
	assert_int_equal(f->n, 1);
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* EOI with the line still asserted: delivered again. */
	ioapic_eoi(&f->io, 0x39);
	assert_int_equal(f->n, 2);
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* The device lowers the line; the next EOI just clears remote IRR. */
	ioapic_set_irq(&f->io, 9, 0);
	ioapic_eoi(&f->io, 0x39);
	assert_int_equal(f->n, 2);
	assert_int_equal(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR, 0);
	ioapic_set_irq(&f->io, 9, 1);
	assert_int_equal(f->n, 3);
}

static void test_unmask_asserted_level(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 11, rte(0x51, APIC_DM_FIXED, 0, 1, 2) | IOAPIC_RTE_MASK);
	ioapic_set_irq(&f->io, 11, 1);
	assert_int_equal(f->n, 0);
	assert_int_equal(get_rte(f, 11) & IOAPIC_RTE_REMOTE_IRR, 0);
	set_rte(f, 11, rte(0x51, APIC_DM_FIXED, 0, 1, 2));
	assert_int_equal(f->n, 1);
	assert_int_equal(f->msg[0].dest, 2);
	/* Re-writing the entry while remote IRR is set sends nothing more. */
	set_rte(f, 11, rte(0x51, APIC_DM_FIXED, 0, 1, 2));
	assert_int_equal(f->n, 1);
	/* Masked at EOI time: held until unmasked. */
	set_rte(f, 11, rte(0x51, APIC_DM_FIXED, 0, 1, 2) | IOAPIC_RTE_MASK);
	ioapic_eoi(&f->io, 0x51);
	assert_int_equal(f->n, 1);
	set_rte(f, 11, rte(0x51, APIC_DM_FIXED, 0, 1, 2));
	assert_int_equal(f->n, 2);
}

static void test_logical_lowest_priority(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 16, rte(0x61, APIC_DM_LOWEST, 1, 1, 0x0f));
	ioapic_set_irq(&f->io, 16, 1);
	assert_int_equal(f->n, 1);
	assert_int_equal(f->msg[0].vector, 0x61);
	assert_int_equal(f->msg[0].delivery, APIC_DM_LOWEST);
	assert_int_equal(f->msg[0].dest_logical, 1);
	assert_int_equal(f->msg[0].dest, 0x0f);
	assert_int_equal(f->msg[0].trigger_level, 1);
}

static void test_switch_to_edge_clears_remote_irr(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 10, rte(0x3a, APIC_DM_FIXED, 0, 1, 0));
	ioapic_set_irq(&f->io, 10, 1);
	assert_true(get_rte(f, 10) & IOAPIC_RTE_REMOTE_IRR);
	/* The pre-0x20 way of acknowledging: flip to edge and back. */
	set_rte(f, 10, rte(0x3a, APIC_DM_FIXED, 0, 0, 0) | IOAPIC_RTE_MASK);
	assert_int_equal(get_rte(f, 10) & IOAPIC_RTE_REMOTE_IRR, 0);
	ioapic_set_irq(&f->io, 10, 0);
	set_rte(f, 10, rte(0x3a, APIC_DM_FIXED, 0, 1, 0));
	assert_int_equal(f->n, 1);
}

static void test_eoi_register(void **state)
{
	struct fixture *f = *state;
	uint32_t vec = 0x3b;

	set_rte(f, 12, rte(0x3b, APIC_DM_FIXED, 0, 1, 0));
	ioapic_set_irq(&f->io, 12, 1);
	assert_int_equal(f->n, 1);
	mmio(f, IOAPIC_EOI, 1, &vec);
	assert_int_equal(f->n, 2);
}

static void test_deliver_may_reenter(void **state)
{
	struct fixture *f = *state;

	/* A LAPIC that EOIs from inside delivery: three nested re-deliveries. */
	f->eoi_from_deliver = 3;
	set_rte(f, 9, rte(0x39, APIC_DM_FIXED, 0, 1, 0));
	ioapic_set_irq(&f->io, 9, 1);
	assert_int_equal(f->n, 4);
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
}

static void test_state_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct ioapic_state st;
	struct ioapic other;

	set_rte(f, 9, rte(0x39, APIC_DM_FIXED, 0, 1, 4));
	ioapic_set_irq(&f->io, 9, 1);
	ioapic_get_state(&f->io, &st);

	ioapic_init(&other, 0, &f->bus);
	ioapic_set_state(&other, &st);
	/* Restoring sends nothing; the EOI owed to the old one works here. */
	assert_int_equal(f->n, 1);
	ioapic_eoi(&other, 0x39);
	assert_int_equal(f->n, 2);
	assert_int_equal(f->msg[1].dest, 4);

	ioapic_reset(&other);
	ioapic_get_state(&other, &st);
	assert_int_equal(st.redir[9], IOAPIC_RTE_MASK);
	assert_int_equal(st.irr, 1u << 9);
	ioapic_destroy(&other);
}

static void test_sink_adapter(void **state)
{
	struct fixture *f = *state;
	struct irq_sink sink = { .set_irq = ioapic_sink_set_irq, .ctx = &f->io };

	set_rte(f, 4, rte(0x24, APIC_DM_FIXED, 0, 0, 0));
	irq_set(&sink, 4, 1);
	assert_int_equal(f->n, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_version_and_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edge_delivery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_masked_edge_is_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_remote_irr_and_eoi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unmask_asserted_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_logical_lowest_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_switch_to_edge_clears_remote_irr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eoi_register, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deliver_may_reenter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_adapter, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
