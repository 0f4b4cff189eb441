// SPDX-License-Identifier: MIT
/*
 * PCI bus 0: configuration mechanism #1, BAR sizing and decoding through
 * the windows, command/status rules, capabilities, INTx wired-OR and
 * MSI-X, all driven through the I/O bus as a guest would.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmm/pci.h"

#define MAX_MSGS 16

struct fx {
	struct io_bus io;
	struct pci_bus bus;
	struct irq_sink irq;
	struct apic_bus apic;
	int level[32];
	int irq_events;
	struct apic_msg msg[MAX_MSGS];
	unsigned nmsg;
	struct pci_device dev, dev2;
	struct pci_msix msix;
	/* What the test device's BAR handlers saw. */
	uint64_t last_off, last_data;
	unsigned last_len, bar_hits;
	int last_bar;
};

static void rec_irq(void *ctx, unsigned gsi, int level)
{
	struct fx *f = ctx;

	assert_true(gsi < 32);
	f->level[gsi] = level;
	f->irq_events++;
}

static void rec_msg(void *ctx, const struct apic_msg *m)
{
	struct fx *f = ctx;

	assert_true(f->nmsg < MAX_MSGS);
	f->msg[f->nmsg++] = *m;
}

static void bar_rd(struct fx *f, int bar, uint64_t off, unsigned len, uint64_t *data)
{
	f->last_bar = bar;
	f->last_off = off;
	f->last_len = len;
	f->bar_hits++;
	*data = 0x1000 * (uint64_t)bar + off;
}

static void bar_wr(struct fx *f, int bar, uint64_t off, unsigned len, uint64_t data)
{
	f->last_bar = bar;
	f->last_off = off;
	f->last_len = len;
	f->last_data = data;
	f->bar_hits++;
}

static struct fx *the_fx;
static void rd0(void *o, uint64_t off, unsigned len, uint64_t *d) { bar_rd(the_fx, 0, off, len, d); }
static void wr0(void *o, uint64_t off, unsigned len, uint64_t d) { bar_wr(the_fx, 0, off, len, d); }
static void rd2(void *o, uint64_t off, unsigned len, uint64_t *d) { bar_rd(the_fx, 2, off, len, d); }
static void wr2(void *o, uint64_t off, unsigned len, uint64_t d) { bar_wr(the_fx, 2, off, len, d); }
static void rd5(void *o, uint64_t off, unsigned len, uint64_t *d) { bar_rd(the_fx, 5, off, len, d); }
static void wr5(void *o, uint64_t off, unsigned len, uint64_t d) { bar_wr(the_fx, 5, off, len, d); }

static int setup(void **state)
{
	struct fx *f = test_calloc(1, sizeof(*f));

	the_fx = f;
	f->irq = (struct irq_sink){ rec_irq, f };
	f->apic = (struct apic_bus){ rec_msg, f };
	io_bus_init(&f->io);
	pci_bus_init(&f->bus, &f->irq, &f->apic);
	assert_int_equal(pci_bus_register(&f->bus, &f->io), 0);
	/* A test function: 4 KiB 32-bit BAR 0, 16 KiB 64-bit BAR 2, 32-port I/O BAR 5. */
	pci_device_init(&f->dev, "test", 0x1234, 0x5678, 0x0780ab, 3, 0x1af4, 0x99);
	assert_int_equal(pci_device_set_bar(&f->dev, 0, 4096, PCI_BAR_MEM32, rd0, wr0, f), 0);
	assert_int_equal(pci_device_set_bar(&f->dev, 2, 16384, PCI_BAR_MEM64, rd2, wr2, f), 0);
	assert_int_equal(pci_device_set_bar(&f->dev, 5, 32, PCI_BAR_IO, rd5, wr5, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->msix.dev)
		pci_msix_destroy(&f->msix);
	pci_bus_destroy(&f->bus);
	test_free(f);
	return 0;
}

static uint64_t pio(struct fx *f, uint16_t port, unsigned len, int write, uint64_t v)
{
	struct io_req r = { .space = IO_SPACE_PIO, .is_write = (uint8_t)write, .len = (uint8_t)len,
			    .addr = port, .data = v };

	io_bus_dispatch(&f->io, &r);
	return r.data;
}

static uint64_t mmio(struct fx *f, uint64_t addr, unsigned len, int write, uint64_t v)
{
	struct io_req r = { .space = IO_SPACE_MMIO, .is_write = (uint8_t)write, .len = (uint8_t)len,
			    .addr = addr, .data = v };

	io_bus_dispatch(&f->io, &r);
	return r.data;
}

static uint32_t caddr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t cfg_rd(struct fx *f, unsigned slot, unsigned reg, unsigned len)
{
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, slot, 0, reg));
	return (uint32_t)pio(f, (uint16_t)(PCI_CONFIG_DATA + (reg & 3)), len, 0, 0);
}

static void cfg_wr(struct fx *f, unsigned slot, unsigned reg, unsigned len, uint32_t v)
{
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, slot, 0, reg));
	pio(f, (uint16_t)(PCI_CONFIG_DATA + (reg & 3)), len, 1, v);
}

static void test_mechanism1(void **state)
{
	struct fx *f = *state;

	/* Linux's probe: a dword write to 0xCF8 reads back. */
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, 0x80000000);
	assert_int_equal(pio(f, PCI_CONFIG_ADDRESS, 4, 0, 0), 0x80000000);
	/* Byte and word accesses are not CONFIG_ADDRESS. */
	pio(f, PCI_CONFIG_ADDRESS, 1, 1, 0);
	assert_int_equal(pio(f, PCI_CONFIG_ADDRESS, 4, 0, 0), 0x80000000);
	assert_int_equal(pio(f, PCI_CONFIG_ADDRESS, 2, 0, 0), 0xffff);

	/* The host bridge at 00:00.0. */
	assert_int_equal(cfg_rd(f, 0, PCI_VENDOR_ID, 4), PCI_HOST_DEVICE << 16 | PCI_HOST_VENDOR);
	assert_int_equal(cfg_rd(f, 0, PCI_REVISION_ID, 4) >> 8, 0x060000);
	assert_int_equal(cfg_rd(f, 0, PCI_CLASS_PROG + 1, 2), 0x0600);
	assert_int_equal(cfg_rd(f, 0, PCI_HEADER_TYPE, 1), 0);
	/* Word and byte reads inside the dword. */
	assert_int_equal(cfg_rd(f, 0, PCI_DEVICE_ID, 2), PCI_HOST_DEVICE);
	assert_int_equal(cfg_rd(f, 0, PCI_DEVICE_ID + 1, 1), PCI_HOST_DEVICE >> 8);

	/* Nothing else answers: empty slots, other functions, other buses, disabled. */
	assert_int_equal(cfg_rd(f, 5, 0, 4), 0xffffffff);
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, 0, 1, 0));
	assert_int_equal(pio(f, PCI_CONFIG_DATA, 4, 0, 0), 0xffffffff);
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(1, 0, 0, 0));
	assert_int_equal(pio(f, PCI_CONFIG_DATA, 2, 0, 0), 0xffff);
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, 0, 0, 0) & 0x7fffffff);
	assert_int_equal(pio(f, PCI_CONFIG_DATA, 4, 0, 0), 0xffffffff);
	/* AMD's extended register bits select offsets beyond 256: nothing there. */
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, 0, 0, 0) | 0x01000000);
	assert_int_equal(pio(f, PCI_CONFIG_DATA, 4, 0, 0), 0xffffffff);
	/* The host bridge ignores writes to its IDs. */
	cfg_wr(f, 0, PCI_VENDOR_ID, 4, 0);
	assert_int_equal(cfg_rd(f, 0, PCI_VENDOR_ID, 2), PCI_HOST_VENDOR);
}

static void test_add_and_header(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	assert_int_equal(cfg_rd(f, 1, PCI_VENDOR_ID, 4), 0x56781234);
	assert_int_equal(cfg_rd(f, 1, PCI_REVISION_ID, 4), 0x0780ab03);
	assert_int_equal(cfg_rd(f, 1, PCI_SUBSYSTEM_VENDOR, 4), 0x00991af4);
	assert_int_equal(cfg_rd(f, 1, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(cfg_rd(f, 1, PCI_INTERRUPT_LINE, 1), PCI_INTX_GSI_BASE + 1);
	assert_int_equal(f->dev.gsi, 17);
	/* Pre-assigned, naturally aligned, decoding on. */
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xc0000000);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), 0xc0004000 | PCI_BAR_MEM64);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 12, 4), 0);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 20, 4), 0x1000 | PCI_BAR_IO);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2), PCI_COMMAND_IO | PCI_COMMAND_MEMORY);
	/* Unimplemented BAR and no expansion ROM: zero, whatever is written. */
	cfg_wr(f, 1, PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 4, 4), 0);
	cfg_wr(f, 1, PCI_ROM_ADDRESS, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_ROM_ADDRESS, 4), 0);
	/* Read-only identity. */
	cfg_wr(f, 1, PCI_VENDOR_ID, 4, 0);
	assert_int_equal(cfg_rd(f, 1, PCI_VENDOR_ID, 4), 0x56781234);
	/* A chosen slot, a taken slot, a full bus. */
	pci_device_init(&f->dev2, "two", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_bus_add(&f->bus, &f->dev2, 1), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->bus, &f->dev2, 9), 9);
	assert_int_equal(f->dev2.gsi, 17);
}

static void test_bar_sizing(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	cfg_wr(f, 1, PCI_COMMAND, 2, 0);
	cfg_wr(f, 1, PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xfffff000);
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0xffffffff);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 8, 4), 0xffffc000 | PCI_BAR_MEM64);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 12, 4), 0xffffffff);
	cfg_wr(f, 1, PCI_BAR0 + 20, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0 + 20, 4) & 0xffff, 0xffe1);
	/* Byte writes merge into the register. */
	cfg_wr(f, 1, PCI_BAR0 + 3, 1, 0xd0);
	cfg_wr(f, 1, PCI_BAR0 + 1, 2, 0x0010);
	assert_int_equal(cfg_rd(f, 1, PCI_BAR0, 4), 0xd0001000);
	assert_int_equal(f->dev.bar[0].addr, 0xd0001000);
	/* The 64-bit BAR takes both halves. */
	cfg_wr(f, 1, PCI_BAR0 + 8, 4, 0x12345678);
	cfg_wr(f, 1, PCI_BAR0 + 12, 4, 0x9);
	assert_int_equal(f->dev.bar[2].addr, 0x912344000ULL);
}

static void test_bar_decode_and_move(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	assert_int_equal(mmio(f, 0xc0000010, 4, 0, 0), 0x10);
	assert_int_equal(f->last_bar, 0);
	assert_int_equal(f->last_len, 4);
	mmio(f, 0xc0004ff8, 8, 1, 0x1122334455667788ULL);
	assert_int_equal(f->last_bar, 2);
	assert_int_equal(f->last_off, 0xff8);
	assert_int_equal(f->last_data, 0x1122334455667788ULL);
	assert_int_equal(pio(f, 0x1004, 2, 0, 0), 0x5004);
	/* Between BARs: nothing, all ones. */
	f->bar_hits = 0;
	assert_int_equal(mmio(f, 0xc0001000, 4, 0, 0), 0xffffffff);
	assert_int_equal(f->bar_hits, 0);

	/* Memory decoding off: the BARs are gone; I/O stays. */
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	assert_int_equal(mmio(f, 0xc0000010, 4, 0, 0), 0xffffffff);
	assert_int_equal(f->bar_hits, 0);
	assert_int_equal(pio(f, 0x1004, 1, 0, 0), 0x04);
	cfg_wr(f, 1, PCI_COMMAND, 2, 0);
	assert_int_equal(pio(f, 0x1004, 1, 0, 0), 0xff);

	/* The guest moves BAR 0 and turns decoding back on. */
	cfg_wr(f, 1, PCI_BAR0, 4, 0xe0000000);
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
	f->bar_hits = 0;
	assert_int_equal(mmio(f, 0xc0000010, 4, 0, 0), 0xffffffff);
	assert_int_equal(f->bar_hits, 0);
	assert_int_equal(mmio(f, 0xe0000020, 4, 0, 0), 0x20);
	assert_int_equal(f->bar_hits, 1);
}

static void test_command_status(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	cfg_wr(f, 1, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 2), 0x0547);
	assert_true(pci_bus_master(&f->dev));
	/* Error bits are write-one-to-clear; the rest of status is read-only. */
	f->dev.cfg[PCI_STATUS + 1] = 0x81;       /* parity error + 66 MHz... */
	cfg_wr(f, 1, PCI_STATUS, 2, 0x8000 | PCI_STATUS_CAP_LIST);
	assert_int_equal(cfg_rd(f, 1, PCI_STATUS, 2), 0x0100);
	/* A dword write to command+status: command changes, status bits are cleared by ones. */
	cfg_wr(f, 1, PCI_COMMAND, 4, 0x01000002);
	assert_int_equal(cfg_rd(f, 1, PCI_COMMAND, 4), 0x00000002);
	assert_false(pci_bus_master(&f->dev));
	cfg_wr(f, 1, PCI_CACHE_LINE_SIZE, 1, 0x10);
	assert_int_equal(cfg_rd(f, 1, PCI_CACHE_LINE_SIZE, 1), 0x10);
	cfg_wr(f, 1, PCI_INTERRUPT_PIN, 1, 3);
	assert_int_equal(cfg_rd(f, 1, PCI_INTERRUPT_PIN, 1), 1);
}

static void test_capabilities(void **state)
{
	struct fx *f = *state;
	int a, b;
	unsigned at;

	a = pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 14);
	b = pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 16);
	assert_int_equal(a, 0x40);
	assert_int_equal(b, 0x50);   /* dword aligned after 0x40 + 14 */
	assert_int_equal(pci_device_add_cap(&f->dev, PCI_CAP_ID_VNDR, 200), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	assert_true(cfg_rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	at = cfg_rd(f, 1, PCI_CAPABILITY_LIST, 1);
	assert_int_equal(at, 0x40);
	assert_int_equal(cfg_rd(f, 1, at, 1), PCI_CAP_ID_VNDR);
	at = cfg_rd(f, 1, at + 1, 1);
	assert_int_equal(at, 0x50);
	assert_int_equal(cfg_rd(f, 1, at + 1, 1), 0);
	/* Capability bodies are read-only unless the device says otherwise. */
	cfg_wr(f, 1, 0x44, 4, 0xffffffff);
	assert_int_equal(cfg_rd(f, 1, 0x44, 4), 0);
	/* An access that would run past 256 bytes is dropped. */
	pio(f, PCI_CONFIG_ADDRESS, 4, 1, caddr(0, 1, 0, 0xfc));
	assert_int_equal(pio(f, PCI_CONFIG_DATA + 2, 4, 0, 0), 0xffffffff);
}

static void test_intx_wired_or(void **state)
{
	struct fx *f = *state;

	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	pci_device_init(&f->dev2, "two", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_bus_add(&f->bus, &f->dev2, 9), 9);
	pci_set_intx(&f->dev, 1);
	assert_int_equal(f->level[17], 1);
	assert_true(cfg_rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_set_intx(&f->dev2, 1);
	pci_set_intx(&f->dev, 0);
	assert_int_equal(f->level[17], 1);       /* dev2 still holds it */
	assert_false(cfg_rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	pci_set_intx(&f->dev2, 0);
	assert_int_equal(f->level[17], 0);
	/* The command register's INTx disable masks the line but not the status. */
	f->irq_events = 0;
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE);
	pci_set_intx(&f->dev, 1);
	assert_int_equal(f->level[17], 0);
	assert_int_equal(f->irq_events, 0);
	assert_true(cfg_rd(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(f->level[17], 1);
	cfg_wr(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE);
	assert_int_equal(f->level[17], 0);
}

static void test_msi_to_apic(void **state)
{
	struct apic_msg m;

	assert_true(pci_msi_to_apic(0xfee03000, 0x0041, &m));
	assert_int_equal(m.dest, 3);
	assert_int_equal(m.vector, 0x41);
	assert_int_equal(m.delivery, APIC_DM_FIXED);
	assert_false(m.dest_logical);
	assert_false(m.trigger_level);
	assert_int_equal(m.shorthand, APIC_SH_NONE);
	/* Logical, redirection hint: lowest priority. */
	assert_true(pci_msi_to_apic(0xfee0f00c, 0x0031, &m));
	assert_true(m.dest_logical);
	assert_int_equal(m.dest, 0x0f);
	assert_int_equal(m.delivery, APIC_DM_LOWEST);
	assert_true(pci_msi_to_apic(0xfee00000, 0x8000 | 0x100 | 0x22, &m));
	assert_int_equal(m.delivery, APIC_DM_LOWEST);
	assert_true(m.trigger_level);
	assert_true(pci_msi_to_apic(0xfee00000, 0x400, &m));
	assert_int_equal(m.delivery, APIC_DM_NMI);
	/* Not the interrupt address range, or a mode a device may not use. */
	assert_false(pci_msi_to_apic(0xfed00000, 0x41, &m));
	assert_false(pci_msi_to_apic(0x1fee00000ULL, 0x41, &m));
	assert_false(pci_msi_to_apic(0xfee00000, 0x200 | 0x41, &m));   /* SMI */
	assert_false(pci_msi_to_apic(0xfee00000, 0x600 | 0x41, &m));   /* SIPI */
	assert_false(pci_msi_to_apic(0xfee00000, 0x700 | 0x41, &m));   /* ExtINT */
}

static unsigned msix_cap(struct fx *f)
{
	unsigned at = cfg_rd(f, 1, PCI_CAPABILITY_LIST, 1);

	while (at && cfg_rd(f, 1, at, 1) != PCI_CAP_ID_MSIX)
		at = cfg_rd(f, 1, at + 1, 1);
	assert_int_not_equal(at, 0);
	return at;
}

static void test_msix(void **state)
{
	struct fx *f = *state;
	uint64_t table;
	unsigned cap;

	assert_int_equal(pci_msix_init(&f->msix, &f->dev, 4, 1), 0);
	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 1);
	cap = msix_cap(f);
	assert_int_equal(cfg_rd(f, 1, cap + 2, 2), 3);             /* table size - 1 */
	assert_int_equal(cfg_rd(f, 1, cap + 4, 4), 1);             /* table at 0 in BAR 1 */
	assert_int_equal(cfg_rd(f, 1, cap + 8, 4), 2048 | 1);      /* PBA */
	table = f->dev.bar[1].addr;
	assert_int_equal(table, 0xc0001000);
	/* Vectors start masked. */
	assert_int_equal(mmio(f, table + 16 * 2 + 12, 4, 0, 0), 1);

	/* Disabled: the device must use INTx. */
	assert_false(pci_msix_enabled(&f->msix));
	assert_false(pci_msix_notify(&f->msix, 2));

	/* Linux's order: enable with the function masked, program, unmask. */
	cfg_wr(f, 1, cap + 2, 2, 0xc000);
	assert_true(pci_msix_enabled(&f->msix));
	mmio(f, table + 16 * 2, 8, 1, 0xfee01000);     /* address, qword */
	mmio(f, table + 16 * 2 + 8, 4, 1, 0x41);
	mmio(f, table + 16 * 2 + 12, 4, 1, 0);
	assert_int_equal(mmio(f, table + 16 * 2, 4, 0, 0), 0xfee01000);
	assert_int_equal(mmio(f, table + 16 * 2 + 8, 8, 0, 0), 0x41);
	assert_true(pci_msix_notify(&f->msix, 2));
	assert_int_equal(f->nmsg, 0);
	assert_int_equal(mmio(f, table + 2048, 8, 0, 0), 1 << 2);    /* pending */
	cfg_wr(f, 1, cap + 3, 1, 0x80);                              /* function unmask */
	assert_int_equal(f->nmsg, 1);
	assert_int_equal(f->msg[0].vector, 0x41);
	assert_int_equal(f->msg[0].dest, 1);
	assert_int_equal(mmio(f, table + 2048, 4, 0, 0), 0);

	assert_true(pci_msix_notify(&f->msix, 2));
	assert_int_equal(f->nmsg, 2);

	/* A masked vector goes pending; unmasking sends it. */
	mmio(f, table + 16 * 2 + 12, 4, 1, 1);
	assert_true(pci_msix_notify(&f->msix, 2));
	assert_int_equal(f->nmsg, 2);
	mmio(f, table + 16 * 2 + 12, 4, 1, 0);
	assert_int_equal(f->nmsg, 3);
	/* The PBA is read-only; reserved control bits read as zero. */
	mmio(f, table + 2048, 8, 1, ~0ULL);
	assert_int_equal(mmio(f, table + 2048, 8, 0, 0), 0);
	mmio(f, table + 16 * 2 + 12, 4, 1, 0xfffffffe);
	assert_int_equal(mmio(f, table + 16 * 2 + 12, 4, 0, 0), 0);
	/* Misaligned or odd-sized table accesses are ignored. */
	mmio(f, table + 16 * 2 + 9, 1, 1, 0xff);
	assert_int_equal(mmio(f, table + 16 * 2 + 8, 4, 0, 0), 0x41);

	/* A vector with a bad address is dropped; out of range is refused. */
	mmio(f, table + 16 * 3, 4, 1, 0x12345678);
	mmio(f, table + 16 * 3 + 12, 4, 1, 0);
	assert_true(pci_msix_notify(&f->msix, 3));
	assert_int_equal(f->nmsg, 3);
	assert_false(pci_msix_notify(&f->msix, 4));

	cfg_wr(f, 1, cap + 2, 2, 0);
	assert_false(pci_msix_notify(&f->msix, 2));
	assert_int_equal(f->nmsg, 3);
}

static void test_bar_api(void **state)
{
	struct fx *f = *state;
	uint64_t v = 0;

	pci_device_init(&f->dev2, "two", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_device_set_bar(&f->dev2, 0, 3000, PCI_BAR_MEM32, NULL, NULL, NULL),
			 -EINVAL);
	assert_int_equal(pci_device_set_bar(&f->dev2, 5, 4096, PCI_BAR_MEM64, NULL, NULL, NULL),
			 -EINVAL);
	assert_int_equal(pci_device_set_bar(&f->dev2, 0, 512, PCI_BAR_IO, NULL, NULL, NULL),
			 -EINVAL);
	assert_int_equal(pci_device_set_bar(&f->dev2, 6, 4096, PCI_BAR_MEM32, NULL, NULL, NULL),
			 -EINVAL);
	assert_int_equal(pci_device_set_bar(&f->dev2, 1, 4096, PCI_BAR_MEM32, NULL, NULL, NULL), 0);
	assert_int_equal(pci_device_set_bar(&f->dev2, 1, 4096, PCI_BAR_MEM32, NULL, NULL, NULL),
			 -EINVAL);
	/* Direct BAR access (the virtio PCI-configuration window uses it). */
	assert_true(pci_bar_access(&f->dev, 2, 0x10, 2, false, &v));
	assert_int_equal(v, 0x2010);
	assert_false(pci_bar_access(&f->dev, 2, 16383, 2, false, &v));
	assert_false(pci_bar_access(&f->dev, 3, 0, 4, false, &v));
	assert_false(pci_bar_access(&f->dev, 1, 0, 4, false, &v));
	v = 7;
	assert_true(pci_bar_access(&f->dev, 0, 8, 4, true, &v));
	assert_int_equal(f->last_data, 7);
}

static void test_window_full(void **state)
{
	struct fx *f = *state;
	static struct pci_device big[3];

	for (int i = 0; i < 3; i++) {
		pci_device_init(&big[i], "big", 1, 2, 0, 0, 0, 0);
		assert_int_equal(pci_device_set_bar(&big[i], 0, 1ULL << 29, PCI_BAR_MEM32, NULL, NULL,
						    NULL), 0);
	}
	/* 512 MiB at 0xc0000000; the next would end at 4 GiB, past the IOAPIC. */
	assert_int_equal(pci_bus_add(&f->bus, &big[0], 0), 1);
	assert_int_equal(pci_bus_add(&f->bus, &big[1], 0), -ENOSPC);
	/* The failed add took no slot. */
	assert_int_equal(pci_bus_add(&f->bus, &f->dev, 0), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mechanism1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_and_header, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_decode_and_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capabilities, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx_wired_or, setup, teardown),
		cmocka_unit_test(test_msi_to_apic),
		cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_api, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_full, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
