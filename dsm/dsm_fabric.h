/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_FABRIC_H
#define GRAPPE_DSM_FABRIC_H

#include <stddef.h>

#include "dsm/dsm.h"

struct fabric;

/*
 * The DSM's messages carried by the fabric (fabric/fabric.h), the
 * cluster's transport: one fabric message of type DSM_FABRIC_TYPE per DSM
 * message, its encoded header followed by the page if it has one. The
 * fabric authenticates every frame and keeps each pair of nodes in order
 * (what dsm_transport_ops asks for); what is left here is the DSM's own
 * check of what a peer says.
 */
#define DSM_FABRIC_TYPE 0x200

/*
 * Sends over f. No poll op: the fabric's receive thread delivers, through
 * dsm_fabric_receive from its on_frame.
 */
struct dsm_transport_ops dsm_fabric_ops(struct fabric *f);
/*
 * One DSM_FABRIC_TYPE message from node src, for n. Returns 0, or -EINVAL
 * when the message is malformed or breaks the protocol: n is then failed,
 * since a peer that sends garbage cannot be trusted with guest memory.
 */
int dsm_fabric_receive(struct dsm_node *n, unsigned src, const void *payload, size_t len);

#endif
