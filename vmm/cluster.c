// SPDX-License-Identifier: MIT
/* Placeholder until the fabric and DSM land: a cluster cannot start yet. */
#include <stdio.h>

#include "vmm/cluster.h"

int cluster_attach(struct cluster **out, struct machine *m, const struct vm_config *cfg,
		   const struct cluster_opts *o, char *err, size_t errlen)
{
	*out = NULL;
	snprintf(err, errlen, "multi-node clusters are not available in this build");
	return -1;
}

int cluster_start_guest(struct cluster *c, char *err, size_t errlen)
{
	return 0;
}

void cluster_detach(struct cluster *c)
{
}
