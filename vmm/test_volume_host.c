// SPDX-License-Identifier: MIT
/*
 * Two nodes' volume hosts in one process, joined by a loopback transport
 * (a delivery thread per direction, in order, as the fabric's receive
 * thread): node 0 is the I/O node, with store 0 and the volume disk "vda"
 * (a late_store, exported as disk/vda, then attached to the volume); node
 * 1 holds store 1 and serves a queue of vda. Checks the wiring of read
 * leases: node 1's disk is a lease reader over disk/vda, lease frames are
 * routed to the coordinator and the reader, the stats report both.
 */
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
#include <json-c/json.h>

#include "blockdev/late_store.h"
#include "blockdev/test_loopback_fixture.h"
#include "vmm/volume_host.h"

#define VOL_SIZE (4u << 20)
#define CHUNK (64u << 10)
#define MiB (1u << 20)

static void sleep_ms(unsigned ms)
{
	nanosleep(&(struct timespec){ .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 },
		  NULL);
}

/* ---- the loopback (blockdev/test_loopback_fixture.h): to a node's volume host ---- */

static void to_host(void *to, unsigned src, uint16_t type, uint64_t req_id, const void *p,
		    size_t len)
{
	volume_host_receive(*(struct volume_host **)to, src, type, req_id, p, len);
}

/* ---- the two nodes ---- */

struct fix {
	char dir[64];
	char path[2][96];
	struct vm_config cfg;
	struct volume_host *vh[2];
	struct loopback_link l01, l10;
	struct late_store *ls;
	struct blockdev *io_disk;      /* node 0's vda (the late_store) */
	struct volume *vol;
	struct blockdev *served;       /* node 1's vda */
};

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	if (getenv("GRAPPE_TEST_LOG"))
		fprintf(stderr, "log: %s\n", msg);
}

static void make_config(struct fix *f)
{
	struct vm_volume *v = &f->cfg.volumes[0];
	struct vm_disk *d = &f->cfg.disks[0];

	f->cfg.name = "t";
	f->cfg.source = "test";
	f->cfg.nr_volumes = 1;
	snprintf(v->name, sizeof(v->name), "vol0");
	v->size = VOL_SIZE;
	v->chunk = CHUNK;
	v->replicas = 2;
	v->nr_stores = 2;
	for (unsigned s = 0; s < 2; s++) {
		char p[96];

		snprintf(p, sizeof(p), "%s/store%u", f->dir, s);
		memcpy(f->path[s], p, sizeof(p));
		v->stores[s] = (struct vm_volume_store){ .node = s, .path = f->path[s] };
	}
	f->cfg.nr_disks = 1;
	d->type = VM_DISK_VOLUME;
	snprintf(d->volume, sizeof(d->volume), "vol0");
	snprintf(d->target, sizeof(d->target), "vda");
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct late_store_geometry g = { .size = VOL_SIZE, .block_size = 512 };
	char err[512];

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/grappe-vh-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	make_config(f);
	for (unsigned n = 0; n < 2; n++) {
		struct volume_host_config vc = { .cfg = &f->cfg, .self = n, .io_node = 0,
						 .log = quiet };

		assert_int_equal(volume_host_create(&f->vh[n], &vc, err, sizeof(err)), 0);
	}
	assert_int_equal(late_store_create(&g, &f->ls, &f->io_disk), 0);
	assert_int_equal(volume_host_export_disk(f->vh[0], "vda", f->io_disk, err, sizeof(err)), 0);
	loopback_link_start(&f->l01, 0, 1, to_host, &f->vh[1]);
	loopback_link_start(&f->l10, 1, 0, to_host, &f->vh[0]);
	assert_int_equal(volume_host_set_transport(f->vh[1], loopback_link_send, &f->l10, err,
						   sizeof(err)), 0);
	assert_int_equal(volume_host_set_transport(f->vh[0], loopback_link_send, &f->l01, err,
						   sizeof(err)), 0);
	if (volume_host_open(f->vh[0], &f->cfg.volumes[0], &f->vol, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(late_store_attach(f->ls, volume_blockdev(f->vol)), 0);
	if (volume_host_open_disk(f->vh[1], 0, "vda", &f->served, err, sizeof(err)))
		fail_msg("%s", err);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	/* As nodes end: disks, the volume, then the transports, then the hosts. */
	blockdev_close(f->served);
	blockdev_close(late_store_detach(f->ls));
	blockdev_close(f->io_disk);
	for (unsigned n = 0; n < 2; n++)
		volume_host_shutdown(f->vh[n]);
	loopback_link_stop(&f->l01);
	loopback_link_stop(&f->l10);
	for (unsigned n = 0; n < 2; n++)
		volume_host_destroy(f->vh[n]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* One figure of a node's "local_reads" or "read_leases" entry for vol0 (-1 if absent). */
static int64_t stat_of(struct fix *f, unsigned node, const char *list, const char *key)
{
	struct json_object *o = json_object_new_object(), *a, *e, *v;
	int64_t x = -1;

	volume_host_stats_json(f->vh[node], o);
	if (json_object_object_get_ex(o, list, &a) && json_object_array_length(a) == 1) {
		e = json_object_array_get_idx(a, 0);
		if (json_object_object_get_ex(e, key, &v))
			x = json_object_get_int64(v);
	}
	json_object_put(o);
	return x;
}

static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 13 + i * 7 + (i >> 10));
}

static void test_serving_node_reads_its_store(void **state)
{
	struct fix *f = *state;
	static uint8_t wbuf[MiB], rbuf[MiB];
	struct iovec w = { .iov_base = wbuf, .iov_len = MiB }, r = { .iov_base = rbuf, .iov_len = MiB };
	unsigned tries = 0;
	int64_t fwd, local;

	/* Node 1 holds a store of vol0: its vda reads under leases; node 0 coordinates. */
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_local"), 0);
	assert_int_equal(stat_of(f, 0, "read_leases", "leases"), 0);
	assert_int_equal(stat_of(f, 0, "local_reads", "reads_local"), -1);

	pattern(wbuf, MiB, 1);
	assert_int_equal(blockdev_write(f->served, &w, 1, MiB), 0);
	assert_int_equal(blockdev_read(f->served, &r, 1, MiB), 0);
	assert_memory_equal(rbuf, wbuf, MiB);
	/* The first piece went to node 0 and asked for the lease; later pieces may be local. */
	assert_true(stat_of(f, 1, "local_reads", "reads_forwarded") >= 1);
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_forwarded") +
			 stat_of(f, 1, "local_reads", "reads_local"), MiB / CHUNK);
	while (stat_of(f, 1, "local_reads", "leases") < 1 && tries++ < 10000)
		sleep_ms(1);
	assert_int_equal(stat_of(f, 1, "local_reads", "leases"), 1);  /* 64 chunks: one region */
	assert_int_equal(stat_of(f, 0, "read_leases", "granted"), 1);

	fwd = stat_of(f, 1, "local_reads", "reads_forwarded");
	local = stat_of(f, 1, "local_reads", "reads_local");
	memset(rbuf, 0, MiB);
	assert_int_equal(blockdev_read(f->served, &r, 1, MiB), 0);
	assert_memory_equal(rbuf, wbuf, MiB);
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_local") - local, MiB / CHUNK);
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_forwarded"), fwd);

	/* A write from node 1 goes through node 0 to both stores: a local read sees it. */
	pattern(wbuf, MiB, 2);
	assert_int_equal(blockdev_write(f->served, &w, 1, MiB), 0);
	assert_int_equal(blockdev_read(f->served, &r, 1, MiB), 0);
	assert_memory_equal(rbuf, wbuf, MiB);
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_local") - local, 2 * MiB / CHUNK);
	assert_int_equal(stat_of(f, 1, "local_reads", "reads_forwarded"), fwd);
	assert_int_equal(blockdev_flush(f->served), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_serving_node_reads_its_store, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
