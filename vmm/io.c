// SPDX-License-Identifier: MIT
/*
 * The device bus: a small table of port and MMIO ranges. A PC has a few
 * dozen of them, so a linear scan costs less than any tree and keeps the
 * table trivially safe to read while vCPUs run (it is filled before they
 * start and never changed afterwards).
 */
#include <errno.h>
#include <string.h>

#include "vmm/io.h"

void io_bus_init(struct io_bus *bus)
{
	memset(bus, 0, sizeof(*bus));
}

static bool ranges_overlap(const struct io_range *a, const struct io_range *b)
{
	return a->space == b->space && a->base < b->base + b->size &&
	       b->base < a->base + a->size;
}

int io_bus_register(struct io_bus *bus, const struct io_range *r)
{
	if (r->size == 0)
		return -EINVAL;
	for (unsigned i = 0; i < bus->nr; i++)
		if (ranges_overlap(&bus->ranges[i], r))
			return -EEXIST;
	if (bus->nr == IO_BUS_MAX_RANGES)
		return -ENOSPC;
	bus->ranges[bus->nr++] = *r;
	return 0;
}

static struct io_range *io_bus_find(struct io_bus *bus, uint8_t space, uint64_t addr)
{
	for (unsigned i = 0; i < bus->nr; i++) {
		struct io_range *r = &bus->ranges[i];

		if (r->space == space && addr >= r->base && addr - r->base < r->size)
			return r;
	}
	return NULL;
}

bool io_bus_dispatch(struct io_bus *bus, struct io_req *req)
{
	struct io_range *r = io_bus_find(bus, req->space, req->addr);
	uint64_t off;

	if (!r) {
		if (!req->is_write)
			req->data = req->len >= 8 ? ~0ULL : (1ULL << (8 * req->len)) - 1;
		return false;
	}
	off = req->addr - r->base;
	if (req->is_write) {
		if (r->write)
			r->write(r->dev, off, req->len, req->data);
	} else {
		req->data = ~0ULL;
		if (r->read)
			r->read(r->dev, off, req->len, &req->data);
		if (req->len < 8)
			req->data &= (1ULL << (8 * req->len)) - 1;
	}
	return true;
}
