/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_GUEST_MEM_H
#define GRAPPE_GUEST_MEM_H

#include <stddef.h>
#include <stdint.h>

/*
 * Guest RAM: one host mapping, shown to the guest as RAM below the PCI hole
 * (up to 3 GiB) and the rest above 4 GiB, as on a PC. One mapping keeps the
 * DSM's view simple: a page's offset in it is its identity on every node.
 */
#define GUEST_MEM_HOLE_START 0xc0000000ULL
#define GUEST_MEM_HIGH_START 0x100000000ULL

struct guest_mem {
	uint8_t *host;
	uint64_t size;       /* total RAM */
	uint64_t low_size;   /* RAM below GUEST_MEM_HOLE_START */
};

int guest_mem_init(struct guest_mem *gm, uint64_t size);
void guest_mem_destroy(struct guest_mem *gm);
/* Host pointer for [gpa, gpa+len), or NULL if the range is not all RAM. */
void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* Offset of a guest-physical address in the host mapping (RAM only). */
uint64_t guest_mem_offset(const struct guest_mem *gm, uint64_t gpa);
/* Guest-physical address of an offset into RAM. */
uint64_t guest_mem_gpa(const struct guest_mem *gm, uint64_t offset);

#endif
