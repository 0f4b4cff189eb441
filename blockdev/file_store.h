/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_FILE_STORE_H
#define GRAPPE_FILE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "blockdev/blockdev.h"

/*
 * A blockdev on a raw image file or a host block device: pread/pwrite,
 * fdatasync for flush, fallocate (files) or BLKDISCARD/BLKZEROOUT (block
 * devices) for discard and write-zeroes, with writes of zeros when the
 * filesystem or device cannot.
 */
enum file_store_cache {
	FILE_STORE_WRITEBACK = 0, /* host page cache; flush = fdatasync (default) */
	FILE_STORE_NONE,          /* O_DIRECT: no host cache; flush = fdatasync */
	FILE_STORE_WRITETHROUGH,  /* O_DSYNC: every write durable */
	FILE_STORE_DIRECTSYNC,    /* O_DIRECT | O_DSYNC */
	FILE_STORE_UNSAFE,        /* host page cache, flush ignored */
};

struct file_store_opts {
	bool read_only;
	enum file_store_cache cache;
};

/* Opens path; on error returns -1 with "PATH: what" in err. */
int file_store_open(const char *path, const struct file_store_opts *o, struct blockdev **out,
		    char *err, size_t errlen);

#endif
