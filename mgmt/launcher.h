/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LAUNCHER_H
#define GRAPPE_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vmm/vm_config.h"

/*
 * `grappe run`: starts the grappe-node processes of a VM on this machine —
 * one per cluster node whose address is local (all of them with --netns,
 * each then in its own network namespace) — supervises them and returns
 * the VM's exit status.
 */
struct launch_opts {
	const char *xml_path;
	const char *node_bin;     /* path of grappe-node */
	bool netns;               /* each node in its own network namespace */
	bool quiet;
};

int launcher_run(const struct vm_config *cfg, const struct launch_opts *o);

/* Is host (of "host:port") an address of this machine? */
bool launcher_addr_is_local(const char *address);

#endif
