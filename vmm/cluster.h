/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CLUSTER_H
#define GRAPPE_CLUSTER_H

#include <stddef.h>

#include "vmm/machine.h"
#include "vmm/vm_config.h"
#include "vmm/volume_host.h"

/*
 * The glue that makes one node's machine part of a cluster: the fabric
 * (authenticated full mesh), the DSM engine over guest RAM, and the
 * dispatch of incoming frames to one or the other. A machine alone on one
 * node has none of it.
 */
struct cluster_opts {
	unsigned self;
	const char *secret_path;
	const char *peer_addr[VM_MAX_NODES];   /* overrides of the XML's addresses */
	struct volume_host *volumes;           /* this node's stores and volumes, or NULL */
};

struct cluster;

/*
 * Puts guest RAM under the DSM, brings the mesh up (every node connected
 * and authenticated) and wires the machine's node link. Returns 0, or -1
 * with a message naming what failed (e.g. the node that never answered).
 */
int cluster_attach(struct cluster **out, struct machine *m, const struct vm_config *cfg,
		   const struct cluster_opts *o, char *err, size_t errlen);
/*
 * Just before the vCPUs start: the I/O node tells the others the guest
 * clock; the others wait for it so that kvmclock agrees on every node.
 */
int cluster_start_guest(struct cluster *c, char *err, size_t errlen);
/*
 * Waits (at most timeout_ms) until node is gone from the fabric. A node
 * that serves volume stores leaves after the I/O node, which closes the
 * volumes (marks them clean) over the fabric before it leaves.
 */
void cluster_wait_peer_gone(struct cluster *c, unsigned node, unsigned timeout_ms);
void cluster_detach(struct cluster *c);

#endif
