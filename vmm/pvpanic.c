// SPDX-License-Identifier: MIT
#include "vmm/pvpanic.h"

static void pvpanic_read(void *dev, uint64_t off, unsigned len, uint64_t *data)
{
	/* Reading the port tells the guest which events we understand. */
	*data = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
}

static void pvpanic_write(void *dev, uint64_t off, unsigned len, uint64_t data)
{
	struct pvpanic *p = dev;

	/* CRASH_LOADED alone means a kdump kernel takes over: not our crash. */
	if ((data & PVPANIC_PANICKED) && p->panicked)
		p->panicked(p->ctx, (uint8_t)data);
}

void pvpanic_init(struct pvpanic *p, void (*panicked)(void *ctx, uint8_t events), void *ctx)
{
	p->panicked = panicked;
	p->ctx = ctx;
}

int pvpanic_register(struct pvpanic *p, struct io_bus *bus)
{
	struct io_range r = {
		.space = IO_SPACE_PIO, .base = PVPANIC_PORT, .size = 1,
		.read = pvpanic_read, .write = pvpanic_write, .dev = p, .name = "pvpanic",
	};

	return io_bus_register(bus, &r);
}
