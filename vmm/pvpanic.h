/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_PVPANIC_H
#define GRAPPE_PVPANIC_H

#include <stdint.h>

#include "vmm/io.h"

/*
 * The pvpanic ISA device (ACPI QEMU0001, one I/O port): a guest kernel with
 * the pvpanic driver writes to it when it panics, which is how on_crash
 * learns of a crash without scraping the console.
 */
#define PVPANIC_PORT     0x505
#define PVPANIC_PANICKED (1u << 0)
#define PVPANIC_CRASH_LOADED (1u << 1)

struct pvpanic {
	void (*panicked)(void *ctx, uint8_t events);
	void *ctx;
};

void pvpanic_init(struct pvpanic *p, void (*panicked)(void *ctx, uint8_t events), void *ctx);
int pvpanic_register(struct pvpanic *p, struct io_bus *bus);

#endif
