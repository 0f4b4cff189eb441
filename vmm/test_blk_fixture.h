/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_TEST_BLK_FIXTURE_H
#define GRAPPE_TEST_BLK_FIXTURE_H

/*
 * A virtio-blk device over the modern PCI transport and the driver that
 * tests it, shared by vmm/test_virtio_blk.c and vmm/test_vq_remote.c: the
 * platform (guest RAM, a PCI bus, recorders of the interrupts), a raw file
 * of pattern() bytes, and a driver that finds the function through
 * configuration mechanism #1, negotiates, sets up MSI-X and the queues in
 * guest RAM, and submits requests. A test embeds struct fx first in its
 * own fixture when it needs more.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/virtio_blk.h"

#define MEM_SIZE   (8u << 20)
#define DISK_SIZE  (1u << 20)
#define QSIZE      16
#define NQ         2
#define RING_GPA(q) (0x100000ULL + 0x10000ULL * (q))
#define BUF_GPA    0x400000ULL
#define MSI_DATA(v) (0x40 + (v))
#define SERIAL     "SN-1234"

struct queue {
	uint16_t avail_idx;
	uint16_t used_seen;
	uint16_t next_desc;
};

struct fx {
	struct guest_mem mem;
	struct io_bus io;
	struct pci_bus bus;
	struct irq_sink irq;
	struct apic_bus apic;
	struct virtio_blk *blk;
	char dir[64], path[96];
	pthread_mutex_t lock;
	int level[32];
	unsigned msgs[256];          /* MSIs received, per vector */
	uint64_t buf_next;
	/* What the driver found. */
	uint64_t bar4, bar1;
	unsigned cap_off[6], cap_len[6], cap_bar[6];
	unsigned msix_cap, notify_mult;
	struct queue q[NQ];
};

/* ---- the platform ---- */

/* The disk file, guest RAM and the bus, without the device. */
void fx_init(struct fx *f);
void fx_fini(struct fx *f);
void rec_msg(void *ctx, const struct apic_msg *m);
unsigned msgs(struct fx *f, unsigned vector);
int level(struct fx *f, unsigned gsi);
uint8_t pattern(uint64_t off);

/* ---- the device ---- */

struct blockdev *make_store(struct fx *f, bool ro);
/* The options every test's device has: the rest is the caller's. */
struct virtio_blk_opts fx_blk_opts(struct fx *f, struct blockdev *bd);
void fx_add_blk(struct fx *f, const struct virtio_blk_opts *o);

/* ---- the driver ---- */

uint64_t bus_access(struct fx *f, uint8_t space, uint64_t addr, unsigned len, int write,
		    uint64_t v);
uint32_t cfg_rd(struct fx *f, unsigned reg, unsigned len);
void cfg_wr(struct fx *f, unsigned reg, unsigned len, uint32_t v);
uint64_t cc_rd(struct fx *f, unsigned off, unsigned len);
void cc_wr(struct fx *f, unsigned off, unsigned len, uint64_t v);
uint64_t devcfg(struct fx *f, unsigned off, unsigned len);
uint8_t status(struct fx *f);
/* The steps of driver_init(), for tests that take them one by one. */
void discover(struct fx *f);
void setup_msix(struct fx *f);
uint64_t device_features(struct fx *f);
bool negotiate(struct fx *f, uint64_t features);
void setup_queue(struct fx *f, unsigned q, bool msix);

#define STD_FEATURES (1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_FLUSH | \
		      1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE | \
		      1ULL << VIRTIO_BLK_F_MQ | 1ULL << VIRTIO_F_INDIRECT_DESC)

void driver_init_features(struct fx *f, bool msix, uint64_t features);
void driver_init(struct fx *f, bool msix);

/* ---- requests ---- */

uint64_t galloc(struct fx *f, size_t len);

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

uint16_t submit_nokick(struct fx *f, unsigned q, const struct seg *s, unsigned n);
void post_looping_chain(struct fx *f, unsigned q);
void kick(struct fx *f, unsigned q);
uint16_t used_idx(struct fx *f, unsigned q);
bool wait_for(bool (*cond)(struct fx *, unsigned), struct fx *f, unsigned arg);
uint32_t complete(struct fx *f, unsigned q, uint16_t head);
uint16_t complete_any(struct fx *f, unsigned q);
uint8_t blk_req(struct fx *f, unsigned q, uint32_t type, uint64_t sector, void *data,
		uint32_t len, bool data_in, uint32_t *used);
void file_read(struct fx *f, uint64_t off, void *buf, size_t len);
/* Conditions for wait_for(). */
bool needs_reset(struct fx *f, unsigned unused);
bool config_irq(struct fx *f, unsigned n);

#endif
