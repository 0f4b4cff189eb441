// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/cluster_ram.h"

struct cluster_ram {
	struct machine *m;
	bool shared;
	char shm_path[256];
};

/* Test aid: one /dev/shm file mapped over guest RAM by every node. */
static int map_shared(struct cluster_ram *r, const struct vm_config *cfg, char *err, size_t errlen)
{
	const char *tag = getenv("GRAPPE_RAM_TAG");
	void *p;
	int fd;

	snprintf(r->shm_path, sizeof(r->shm_path), "/dev/shm/grappe-%s-%s", cfg->name,
		 tag ? tag : "ram");
	fd = open(r->shm_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)r->m->mem.size) < 0) {
		snprintf(err, errlen, "%s: %s", r->shm_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	/* Same address: KVM's memory slots keep pointing at it. */
	p = mmap(r->m->mem.host, r->m->mem.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		snprintf(err, errlen, "mmap %s: %s", r->shm_path, strerror(errno));
		return -1;
	}
	return 0;
}

int cluster_ram_create(struct cluster_ram **out, struct machine *m, const struct vm_config *cfg,
		       struct fabric *f, char *err, size_t errlen)
{
	struct cluster_ram *r = calloc(1, sizeof(*r));
	const char *mode = getenv("GRAPPE_RAM");

	*out = r;
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->m = m;
	if (mode && !strcmp(mode, "shared")) {
		r->shared = true;
		return map_shared(r, cfg, err, errlen);
	}
	snprintf(err, errlen, "the DSM is not available in this build (GRAPPE_RAM=shared is a "
		 "single-machine test aid)");
	return -1;
}

bool cluster_ram_owns_type(uint16_t type)
{
	return type >= 0x200 && type < 0x300;
}

void cluster_ram_receive(struct cluster_ram *r, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len)
{
}

void cluster_ram_peer_down(struct cluster_ram *r, unsigned peer)
{
}

void cluster_ram_quiesce(struct cluster_ram *r)
{
}

void cluster_ram_destroy(struct cluster_ram *r)
{
	if (!r)
		return;
	/* The first node to leave removes the name; mappings stay valid. */
	if (r->shared)
		unlink(r->shm_path);
	free(r);
}
