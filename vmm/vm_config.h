/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VM_CONFIG_H
#define GRAPPE_VM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What a domain XML describes, in the form the VMM uses. Filled by
 * vm_config_load() (mgmt/domain_xml.c) and owned by the caller, who frees it
 * with vm_config_free().
 */

#define VM_MAX_VCPUS 64
#define VM_MAX_CELLS 16

enum vm_action {
	VM_ACTION_DESTROY = 0,  /* stop the VM, grappe run exits */
	VM_ACTION_RESTART,      /* reset and boot again */
	VM_ACTION_PRESERVE,     /* keep the process, vCPUs stopped */
	VM_ACTION_RENAME_RESTART, /* treated as restart */
};

enum vm_serial_type {
	VM_SERIAL_STDIO = 0,
	VM_SERIAL_FILE,
	VM_SERIAL_PTY,
	VM_SERIAL_NONE,
};

/*
 * cells[i].id == i: the loader orders cells by id. Every distance is filled
 * in: the value the XML gives, else the one given for the opposite direction,
 * else 10 for the cell itself and 20 for any other (ACPI SLIT defaults).
 */
struct vm_cell {
	unsigned id;
	uint64_t mem_bytes;
	unsigned nr_vcpus;
	unsigned vcpus[VM_MAX_VCPUS];      /* vCPU indices in this cell */
	unsigned distance[VM_MAX_CELLS];   /* SLIT row, [0..nr_cells) valid */
};

/*
 * Where the cells run: <metadata><grappe:cluster> (docs/cluster.md). Node i
 * runs cell nodes[i].cell; without the element every cell is on one node.
 */
#define VM_MAX_NODES VM_MAX_CELLS
#define VM_CLUSTER_NS "urn:grappe:cluster:1"

struct vm_cluster_node {
	unsigned cell;
	char address[128];       /* host:port the node listens on */
	uint64_t cache_bytes;    /* bound on other cells' pages held; 0 = unbounded */
	uint64_t memory_max;     /* cgroup memory.max for the node process; 0 = none */
};

struct vm_cluster {
	unsigned nr_nodes;       /* 0: no cluster element */
	long line;               /* of <grappe:cluster>, for messages */
	char transport[16];      /* "tcp" */
	char *secret_path;       /* NULL: generated for a local cluster */
	struct vm_cluster_node nodes[VM_MAX_NODES];
};

/*
 * <devices><disk>: virtio-blk disks on raw files or block devices
 * (docs/devices.md). [issue #4: disks]
 */
#define VM_MAX_DISKS 16
#define VM_DISK_SERIAL_MAX 20    /* bytes a virtio-blk ID holds */

enum vm_disk_type {
	VM_DISK_FILE = 0,        /* <disk type='file'><source file=...> */
	VM_DISK_BLOCK,           /* <disk type='block'><source dev=...> */
	VM_DISK_VOLUME,          /* <disk type='volume'><source pool='grappe' volume=...> */
};

enum vm_disk_cache {         /* <driver cache=...> */
	VM_DISK_CACHE_DEFAULT = 0,   /* = writeback */
	VM_DISK_CACHE_NONE,
	VM_DISK_CACHE_WRITEBACK,
	VM_DISK_CACHE_WRITETHROUGH,
	VM_DISK_CACHE_DIRECTSYNC,
	VM_DISK_CACHE_UNSAFE,
};

struct vm_disk {
	enum vm_disk_type type;
	char *path;              /* absolute when loaded from a file; NULL for a volume */
	char volume[32];         /* VM_DISK_VOLUME: the <grappe:volume> name */
	char target[16];         /* <target dev=>, e.g. "vda" */
	char serial[VM_DISK_SERIAL_MAX + 1]; /* "" when absent */
	enum vm_disk_cache cache;
	bool readonly;           /* <readonly/> */
	bool discard;            /* <driver discard='unmap'> (default) rather than 'ignore' */
	bool io_uring;           /* <driver io='native'|'io_uring'>: asynchronous I/O (docs/devices.md) */
	/* <blockio logical_block_size= physical_block_size=>: bytes, 0 = the store's own */
	unsigned logical_block, physical_block;
	long line;               /* of <disk>, for messages */
};

/*
 * The logical block <blockio> asks for, or 512 (the least any store takes):
 * what a volume disk tells the guest, its stores being opened later.
 */
static inline unsigned vm_disk_logical_block(const struct vm_disk *d)
{
	return d->logical_block ? d->logical_block : 512;
}

/*
 * <grappe:volume> in <metadata>: a replicated volume cut in chunks over one
 * store per host (docs/volume.md). A <disk type='volume'> names it.
 */
#define VM_MAX_VOLUMES 4
#define VM_MAX_STORES 8
#define VM_VOLUME_NAME_MAX 31

struct vm_volume_store {
	unsigned node;           /* cluster node that holds it (0 without a cluster) */
	char *path;              /* file or block device on that node, absolute */
	long line;
};

struct vm_volume {
	char name[VM_VOLUME_NAME_MAX + 1];
	uint64_t size;           /* bytes the guest sees */
	uint64_t chunk;          /* bytes per chunk, a power of two */
	unsigned replicas;       /* copies of each chunk */
	unsigned nr_stores;      /* store index = order of <grappe:store> */
	struct vm_volume_store stores[VM_MAX_STORES];
	long line;
};

struct vm_config {
	char *name;
	char *source;            /* file the config came from, for messages */
	uint64_t mem_bytes;
	unsigned nr_vcpus;
	char *kernel;            /* os/kernel, may be NULL */
	char *initrd;            /* os/initrd, may be NULL */
	char *cmdline;           /* os/cmdline, may be NULL */
	unsigned nr_cells;       /* 0: no <numa>, the machine has one cell */
	struct vm_cell cells[VM_MAX_CELLS];
	enum vm_action on_poweroff;
	enum vm_action on_reboot;
	enum vm_action on_crash;
	enum vm_serial_type serial;
	char *serial_path;       /* for VM_SERIAL_FILE */
	char *metadata;          /* <metadata> serialized, NULL if absent */
	struct vm_cluster cluster;
	unsigned nr_disks;       /* [issue #4: disks] in XML order = PCI slot order */
	struct vm_disk disks[VM_MAX_DISKS];
	unsigned nr_volumes;
	struct vm_volume volumes[VM_MAX_VOLUMES];
};

/* Maximum length of an error message from the loader. */
#define VM_CONFIG_ERR_LEN 512
/* Larger inputs are refused: a domain XML is a few KiB. */
#define VM_CONFIG_MAX_XML (1u << 20)

/*
 * Parses a libvirt domain XML file. On success returns 0 and *out is set.
 * Relative kernel, initrd and serial file paths are made absolute against
 * the directory of the XML file. Memory sizes are rounded up to 4 KiB.
 * On error returns -1 and writes "FILE:LINE: what is wrong" into err.
 * Unsupported elements are reported through warn (may be NULL) and ignored.
 */
int vm_config_load(const char *path, struct vm_config **out,
		   char err[VM_CONFIG_ERR_LEN],
		   void (*warn)(void *ctx, const char *msg), void *warn_ctx);
/*
 * Same from a buffer; 'name' is used in messages in place of a file name.
 * Relative paths are left as they are (there is no file to be relative to).
 */
int vm_config_parse(const char *buf, size_t len, const char *name,
		    struct vm_config **out, char err[VM_CONFIG_ERR_LEN],
		    void (*warn)(void *ctx, const char *msg), void *warn_ctx);
void vm_config_free(struct vm_config *cfg);

/*
 * Checks the cluster description against the cells (one node per cell).
 * Returns 0, or -1 with "FILE:LINE: ..." in err.
 */
int vm_cluster_check(const struct vm_config *cfg, char err[VM_CONFIG_ERR_LEN]);
/* The node that runs a cell (0 without a cluster description). */
unsigned vm_cluster_node_of_cell(const struct vm_config *cfg, unsigned cell);
/* Volumes: store nodes exist, every volume disk names a volume, once. */
int vm_volumes_check(const struct vm_config *cfg, char err[VM_CONFIG_ERR_LEN]);
const struct vm_volume *vm_config_volume(const struct vm_config *cfg, const char *name);

/* The cell a vCPU belongs to (0 when there are no cells). */
unsigned vm_config_vcpu_cell(const struct vm_config *cfg, unsigned vcpu);

#endif
