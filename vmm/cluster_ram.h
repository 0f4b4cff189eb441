/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CLUSTER_RAM_H
#define GRAPPE_CLUSTER_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/machine.h"
#include "vmm/vm_config.h"

struct fabric;

/*
 * Guest RAM shared by the nodes of a cluster. The real thing is the DSM
 * (dsm/): a home-based directory protocol on userfaultfd over the fabric.
 * GRAPPE_RAM=shared selects a test aid instead: every node maps one
 * /dev/shm file, which only works for nodes on one machine and exists to
 * test the rest of the cluster (interrupts, I/O) apart from the DSM.
 */
struct cluster_ram;

int cluster_ram_create(struct cluster_ram **out, struct machine *m, const struct vm_config *cfg,
		       struct fabric *f, char *err, size_t errlen);
bool cluster_ram_owns_type(uint16_t type);
void cluster_ram_receive(struct cluster_ram *r, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len);
void cluster_ram_peer_down(struct cluster_ram *r, unsigned peer);
/*
 * The guest has stopped: guest RAM becomes plain memory, so that no vCPU
 * stays blocked on a page while the nodes wind down.
 */
void cluster_ram_quiesce(struct cluster_ram *r);
void cluster_ram_destroy(struct cluster_ram *r);

#endif
