/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_DSM_SOCK_H
#define GRAPPE_DSM_SOCK_H

#include "dsm/dsm.h"

/*
 * A multi-process transport for the stress tool and the benchmark (the
 * cluster's transport is the fabric): one connected SOCK_SEQPACKET unix
 * socket per pair of nodes, one DSM message (header, then the page if
 * any) per packet, so order per pair and message boundaries come from
 * the kernel. A receive thread delivers to the attached node; its poll op
 * lets a spinning fault handler deliver too. A peer whose socket closes
 * or who sends a malformed packet is reported down.
 */
struct dsm_sock;

/* Connected pairs for nr nodes: fds[i * nr + j] is node i's end towards j (-1 for i == j). */
int dsm_sock_pairs(unsigned nr, int *fds);
/*
 * fds[j]: this node's socket to node j (-1 for self), taken over. After a
 * message the receive thread polls for spin_us before it sleeps (0: never).
 */
int dsm_sock_create(unsigned self, unsigned nr_nodes, const int *fds, unsigned spin_us,
		    struct dsm_sock **out);
void dsm_sock_attach(struct dsm_sock *t, struct dsm_node *n);
struct dsm_transport_ops dsm_sock_ops(struct dsm_sock *t);
/*
 * With rx_thread, a receive thread delivers messages; without, only the
 * poll op does (the DSM fault handler, through poll_fd), which saves a
 * thread and a wake-up per message but makes the handler the only reader.
 */
int dsm_sock_start(struct dsm_sock *t, bool rx_thread);
/* Stops the receive thread, closes the sockets. */
void dsm_sock_destroy(struct dsm_sock *t);

#endif
