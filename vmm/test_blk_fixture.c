// SPDX-License-Identifier: MIT
/*
 * The virtio-blk test driver and its platform. See test_blk_fixture.h.
 *
 * Completions come from worker threads, or from the store's own thread
 * for asynchronous requests: the driver waits for them with a generous
 * deadline (tests assert on what happened, never on how fast).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "blockdev/file_store.h"
#include "vmm/test_blk_fixture.h"

/* ---- the platform ---- */

static void rec_irq(void *ctx, unsigned gsi, int level)
{
	struct fx *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->level[gsi % 32] = level;
	pthread_mutex_unlock(&f->lock);
}

void rec_msg(void *ctx, const struct apic_msg *m)
{
	struct fx *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->msgs[m->vector]++;
	pthread_mutex_unlock(&f->lock);
}

unsigned msgs(struct fx *f, unsigned vector)
{
	unsigned n;

	pthread_mutex_lock(&f->lock);
	n = f->msgs[vector];
	pthread_mutex_unlock(&f->lock);
	return n;
}

int level(struct fx *f, unsigned gsi)
{
	int l;

	pthread_mutex_lock(&f->lock);
	l = f->level[gsi];
	pthread_mutex_unlock(&f->lock);
	return l;
}

uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 13 + 1);
}

/* The disk file, guest RAM and the bus, without the device. */
void fx_init(struct fx *f)
{
	uint8_t *buf = test_malloc(DISK_SIZE);
	int fd;

	pthread_mutex_init(&f->lock, NULL);
	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-blk-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	for (unsigned i = 0; i < DISK_SIZE; i++)
		buf[i] = pattern(i);
	fd = open(f->path, O_CREAT | O_WRONLY, 0600);
	assert_int_equal(write(fd, buf, DISK_SIZE), DISK_SIZE);
	close(fd);
	test_free(buf);
	assert_int_equal(guest_mem_init(&f->mem, MEM_SIZE), 0);
	f->irq = (struct irq_sink){ rec_irq, f };
	f->apic = (struct apic_bus){ rec_msg, f };
	io_bus_init(&f->io);
	pci_bus_init(&f->bus, &f->irq, &f->apic);
	assert_int_equal(pci_bus_register(&f->bus, &f->io), 0);
	f->buf_next = BUF_GPA;
}

/* After the device is destroyed. */
void fx_fini(struct fx *f)
{
	pci_bus_destroy(&f->bus);
	guest_mem_destroy(&f->mem);
	unlink(f->path);
	rmdir(f->dir);
	pthread_mutex_destroy(&f->lock);
}

/* ---- the device ---- */

struct blockdev *make_store(struct fx *f, bool ro)
{
	struct file_store_opts o = { .read_only = ro };
	struct blockdev *bd = NULL;
	char err[256];

	assert_int_equal(file_store_open(f->path, &o, &bd, err, sizeof(err)), 0);
	return bd;
}

struct virtio_blk_opts fx_blk_opts(struct fx *f, struct blockdev *bd)
{
	return (struct virtio_blk_opts){
		.name = "vda", .bd = bd, .serial = SERIAL, .discard = true, .nr_queues = NQ,
		.mem = &f->mem,
	};
}

void fx_add_blk(struct fx *f, const struct virtio_blk_opts *o)
{
	char err[256];

	assert_int_equal(virtio_blk_create(&f->blk, &f->bus, o, err, sizeof(err)), 0);
}

/* ---- bus accesses ---- */

uint64_t bus_access(struct fx *f, uint8_t space, uint64_t addr, unsigned len, int write,
		    uint64_t v)
{
	struct io_req r = { .space = space, .is_write = (uint8_t)write, .len = (uint8_t)len,
			    .addr = addr, .data = v };

	io_bus_dispatch(&f->io, &r);
	return r.data;
}

uint32_t cfg_rd(struct fx *f, unsigned reg, unsigned len)
{
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_ADDRESS, 4, 1, 0x80000000u | 1u << 11 | (reg & 0xfc));
	return (uint32_t)bus_access(f, IO_SPACE_PIO, PCI_CONFIG_DATA + (reg & 3), len, 0, 0);
}

void cfg_wr(struct fx *f, unsigned reg, unsigned len, uint32_t v)
{
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_ADDRESS, 4, 1, 0x80000000u | 1u << 11 | (reg & 0xfc));
	bus_access(f, IO_SPACE_PIO, PCI_CONFIG_DATA + (reg & 3), len, 1, v);
}

uint64_t cc_rd(struct fx *f, unsigned off, unsigned len)
{
	return bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_COMMON_CFG] + off,
		      len, 0, 0);
}

void cc_wr(struct fx *f, unsigned off, unsigned len, uint64_t v)
{
	bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_COMMON_CFG] + off, len, 1, v);
}

uint64_t devcfg(struct fx *f, unsigned off, unsigned len)
{
	return bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_DEVICE_CFG] + off,
		      len, 0, 0);
}

uint8_t status(struct fx *f)
{
	return (uint8_t)cc_rd(f, VIRTIO_PCI_COMMON_STATUS, 1);
}

/* Walks the capability list as a driver would. */
void discover(struct fx *f)
{
	unsigned at = cfg_rd(f, PCI_CAPABILITY_LIST, 1);

	assert_true(cfg_rd(f, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	while (at) {
		unsigned id = cfg_rd(f, at, 1);

		if (id == PCI_CAP_ID_MSIX) {
			f->msix_cap = at;
		} else if (id == PCI_CAP_ID_VNDR) {
			unsigned type = cfg_rd(f, at + 3, 1);

			assert_true(type >= 1 && type <= 5);
			f->cap_bar[type] = cfg_rd(f, at + 4, 1);
			f->cap_off[type] = type == VIRTIO_PCI_CAP_PCI_CFG ? at : cfg_rd(f, at + 8, 4);
			f->cap_len[type] = cfg_rd(f, at + 12, 4);
			if (type == VIRTIO_PCI_CAP_NOTIFY_CFG)
				f->notify_mult = cfg_rd(f, at + 16, 4);
		}
		at = cfg_rd(f, at + 1, 1);
	}
	f->bar4 = (cfg_rd(f, PCI_BAR0 + 16, 4) & ~0xfu) | (uint64_t)cfg_rd(f, PCI_BAR0 + 20, 4) << 32;
	f->bar1 = cfg_rd(f, PCI_BAR0 + 4, 4) & ~0xfu;
}

void setup_msix(struct fx *f)
{
	unsigned n = (cfg_rd(f, f->msix_cap + 2, 2) & 0x7ff) + 1;

	cfg_wr(f, f->msix_cap + 2, 2, 0xc000);
	for (unsigned v = 0; v < n; v++) {
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v, 4, 1, 0xfee00000);
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 4, 4, 1, 0);
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 8, 4, 1, MSI_DATA(v));
		bus_access(f, IO_SPACE_MMIO, f->bar1 + 16 * v + 12, 4, 1, 0);
	}
	cfg_wr(f, f->msix_cap + 2, 2, 0x8000);
}

uint64_t device_features(struct fx *f)
{
	cc_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
	uint64_t lo = cc_rd(f, VIRTIO_PCI_COMMON_DF, 4);

	cc_wr(f, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
	return lo | cc_rd(f, VIRTIO_PCI_COMMON_DF, 4) << 32;
}

bool negotiate(struct fx *f, uint64_t features)
{
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f), 0);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	cc_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
	cc_wr(f, VIRTIO_PCI_COMMON_GF, 4, (uint32_t)features);
	cc_wr(f, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
	cc_wr(f, VIRTIO_PCI_COMMON_GF, 4, features >> 32);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	      VIRTIO_STATUS_FEATURES_OK);
	return status(f) & VIRTIO_STATUS_FEATURES_OK;
}

void setup_queue(struct fx *f, unsigned q, bool msix)
{
	uint64_t base = RING_GPA(q);

	memset(f->mem.host + base, 0, 0x3000);
	memset(&f->q[q], 0, sizeof(f->q[q]));
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SELECT, 2, q);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_SIZE, 2), VIRTIO_BLK_QUEUE_SIZE);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_NOFF, 2), q);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_SIZE, 2, QSIZE);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_MSIX, 2, msix ? q + 1 : PCI_MSIX_NO_VECTOR);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_MSIX, 2), msix ? q + 1 : PCI_MSIX_NO_VECTOR);
	/* 64-bit fields as two halves, the way Linux writes them. */
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DESC, 4, (uint32_t)base);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DESC + 4, 4, base >> 32);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DRIVER, 8, base + 0x1000);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_DEVICE, 8, base + 0x2000);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_DEVICE, 8), base + 0x2000);
	cc_wr(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(cc_rd(f, VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1);
}

void driver_init_features(struct fx *f, bool msix, uint64_t features)
{
	discover(f);
	cfg_wr(f, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	if (msix)
		setup_msix(f);
	assert_true(negotiate(f, features & device_features(f)));
	cc_wr(f, VIRTIO_PCI_COMMON_MSIX, 2, msix ? 0 : PCI_MSIX_NO_VECTOR);
	for (unsigned q = 0; q < NQ; q++)
		setup_queue(f, q, msix);
	cc_wr(f, VIRTIO_PCI_COMMON_STATUS, 1, status(f) | VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(status(f), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

void driver_init(struct fx *f, bool msix)
{
	driver_init_features(f, msix, STD_FEATURES | 1ULL << VIRTIO_BLK_F_DISCARD |
			     1ULL << VIRTIO_BLK_F_WRITE_ZEROES);
}

/* ---- requests ---- */

uint64_t galloc(struct fx *f, size_t len)
{
	uint64_t at = f->buf_next;

	f->buf_next += (len + 15) & ~15ULL;
	assert_true(f->buf_next < MEM_SIZE);
	return at;
}

uint16_t submit_nokick(struct fx *f, unsigned q, const struct seg *s, unsigned n)
{
	struct queue *d = &f->q[q];
	uint8_t *ring = f->mem.host + RING_GPA(q);
	uint16_t head = d->next_desc, idx;

	for (unsigned i = 0; i < n; i++) {
		uint16_t at = (uint16_t)((head + i) % QSIZE);
		uint16_t flags = (uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) |
					    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		uint16_t next = (uint16_t)((at + 1) % QSIZE);

		memcpy(ring + 16 * at, &s[i].gpa, 8);
		memcpy(ring + 16 * at + 8, &s[i].len, 4);
		memcpy(ring + 16 * at + 12, &flags, 2);
		memcpy(ring + 16 * at + 14, &next, 2);
	}
	d->next_desc = (uint16_t)((head + n) % QSIZE);
	memcpy(ring + 0x1000 + 4 + 2 * (d->avail_idx % QSIZE), &head, 2);
	idx = ++d->avail_idx;
	__atomic_store_n((uint16_t *)(ring + 0x1002), idx, __ATOMIC_RELEASE);
	return head;
}

/* On a queue just set up: its first chain loops, desc 0 -> desc 0 (no kick). */
void post_looping_chain(struct fx *f, unsigned q)
{
	uint8_t *ring = f->mem.host + RING_GPA(q);
	uint16_t flags = VIRTQ_DESC_F_NEXT, idx = 1, zero = 0;
	uint64_t gpa = galloc(f, 64);
	uint32_t len = 16;

	memcpy(ring, &gpa, 8);
	memcpy(ring + 8, &len, 4);
	memcpy(ring + 12, &flags, 2);
	memcpy(ring + 14, &zero, 2);
	memcpy(ring + 0x1004, &zero, 2);
	__atomic_store_n((uint16_t *)(ring + 0x1002), idx, __ATOMIC_RELEASE);
}

void kick(struct fx *f, unsigned q)
{
	bus_access(f, IO_SPACE_MMIO, f->bar4 + f->cap_off[VIRTIO_PCI_CAP_NOTIFY_CFG] +
	       (uint64_t)q * f->notify_mult, 2, 1, q);
}

uint16_t used_idx(struct fx *f, unsigned q)
{
	return __atomic_load_n((uint16_t *)(f->mem.host + RING_GPA(q) + 0x2002), __ATOMIC_ACQUIRE);
}

bool wait_for(bool (*cond)(struct fx *, unsigned), struct fx *f, unsigned arg)
{
	for (int i = 0; i < 20000; i++) {	/* 20 s */
		struct timespec ts = { 0, 1000000 };

		if (cond(f, arg))
			return true;
		nanosleep(&ts, NULL);
	}
	return cond(f, arg);
}

static bool used_moved(struct fx *f, unsigned q)
{
	return used_idx(f, q) != f->q[q].used_seen;
}

/* Waits for the next completion on q: returns its used length. */
uint32_t complete(struct fx *f, unsigned q, uint16_t head)
{
	uint8_t *e;
	uint32_t id, len;

	assert_true(wait_for(used_moved, f, q));
	e = f->mem.host + RING_GPA(q) + 0x2000 + 4 + 8 * (f->q[q].used_seen % QSIZE);
	memcpy(&id, e, 4);
	memcpy(&len, e + 4, 4);
	assert_int_equal(id, head);
	f->q[q].used_seen++;
	return len;
}

/*
 * The next used entry of queue q, whichever request it is: with several
 * workers per queue, requests complete in any order (as virtio allows).
 */
uint16_t complete_any(struct fx *f, unsigned q)
{
	uint8_t *e;
	uint32_t id;

	assert_true(wait_for(used_moved, f, q));
	e = f->mem.host + RING_GPA(q) + 0x2000 + 4 + 8 * (f->q[q].used_seen % QSIZE);
	memcpy(&id, e, 4);
	f->q[q].used_seen++;
	return (uint16_t)id;
}

struct req {
	uint64_t hdr, data, status;
	uint32_t data_len;
};

/* A request with its header cut in two buffers and the data in two more. */
uint8_t blk_req(struct fx *f, unsigned q, uint32_t type, uint64_t sector, void *data,
		uint32_t len, bool data_in, uint32_t *used)
{
	struct req r = { .hdr = galloc(f, 16), .data = len ? galloc(f, len) : 0,
			 .status = galloc(f, 1), .data_len = len };
	struct seg s[5];
	unsigned n = 0;
	uint16_t head;
	uint32_t u;

	memcpy(f->mem.host + r.hdr, &type, 4);
	memset(f->mem.host + r.hdr + 4, 0, 4);
	memcpy(f->mem.host + r.hdr + 8, &sector, 8);
	f->mem.host[r.status] = 0xee;
	if (len && !data_in)
		memcpy(f->mem.host + r.data, data, len);
	s[n++] = (struct seg){ r.hdr, 5, false };
	s[n++] = (struct seg){ r.hdr + 5, 11, false };
	if (len > 512) {
		s[n++] = (struct seg){ r.data, 512, data_in };
		s[n++] = (struct seg){ r.data + 512, len - 512, data_in };
	} else if (len) {
		s[n++] = (struct seg){ r.data, len, data_in };
	}
	s[n++] = (struct seg){ r.status, 1, true };
	head = submit_nokick(f, q, s, n);
	kick(f, q);
	u = complete(f, q, head);
	if (used)
		*used = u;
	if (len && data_in)
		memcpy(data, f->mem.host + r.data, len);
	return f->mem.host[r.status];
}

void file_read(struct fx *f, uint64_t off, void *buf, size_t len)
{
	int fd = open(f->path, O_RDONLY);

	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- conditions for wait_for() ---- */

bool needs_reset(struct fx *f, unsigned unused)
{
	return status(f) & VIRTIO_STATUS_NEEDS_RESET;
}

bool config_irq(struct fx *f, unsigned n)
{
	return msgs(f, MSI_DATA(0)) >= n;
}
