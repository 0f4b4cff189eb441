/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_NETNS_H
#define GRAPPE_NETNS_H

#include <stddef.h>

#include "vmm/vm_config.h"

/*
 * `grappe run --netns`: each node in its own network namespace, joined by
 * veth pairs to a bridge, as if each were a separate host. Node i gets
 * 10.213.S.(i+1) with S from the launcher's PID, and keeps the port the
 * domain XML gives it. Everything created is removed by netns_teardown.
 */
struct netns_net {
	unsigned n;
	char bridge[16];
	char ns[VM_MAX_NODES][32];
	char veth[VM_MAX_NODES][24];	/* IFNAMSIZ is 16: names stay under it */
	char peer_arg[VM_MAX_NODES][160];   /* "--peer" values: "I=ADDR:PORT" */
};

int netns_setup(struct netns_net *net, const struct vm_config *cfg, char *err, size_t errlen);
void netns_teardown(struct netns_net *net);

#endif
