/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_ACPI_H
#define GRAPPE_ACPI_H

#include <stddef.h>
#include <stdint.h>

/*
 * ACPI tables for the guest: RSDP, XSDT, FADT (with FACS), DSDT, MADT, SRAT
 * and SLIT. They are built into a caller-provided buffer that will be copied
 * to guest-physical address 'base'; every pointer inside the tables is a
 * guest-physical address.
 */

#define ACPI_MAX_CPUS 64
#define ACPI_MAX_CELLS 16

/* Fixed platform I/O the tables describe (must match the device models). */
#define ACPI_PM_BASE      0x600   /* PM1a_EVT (4 bytes), PM1a_CNT at +4, PM timer at +8 */
#define ACPI_PM1_EVT      (ACPI_PM_BASE + 0)
#define ACPI_PM1_CNT      (ACPI_PM_BASE + 4)
#define ACPI_PM_TMR       (ACPI_PM_BASE + 8)
#define ACPI_SCI_IRQ      9
#define ACPI_RESET_PORT   0xcf9
#define ACPI_RESET_VALUE  0x06
#define ACPI_S5_SLP_TYP   0       /* value the DSDT's \_S5 gives; PM1 control decodes it */
#define IOAPIC_BASE_GPA   0xfec00000ULL
#define LAPIC_BASE_GPA    0xfee00000ULL

/* RTC CMOS index of the century byte (BCD) the FADT announces. */
#define ACPI_RTC_CENTURY  0x32

struct acpi_mem_range {
	uint64_t base;
	uint64_t size;
	unsigned cell;
};

struct acpi_machine {
	unsigned nr_cpus;
	uint8_t apic_id[ACPI_MAX_CPUS];
	unsigned cpu_cell[ACPI_MAX_CPUS];
	unsigned nr_cells;                      /* >= 1 */
	unsigned nr_mem;                        /* memory ranges with their cell */
	struct acpi_mem_range mem[2 * ACPI_MAX_CELLS];
	uint8_t distance[ACPI_MAX_CELLS][ACPI_MAX_CELLS]; /* SLIT, 10 on the diagonal */
	uint8_t ioapic_id;
	uint32_t ioapic_gsi_base;
};

/*
 * Builds the tables into buf (size len) for guest-physical address base.
 * Returns the number of bytes used and sets *rsdp_gpa, or -ENOSPC / -EINVAL.
 * The RSDP comes first in buf, 16-byte aligned, so placing buf at 0xE0000
 * lets a guest find it by the legacy scan as well as through boot_params.
 * -EINVAL: base not 16-byte aligned, a count out of range, a CPU or memory
 * range naming a cell >= nr_cells, a local APIC ID 0xff or repeated, IOAPIC
 * ID 0xff, an empty memory range, ioapic_gsi_base != 0 (the DSDT and the
 * overrides assume ISA IRQ n is GSI n), or, with more than one cell, a SLIT
 * Linux would reject.
 */
long acpi_build(const struct acpi_machine *m, void *buf, size_t len,
		uint64_t base, uint64_t *rsdp_gpa);

/*
 * Fills the SLIT entries left at 0 with the conventional values: 10 on the
 * diagonal, 20 elsewhere. acpi_build() itself rejects a matrix Linux would
 * ignore (diagonal not 10, or a remote distance <= 10).
 */
void acpi_default_distances(struct acpi_machine *m);

/*
 * The DSDT's AML definition block (the bytes after the 36-byte table
 * header), written to out. Returns its length, -ENOSPC if cap is too small
 * or -EINVAL. Used by acpi_build(); exposed for tests.
 */
long acpi_dsdt_aml(const struct acpi_machine *m, uint8_t *out, size_t cap);

/*
 * The shortest AML PkgLength for a package whose body (what follows the
 * PkgLength) is 'body' bytes: written to out, returns its size (1-4), or 0
 * when the package would exceed the 2^28 bytes AML can express.
 */
unsigned acpi_aml_pkg_length(size_t body, uint8_t out[4]);

#endif
