// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/guest_mem.h"

int guest_mem_init(struct guest_mem *gm, uint64_t size)
{
	void *p;

	memset(gm, 0, sizeof(*gm));
	if (size < (1ULL << 20) || (size & 0xfff))
		return -EINVAL;
	/* MAP_NORESERVE: a large guest only costs what it touches. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	gm->host = p;
	gm->size = size;
	gm->low_size = size < GUEST_MEM_HOLE_START ? size : GUEST_MEM_HOLE_START;
	return 0;
}

void guest_mem_destroy(struct guest_mem *gm)
{
	if (gm->host)
		munmap(gm->host, gm->size);
	gm->host = NULL;
}

uint64_t guest_mem_offset(const struct guest_mem *gm, uint64_t gpa)
{
	if (gpa < gm->low_size)
		return gpa;
	if (gpa >= GUEST_MEM_HIGH_START && gpa - GUEST_MEM_HIGH_START < gm->size - gm->low_size)
		return gm->low_size + (gpa - GUEST_MEM_HIGH_START);
	return UINT64_MAX;
}

uint64_t guest_mem_gpa(const struct guest_mem *gm, uint64_t offset)
{
	return offset < gm->low_size ? offset
				     : GUEST_MEM_HIGH_START + (offset - gm->low_size);
}

void *guest_mem_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	uint64_t off = guest_mem_offset(gm, gpa);

	if (off == UINT64_MAX || len == 0)
		return NULL;
	/* The range must not straddle the hole. */
	if (guest_mem_offset(gm, gpa + len - 1) != off + len - 1)
		return NULL;
	return gm->host + off;
}
