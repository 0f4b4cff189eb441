/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_BOOT_LINUX_H
#define GRAPPE_BOOT_LINUX_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/guest_mem.h"

/*
 * Direct kernel boot with the Linux x86 boot protocol's 64-bit entry point
 * (Documentation/arch/x86/boot.rst): the loader does what a boot loader
 * would — places the protected-mode kernel at 1 MiB, the initrd high in low
 * RAM, fills the zero page (boot_params) with the setup header, command
 * line, e820 map and RSDP address — and starts the BSP in long mode with an
 * identity map of the first 4 GiB.
 */

#define E820_RAM      1
#define E820_RESERVED 2
#define E820_ACPI     3
#define E820_MAX      128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* Fixed low-memory layout chosen by the loader. */
#define BOOT_GDT_GPA        0x0500ULL
#define BOOT_PML4_GPA       0x1000ULL
#define BOOT_PDPT_GPA       0x2000ULL
#define BOOT_PD_GPA         0x3000ULL   /* four page directories: 4 GiB in 2 MiB pages */
#define BOOT_PARAMS_GPA     0x7000ULL
#define BOOT_CMDLINE_GPA    0x20000ULL
#define BOOT_CMDLINE_MAX    0x10000ULL
#define BOOT_ACPI_GPA       0xe0000ULL  /* ACPI tables; the RSDP is found by the legacy scan too */
#define BOOT_ACPI_SIZE      0x20000ULL
#define BOOT_KERNEL_GPA     0x100000ULL
#define BOOT_CODE_SEL       0x10
#define BOOT_DATA_SEL       0x18

struct boot_linux_setup {
	const char *kernel;
	const char *initrd;      /* may be NULL */
	const char *cmdline;     /* may be NULL */
	uint64_t rsdp_gpa;
	const struct e820_entry *e820;
	unsigned nr_e820;
};

/* Where the BSP starts. */
struct boot_entry {
	uint64_t rip;
	uint64_t rsi;            /* boot_params */
	uint64_t cr3;
	uint64_t gdt_base;
	uint16_t gdt_limit;
};

/*
 * Loads the kernel image from memory (bzImage bytes). Returns 0, or -1 with
 * a message in err naming what is wrong with the image.
 */
int boot_linux_load_image(struct guest_mem *gm, const uint8_t *image, size_t image_len,
			  const uint8_t *initrd, size_t initrd_len,
			  const struct boot_linux_setup *setup, struct boot_entry *entry,
			  char *err, size_t errlen);
/* Same, reading setup->kernel and setup->initrd from files. */
int boot_linux_load(struct guest_mem *gm, const struct boot_linux_setup *setup,
		    struct boot_entry *entry, char *err, size_t errlen);

/* The PC e820 map for a RAM layout (low RAM, BIOS area, ACPI, high RAM). */
unsigned boot_linux_e820(const struct guest_mem *gm, struct e820_entry *out, unsigned max);

#endif
