/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VOLUME_HOST_H
#define GRAPPE_VOLUME_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blockdev/blockdev.h"
#include "blockdev/store_msg.h"
#include "blockdev/volume.h"
#include "vmm/vm_config.h"

/*
 * A node's part in the domain's replicated volumes (docs/volume.md):
 *
 *  - every node opens the stores the XML puts on it and, unless it is the
 *    I/O node, serves them to the I/O node over the fabric (store_server);
 *  - the I/O node, where the virtio-blk devices live, opens each volume
 *    over all its stores: its own directly, the others' through a
 *    store_client, and hands the volume to the disk.
 *
 * Without a cluster every store is local and nothing goes over a network.
 * Life cycle per guest start: create (stores opened, before the fabric
 * starts) -> set_transport (exports; before the fabric starts, so no
 * request finds a store missing) -> open on the I/O node (fabric up) ->
 * volumes closed by the disk -> the fabric goes -> destroy.
 */
struct volume_host;

struct volume_host_config {
	const struct vm_config *cfg;
	unsigned self;                 /* this node (0 without a cluster) */
	unsigned io_node;              /* where the disks are */
	void (*log)(void *ctx, const char *msg);
	void *log_ctx;
};

int volume_host_create(struct volume_host **out, const struct volume_host_config *c,
		       char *err, size_t errlen);
/*
 * I/O node of a cluster: serve disk 'target' (its blockdev, which the disk
 * keeps owning) to the nodes that serve some of its queues (docs/volume.md,
 * "Queues on several nodes"). Before set_transport.
 */
int volume_host_export_disk(struct volume_host *vh, const char *target, struct blockdev *bd,
			    char *err, size_t errlen);
/* Serving node: disk 'target' of node io_node, as a remote store (fabric up). */
int volume_host_open_disk(struct volume_host *vh, unsigned io_node, const char *target,
			  struct blockdev **out, char *err, size_t errlen);
/* Does this node hold a store of some volume that it serves to the I/O node? */
bool volume_host_serves(const struct volume_host *vh);
/* The fabric: send wraps fabric_sendv; exports this node's stores. */
int volume_host_set_transport(struct volume_host *vh, store_send_fn send, void *ctx,
			      char *err, size_t errlen);
/* Frames of the store protocol (store_msg_owns_type), on the fabric thread. */
void volume_host_receive(struct volume_host *vh, unsigned src, uint16_t type, uint64_t req_id,
			 const void *payload, size_t len);
void volume_host_peer_down(struct volume_host *vh, unsigned node);
/*
 * query-grappe-stats: "local_reads" (a serving node's reads of its own
 * stores under read leases, per volume) and "read_leases" (the I/O node's
 * coordinators), docs/volume.md "Read leases".
 */
struct json_object;
void volume_host_stats_json(void *vh, struct json_object *out);
/*
 * I/O node: opens volume v over its stores. On success *out is the volume;
 * the disk closes it (volume_blockdev's close) before the fabric goes.
 */
int volume_host_open(struct volume_host *vh, const struct vm_volume *v, struct volume **out,
		     char *err, size_t errlen);
/* No store message is sent once this returns: call it before the fabric goes. */
void volume_host_shutdown(struct volume_host *vh);
void volume_host_destroy(struct volume_host *vh);

#endif
