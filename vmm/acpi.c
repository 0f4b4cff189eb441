// SPDX-License-Identifier: MIT
/*
 * ACPI tables for the guest (ACPI 6.0): RSDP, XSDT, FADT, FACS, DSDT, MADT,
 * SRAT and SLIT, laid out in that order in one buffer.
 *
 * Choices:
 * - A full (not hardware-reduced) FADT: the machine has legacy devices.
 *   SMI_CMD is 0, which tells the OS the machine is always in ACPI mode, so
 *   the PM device must read SCI_EN as 1 and no SMI port exists.
 * - An SRAT even with one cell, so the guest's NUMA set-up always comes
 *   from the tables; a SLIT only with two cells or more (with one cell it
 *   would say nothing Linux does not assume).
 * - No RSDT: the guest kernel reads the XSDT of a revision 2 RSDP.
 *
 * Tables are written field by field at their specification offsets with
 * explicit little-endian stores rather than through packed structs: the
 * offsets are then checked against the specification in one place and the
 * code does not depend on the host's byte order or on struct layout.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "vmm/acpi.h"

#define SDT_HDR_LEN     36
#define RSDP_LEN        36
#define RSDP_V1_LEN     20
#define FADT_LEN        276     /* revision 6 */
#define FACS_LEN        64
#define MADT_HDR_LEN    (SDT_HDR_LEN + 8)
#define SRAT_HDR_LEN    (SDT_HDR_LEN + 12)
#define SLIT_HDR_LEN    (SDT_HDR_LEN + 8)

#define OEM_ID          "GRAPPE"
#define OEM_TABLE_ID    "GRAPPEVM"
#define OEM_REVISION    1
#define CREATOR_ID      "GRPE"
#define CREATOR_REV     1

/* FADT Flags (5.2.9, table 5-35). */
#define FADT_WBINVD             (1u << 0)
#define FADT_PROC_C1            (1u << 2)
#define FADT_SLP_BUTTON         (1u << 5)
#define FADT_TMR_VAL_EXT        (1u << 8)
#define FADT_RESET_REG_SUP      (1u << 10)

/* FADT IAPC_BOOT_ARCH (5.2.9.3). */
#define BOOT_LEGACY_DEVICES     (1u << 0)
#define BOOT_8042               (1u << 1)
#define BOOT_VGA_NOT_PRESENT    (1u << 2)

#define PM_PROFILE_ENTERPRISE_SERVER 4

/*
 * Latencies above 100 and 1000 us mean "C2 and C3 not supported": the
 * guest gets C1 (HLT) only, which exits to the VMM anyway.
 */
#define FADT_C2_NONE            101
#define FADT_C3_NONE            1001

/* Generic Address Structure. */
#define GAS_SYSTEM_IO   1
#define GAS_ACC_BYTE    1
#define GAS_ACC_WORD    2
#define GAS_ACC_DWORD   3

/* MADT (5.2.12). */
#define MADT_PCAT_COMPAT        1
#define MADT_LAPIC              0
#define MADT_IOAPIC             1
#define MADT_ISO                2
#define MADT_LAPIC_NMI          4
#define MADT_ENABLED            1
#define MPS_HIGH                0x1     /* INTI flags: polarity 1:0 */
#define MPS_EDGE                (0x1 << 2) /* trigger 3:2 */
#define MPS_LEVEL               (0x3 << 2)
#define MADT_ALL_CPUS           0xff

/* SRAT (5.2.16). */
#define SRAT_LAPIC              0
#define SRAT_MEMORY             1
#define SRAT_ENABLED            1

#define ISA_PIT_IRQ     0
#define ISA_PIT_GSI     2
#define LINT1           1

struct out {
	uint8_t *buf;
	size_t len;
	size_t used;
	uint64_t base;
	bool full;
};

static void put8(uint8_t *p, unsigned off, uint8_t v)
{
	p[off] = v;
}

static void put16(uint8_t *p, unsigned off, uint16_t v)
{
	p[off] = (uint8_t)v;
	p[off + 1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, unsigned off, uint32_t v)
{
	put16(p, off, (uint16_t)v);
	put16(p, off + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, unsigned off, uint64_t v)
{
	put32(p, off, (uint32_t)v);
	put32(p, off + 4, (uint32_t)(v >> 32));
}

static void put_str(uint8_t *p, unsigned off, const char *s, size_t n)
{
	memcpy(p + off, s, n);
}

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/*
 * Reserves n zeroed bytes whose guest-physical address is a multiple of
 * align (a power of two). Returns NULL, and stays full, once out of room.
 */
static uint8_t *take(struct out *o, size_t n, size_t align)
{
	size_t pad = (size_t)(-(o->base + o->used) & (align - 1));
	uint8_t *p;

	if (o->full || pad > o->len - o->used || n > o->len - o->used - pad) {
		o->full = true;
		return NULL;
	}
	memset(o->buf + o->used, 0, pad);
	p = o->buf + o->used + pad;
	memset(p, 0, n);
	o->used += pad + n;
	return p;
}

static uint64_t gpa(const struct out *o, const uint8_t *p)
{
	return o->base + (uint64_t)(p - o->buf);
}

/* A 32-bit pointer field gets 0 when the target is above 4 GiB. */
static uint32_t gpa32(const struct out *o, const uint8_t *p)
{
	uint64_t a = gpa(o, p);

	return a >> 32 ? 0 : (uint32_t)a;
}

static void sdt_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	put_str(t, 0, sig, 4);
	put32(t, 4, len);
	put8(t, 8, rev);
	put_str(t, 10, OEM_ID, 6);
	put_str(t, 16, OEM_TABLE_ID, 8);
	put32(t, 24, OEM_REVISION);
	put_str(t, 28, CREATOR_ID, 4);
	put32(t, 32, CREATOR_REV);
}

/* Last step for a table: every byte, checksum included, sums to 0. */
static void sdt_checksum(uint8_t *t)
{
	uint32_t len = t[4] | t[5] << 8 | t[6] << 16 | (uint32_t)t[7] << 24;

	t[9] = 0;
	t[9] = (uint8_t)-sum(t, len);
}

static void gas_io(uint8_t *p, unsigned off, uint8_t bits, uint8_t acc,
		   uint16_t port)
{
	put8(p, off, GAS_SYSTEM_IO);
	put8(p, off + 1, bits);
	put8(p, off + 2, 0);
	put8(p, off + 3, acc);
	put64(p, off + 4, port);
}

static bool slit_ok(const struct acpi_machine *m)
{
	unsigned i, j;

	/* Linux ignores a SLIT whose diagonal is not 10 or whose remote
	 * distances are not above it: refuse to build one. */
	for (i = 0; i < m->nr_cells; i++)
		for (j = 0; j < m->nr_cells; j++)
			if (i == j ? m->distance[i][j] != 10
				   : m->distance[i][j] <= 10)
				return false;
	return true;
}

static bool cpus_ok(const struct acpi_machine *m)
{
	bool seen[256] = { false };
	unsigned i;

	if (!m->nr_cpus || m->nr_cpus > ACPI_MAX_CPUS)
		return false;
	for (i = 0; i < m->nr_cpus; i++) {
		/* 0xff is the xAPIC broadcast ID. */
		if (m->apic_id[i] == 0xff || seen[m->apic_id[i]])
			return false;
		seen[m->apic_id[i]] = true;
		if (m->cpu_cell[i] >= m->nr_cells)
			return false;
	}
	return true;
}

static bool mem_ok(const struct acpi_machine *m)
{
	unsigned i;

	if (!m->nr_mem || m->nr_mem > 2 * ACPI_MAX_CELLS)
		return false;
	for (i = 0; i < m->nr_mem; i++) {
		const struct acpi_mem_range *r = &m->mem[i];

		if (!r->size || r->base + r->size < r->base ||
		    r->cell >= m->nr_cells)
			return false;
	}
	return true;
}

static bool machine_ok(const struct acpi_machine *m)
{
	if (!m->nr_cells || m->nr_cells > ACPI_MAX_CELLS)
		return false;
	if (m->ioapic_gsi_base != 0 || m->ioapic_id == 0xff)
		return false;
	return cpus_ok(m) && mem_ok(m) && (m->nr_cells == 1 || slit_ok(m));
}

void acpi_default_distances(struct acpi_machine *m)
{
	unsigned i, j;

	for (i = 0; i < ACPI_MAX_CELLS; i++)
		for (j = 0; j < ACPI_MAX_CELLS; j++)
			if (!m->distance[i][j])
				m->distance[i][j] = i == j ? 10 : 20;
}

static void fill_rsdp(uint8_t *p, uint64_t xsdt)
{
	put_str(p, 0, "RSD PTR ", 8);
	put_str(p, 9, OEM_ID, 6);
	put8(p, 15, 2);
	put32(p, 16, 0);        /* no RSDT */
	put32(p, 20, RSDP_LEN);
	put64(p, 24, xsdt);
	put8(p, 8, (uint8_t)-sum(p, RSDP_V1_LEN));
	put8(p, 32, (uint8_t)-sum(p, RSDP_LEN));
}

static void fill_facs(uint8_t *p)
{
	put_str(p, 0, "FACS", 4);
	put32(p, 4, FACS_LEN);
	put8(p, 32, 2);         /* version */
}

static void fadt_pm_blocks(uint8_t *p)
{
	put32(p, 56, ACPI_PM1_EVT);
	put32(p, 64, ACPI_PM1_CNT);
	put32(p, 76, ACPI_PM_TMR);
	put8(p, 88, 4);         /* PM1_EVT_LEN: status + enable */
	put8(p, 89, 2);         /* PM1_CNT_LEN */
	put8(p, 91, 4);         /* PM_TMR_LEN */
	/* The X_ blocks repeat them; PM1 status and enable are 16-bit. */
	gas_io(p, 148, 32, GAS_ACC_WORD, ACPI_PM1_EVT);
	gas_io(p, 172, 16, GAS_ACC_WORD, ACPI_PM1_CNT);
	gas_io(p, 208, 32, GAS_ACC_DWORD, ACPI_PM_TMR);
}

static void fill_fadt(const struct out *o, uint8_t *p, const uint8_t *facs,
		      const uint8_t *dsdt)
{
	sdt_header(p, "FACP", FADT_LEN, 6);
	/*
	 * ACPI allows only one FACS pointer to be non-zero: the 32-bit one
	 * while it can reach, for the widest set of readers. The DSDT may
	 * have both, and gets both.
	 */
	put32(p, 36, gpa32(o, facs));
	put64(p, 132, gpa32(o, facs) ? 0 : gpa(o, facs));
	put32(p, 40, gpa32(o, dsdt));
	put64(p, 140, gpa(o, dsdt));
	put8(p, 45, PM_PROFILE_ENTERPRISE_SERVER);
	put16(p, 46, ACPI_SCI_IRQ);
	/* SMI_CMD, ACPI_ENABLE, ACPI_DISABLE stay 0: always in ACPI mode. */
	fadt_pm_blocks(p);
	put16(p, 96, FADT_C2_NONE);
	put16(p, 98, FADT_C3_NONE);
	put8(p, 108, ACPI_RTC_CENTURY);
	put16(p, 109, BOOT_LEGACY_DEVICES | BOOT_8042 | BOOT_VGA_NOT_PRESENT);
	put32(p, 112, FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON |
		      FADT_TMR_VAL_EXT | FADT_RESET_REG_SUP);
	gas_io(p, 116, 8, GAS_ACC_BYTE, ACPI_RESET_PORT);
	put8(p, 128, ACPI_RESET_VALUE);
	put8(p, 131, 0);        /* FADT minor version: ACPI 6.0 */
	sdt_checksum(p);
}

static size_t madt_len(const struct acpi_machine *m)
{
	return MADT_HDR_LEN + 8 * m->nr_cpus + 12 + 2 * 10 + 6;
}

static uint8_t *madt_iso(uint8_t *e, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	put8(e, 0, MADT_ISO);
	put8(e, 1, 10);
	put8(e, 2, 0);          /* bus: ISA */
	put8(e, 3, irq);
	put32(e, 4, gsi);
	put16(e, 8, flags);
	return e + 10;
}

static void fill_madt(const struct acpi_machine *m, uint8_t *p)
{
	uint8_t *e = p + MADT_HDR_LEN;
	unsigned i;

	sdt_header(p, "APIC", (uint32_t)madt_len(m), 4);
	put32(p, 36, (uint32_t)LAPIC_BASE_GPA);
	put32(p, 40, MADT_PCAT_COMPAT);
	for (i = 0; i < m->nr_cpus; i++, e += 8) {
		put8(e, 0, MADT_LAPIC);
		put8(e, 1, 8);
		put8(e, 2, (uint8_t)i);
		put8(e, 3, m->apic_id[i]);
		put32(e, 4, MADT_ENABLED);
	}
	put8(e, 0, MADT_IOAPIC);
	put8(e, 1, 12);
	put8(e, 2, m->ioapic_id);
	put32(e, 4, (uint32_t)IOAPIC_BASE_GPA);
	put32(e, 8, m->ioapic_gsi_base);
	e += 12;
	e = madt_iso(e, ISA_PIT_IRQ, ISA_PIT_GSI, MPS_EDGE | MPS_HIGH);
	e = madt_iso(e, ACPI_SCI_IRQ, ACPI_SCI_IRQ, MPS_LEVEL | MPS_HIGH);
	put8(e, 0, MADT_LAPIC_NMI);
	put8(e, 1, 6);
	put8(e, 2, MADT_ALL_CPUS);
	put16(e, 3, MPS_EDGE | MPS_HIGH);
	put8(e, 5, LINT1);
	sdt_checksum(p);
}

static size_t srat_len(const struct acpi_machine *m)
{
	return SRAT_HDR_LEN + 16 * m->nr_cpus + 40 * m->nr_mem;
}

static void fill_srat(const struct acpi_machine *m, uint8_t *p)
{
	uint8_t *e = p + SRAT_HDR_LEN;
	unsigned i;

	sdt_header(p, "SRAT", (uint32_t)srat_len(m), 3);
	put32(p, 36, 1);        /* reserved, 1 for compatibility */
	for (i = 0; i < m->nr_cpus; i++, e += 16) {
		put8(e, 0, SRAT_LAPIC);
		put8(e, 1, 16);
		put8(e, 2, (uint8_t)m->cpu_cell[i]);  /* domain bits 7:0 */
		put8(e, 3, m->apic_id[i]);
		put32(e, 4, SRAT_ENABLED);
	}
	for (i = 0; i < m->nr_mem; i++, e += 40) {
		const struct acpi_mem_range *r = &m->mem[i];

		put8(e, 0, SRAT_MEMORY);
		put8(e, 1, 40);
		put32(e, 2, r->cell);
		put64(e, 8, r->base);
		put64(e, 16, r->size);
		put32(e, 28, SRAT_ENABLED);
	}
	sdt_checksum(p);
}

static size_t slit_len(const struct acpi_machine *m)
{
	return SLIT_HDR_LEN + (size_t)m->nr_cells * m->nr_cells;
}

static void fill_slit(const struct acpi_machine *m, uint8_t *p)
{
	unsigned i, j, n = m->nr_cells;

	sdt_header(p, "SLIT", (uint32_t)slit_len(m), 1);
	put64(p, 36, n);
	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			put8(p, SLIT_HDR_LEN + i * n + j, m->distance[i][j]);
	sdt_checksum(p);
}

/* The DSDT's AML goes straight into the buffer, sized by what is left. */
static uint8_t *build_dsdt(const struct acpi_machine *m, struct out *o)
{
	uint8_t *p = take(o, SDT_HDR_LEN, 16);
	long aml;

	if (!p)
		return NULL;
	aml = acpi_dsdt_aml(m, p + SDT_HDR_LEN, o->len - o->used);
	if (aml < 0) {
		o->full = true;
		return NULL;
	}
	o->used += (size_t)aml;
	sdt_header(p, "DSDT", (uint32_t)(SDT_HDR_LEN + aml), 2);
	sdt_checksum(p);
	return p;
}

struct tables {
	uint8_t *rsdp, *xsdt, *fadt, *facs, *dsdt, *madt, *srat, *slit;
};

static int place(const struct acpi_machine *m, struct out *o, struct tables *t)
{
	unsigned nr_xsdt = m->nr_cells > 1 ? 4 : 3;

	t->rsdp = take(o, RSDP_LEN, 16);
	t->xsdt = take(o, SDT_HDR_LEN + 8 * nr_xsdt, 16);
	t->fadt = take(o, FADT_LEN, 16);
	t->facs = take(o, FACS_LEN, 64);
	t->dsdt = build_dsdt(m, o);
	t->madt = take(o, madt_len(m), 16);
	t->srat = take(o, srat_len(m), 16);
	t->slit = m->nr_cells > 1 ? take(o, slit_len(m), 16) : NULL;
	return o->full ? -ENOSPC : 0;
}

static void fill_xsdt(const struct out *o, const struct tables *t)
{
	const uint8_t *entries[] = { t->fadt, t->madt, t->srat, t->slit };
	unsigned i, n = t->slit ? 4 : 3;

	sdt_header(t->xsdt, "XSDT", SDT_HDR_LEN + 8 * n, 1);
	for (i = 0; i < n; i++)
		put64(t->xsdt, SDT_HDR_LEN + 8 * i, gpa(o, entries[i]));
	sdt_checksum(t->xsdt);
}

long acpi_build(const struct acpi_machine *m, void *buf, size_t len,
		uint64_t base, uint64_t *rsdp_gpa)
{
	struct out o = { .buf = buf, .len = len, .base = base };
	struct tables t;
	int err;

	if (!m || (!buf && len) || (base & 15) || base + len < base ||
	    !machine_ok(m))
		return -EINVAL;
	err = place(m, &o, &t);
	if (err)
		return err;
	fill_facs(t.facs);
	fill_fadt(&o, t.fadt, t.facs, t.dsdt);
	fill_madt(m, t.madt);
	fill_srat(m, t.srat);
	if (t.slit)
		fill_slit(m, t.slit);
	fill_xsdt(&o, &t);
	fill_rsdp(t.rsdp, gpa(&o, t.xsdt));
	if (rsdp_gpa)
		*rsdp_gpa = gpa(&o, t.rsdp);
	return (long)o.used;
}
