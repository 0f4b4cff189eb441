/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_IO_H
#define GRAPPE_IO_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A device access as a self-contained request. A vCPU's PIO or MMIO exit is
 * turned into one of these before it reaches a device, so that the same
 * request can later be shipped to the I/O node that owns the device when it
 * is not on this node: nothing in it points into the vCPU's memory.
 */
enum io_space { IO_SPACE_PIO = 0, IO_SPACE_MMIO = 1 };

struct io_req {
	uint8_t space;    /* enum io_space */
	uint8_t is_write;
	uint8_t len;      /* 1, 2, 4 or 8 */
	uint16_t vcpu;    /* the vCPU that made the access */
	uint64_t addr;    /* port or guest-physical address */
	uint64_t data;    /* value written, or value read back */
};

/*
 * A device handler sees the offset within the range it registered. Reads
 * fill *data (little-endian, only the low 'len' bytes matter).
 */
typedef void (*io_read_fn)(void *dev, uint64_t off, unsigned len, uint64_t *data);
typedef void (*io_write_fn)(void *dev, uint64_t off, unsigned len, uint64_t data);

struct io_range {
	uint8_t space;
	uint64_t base;
	uint64_t size;
	io_read_fn read;
	io_write_fn write;
	void *dev;
	const char *name;
};

#define IO_BUS_MAX_RANGES 64

struct io_bus {
	struct io_range ranges[IO_BUS_MAX_RANGES];
	unsigned nr;
};

void io_bus_init(struct io_bus *bus);
/* Returns 0, or -EEXIST on overlap, -ENOSPC when full. */
int io_bus_register(struct io_bus *bus, const struct io_range *r);
/*
 * Dispatches one request. Returns true when a device took it; an access to
 * nothing reads as all ones and is otherwise ignored, as on a PC.
 */
bool io_bus_dispatch(struct io_bus *bus, struct io_req *req);

#endif
