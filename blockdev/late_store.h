/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_LATE_STORE_H
#define GRAPPE_LATE_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "blockdev/blockdev.h"

/*
 * A disk whose store arrives after the device is made. The virtio-blk
 * device is created with the machine, before the cluster's fabric is up,
 * but a replicated volume can only be opened once every node that holds one
 * of its stores answers; and it must be closed (marked clean on every
 * store) while the fabric is still up, before the machine goes. So the
 * device gets this stand-in, of the size the domain XML gives, and the
 * volume is attached and detached around the fabric's life.
 *
 * Until attached (and after detached) every operation fails with -EIO; the
 * guest cannot run then. Operations in flight finish before detach returns.
 */
struct late_store;

struct late_store_geometry {
	uint64_t size;
	unsigned block_size;
	bool read_only;
	bool discard;
};

int late_store_create(const struct late_store_geometry *g, struct late_store **out,
		      struct blockdev **bd);
/*
 * Takes 'real' (it must have the geometry's size, and take blocks of the
 * geometry's block size); -EINVAL if it does not fit.
 */
int late_store_attach(struct late_store *ls, struct blockdev *real);
/* Gives back the attached store (NULL if none) for the caller to close. */
struct blockdev *late_store_detach(struct late_store *ls);

#endif
