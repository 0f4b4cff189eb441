/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_NODE_CONTROL_H
#define GRAPPE_NODE_CONTROL_H

#include <pthread.h>
#include <stdbool.h>

#include "mgmt/control.h"
#include "vmm/machine.h"

/*
 * The QMP-style control commands (mgmt/control.h) answered by one node:
 * they act on the machine this node runs, which may be rebuilt (restart)
 * or absent (between runs), hence the lock and the 'live' flag the node
 * shares with us.
 */
struct node_control {
	pthread_mutex_t *lock;
	bool *live;
	struct machine *m;
	const struct vm_config *cfg;
	unsigned self;
	unsigned nr_nodes;
	struct control *server;
};

void node_control_ops(struct node_control *nc, struct control_ops *ops);
/* Starts the socket at $GRAPPE_RUN_DIR/<vm>/node<N>.qmp; a failure is only logged. */
void node_control_start(struct node_control *nc);
void node_control_stop(struct node_control *nc);

#endif
