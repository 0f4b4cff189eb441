/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_LOOP_H
#define GRAPPE_DSM_LOOP_H

#include <stdint.h>

#include "dsm/dsm.h"

/*
 * An in-process transport for tests: several DSM nodes in one process,
 * each with a delivery thread that calls dsm_receive() for the messages
 * sent to it. Messages between a pair of nodes arrive in order, like TCP;
 * with DSM_LOOP_SHUFFLE the delivery thread picks the next source at
 * random, so that messages of different pairs cross in every way.
 */
#define DSM_LOOP_SHUFFLE 0x1

struct dsm_loop;

int dsm_loop_create(unsigned nr_nodes, unsigned flags, struct dsm_loop **out);
/* The node that receives what is sent to `node` (set before dsm_loop_start). */
void dsm_loop_attach(struct dsm_loop *l, unsigned node, struct dsm_node *n);
struct dsm_transport_ops dsm_loop_ops(struct dsm_loop *l, unsigned node);
int dsm_loop_start(struct dsm_loop *l);
/* Waits until nothing is queued or being delivered (at most timeout_ms); 0 or -ETIMEDOUT. */
int dsm_loop_drain(struct dsm_loop *l, unsigned timeout_ms);
/* Node `node` dies: what it sends or is sent is lost; the others get dsm_peer_down. */
void dsm_loop_kill(struct dsm_loop *l, unsigned node);
/* Messages sent by node so far. */
uint64_t dsm_loop_sent(struct dsm_loop *l, unsigned node);
void dsm_loop_destroy(struct dsm_loop *l);

#endif
