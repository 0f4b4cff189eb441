// SPDX-License-Identifier: MIT
/*
 * virtio over PCI, modern transport (virtio 1.2, 4.1), and the queue
 * workers. See virtio_pci.h.
 *
 * Locks, in order: the PCI bus lock (config space; the PCI-configuration
 * access window calls into our BAR from there), vp->lock (registers), a
 * queue's run_lock (its ring, held by the worker while it works), then
 * vp->isr_lock, the MSI-X lock, the bus's irq_lock. A worker never takes
 * vp->lock, so a register access that must wait for a worker (reset,
 * queue enable) can hold it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio_pci.h"

#define CAP_LEN        16
#define NOTIFY_CAP_LEN 20
#define PCICFG_CAP_LEN 20

static uint8_t get_status(struct virtio_pci *vp)
{
	return __atomic_load_n(&vp->status, __ATOMIC_ACQUIRE);
}

static void vlog(struct virtio_pci *vp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vlog(struct virtio_pci *vp, const char *fmt, ...)
{
	char msg[320];
	int n;
	va_list ap;

	if (!vp->p.log)
		return;
	n = snprintf(msg, sizeof(msg), "%s: ", vp->p.name);
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	vp->p.log(vp->p.log_ctx, msg);
}

/* ---- interrupts ---- */

static void raise_isr(struct virtio_pci *vp, uint8_t bit)
{
	pthread_mutex_lock(&vp->isr_lock);
	vp->isr |= bit;
	pci_set_intx(&vp->pci, 1);
	pthread_mutex_unlock(&vp->isr_lock);
}

static void irq(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	if (pci_msix_enabled(&vp->msix)) {
		/* With MSI-X on, a queue without a vector gets no interrupt (4.1.5.4). */
		if (vector != PCI_MSIX_NO_VECTOR)
			pci_msix_notify(&vp->msix, vector);
		return;
	}
	raise_isr(vp, isr_bit);
}

void virtio_pci_queue_irq(struct virtio_pci *vp, unsigned q)
{
	if (vp->p.replica) {
		struct virtio_msix_route r;

		/* Straight to the LAPICs when the vector may fire, else by the I/O node. */
		pthread_mutex_lock(&vp->route_lock);
		r = vp->queues[q].route;
		pthread_mutex_unlock(&vp->route_lock);
		if (r.direct)
			vp->p.replica->msi(vp->p.remote_ctx, q, r.addr, r.data);
		else
			vp->p.replica->irq(vp->p.remote_ctx, q);
		return;
	}
	irq(vp, __atomic_load_n(&vp->queues[q].msix_vector, __ATOMIC_ACQUIRE), 1);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	__atomic_fetch_add(&vp->config_generation, 1, __ATOMIC_RELEASE);
	irq(vp, __atomic_load_n(&vp->config_msix_vector, __ATOMIC_ACQUIRE), 2);
}

void virtio_pci_fail(struct virtio_pci *vp, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	uint8_t old;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	old = __atomic_fetch_or(&vp->status, VIRTIO_STATUS_NEEDS_RESET, __ATOMIC_ACQ_REL);
	if (old & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vlog(vp, "%s; the device needs a reset", why);
	/* A replica has no registers: the I/O node tells the driver. */
	if (vp->p.replica) {
		vp->p.replica->fail(vp->p.remote_ctx, why);
		return;
	}
	/* Only a driver that is running can be told (2.1.2). */
	if (old & VIRTIO_STATUS_DRIVER_OK)
		virtio_pci_config_changed(vp);
}

uint64_t virtio_pci_features(struct virtio_pci *vp)
{
	uint64_t f;

	pthread_mutex_lock(&vp->lock);
	f = vp->guest_features;
	pthread_mutex_unlock(&vp->lock);
	return f;
}

/* ---- queue workers ---- */

static void kick(struct virtio_pci_queue *q)
{
	const struct virtio_queue_loop *loop = q->vp->p.loop;

	pthread_mutex_lock(&q->kick_lock);
	q->kicked = true;
	q->kicks++;
	if (!loop)
		pthread_cond_signal(&q->kick_cond);
	pthread_mutex_unlock(&q->kick_lock);
	/* After the flag: the worker looks at it once wait() returns. */
	if (loop)
		loop->wake(q->vp->p.opaque, q->index);
}

static bool queue_live(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
	return q->vq.ready && !q->vq.broken && (get_status(vp) & VIRTIO_STATUS_DRIVER_OK) &&
	       !(get_status(vp) & VIRTIO_STATUS_NEEDS_RESET);
}

/*
 * One request popped under run_lock, processed without it (so siblings can
 * pop and process others meanwhile), returned under it again. Returns
 * false when the device failed. busy covers the window without the lock:
 * a reset waits for it to drop to 0, so no chain is returned to a ring that
 * was reset under it.
 */
static bool serve_one(struct virtio_pci *vp, struct virtio_pci_worker *w)
{
	struct virtio_pci_queue *q = w->q;
	long written;

	q->busy++;
	/*
	 * More waiting and a worker free to take it: wake one. Waking on every
	 * pop instead costs a context switch per request for nothing when the
	 * ring holds one (and on a host short of cores that shows).
	 */
	if (q->busy < q->nr_workers && virtq_has_avail(&q->vq))
		kick(q);
	pthread_mutex_unlock(&q->run_lock);
	written = vp->p.ops->process(vp->p.opaque, q->index, w->chain);
	pthread_mutex_lock(&q->run_lock);
	if (written == VIRTIO_PCI_DEFERRED) {
		/* virtio_pci_complete() may have run already: deferred dips below 0 meanwhile. */
		q->deferred++;
	} else if (written >= 0 && queue_live(vp, q)) {
		__atomic_fetch_add(&q->requests, 1, __ATOMIC_RELAXED);
		virtq_push(&q->vq, w->chain->head, (uint32_t)written);
		if (virtq_should_notify(&q->vq))
			virtio_pci_queue_irq(vp, q->index);
	}
	if (--q->busy == 0 && q->deferred == 0)
		pthread_cond_broadcast(&q->idle_cond);
	/* < 0 otherwise: the device called virtio_pci_fail() */
	return written >= 0 || written == VIRTIO_PCI_DEFERRED;
}

void virtio_pci_complete(struct virtio_pci *vp, unsigned queue, uint16_t head, uint32_t written)
{
	struct virtio_pci_queue *q = &vp->queues[queue];
	bool wake;

	pthread_mutex_lock(&q->run_lock);
	if (queue_live(vp, q)) {
		__atomic_fetch_add(&q->requests, 1, __ATOMIC_RELAXED);
		virtq_push(&q->vq, head, written);
		/*
		 * With EVENT_IDX, completions that land while the driver has not
		 * yet moved used_event since the last interrupt raise no other:
		 * a batch reaped together costs the guest one interrupt.
		 */
		if (virtq_should_notify(&q->vq))
			virtio_pci_queue_irq(vp, q->index);
	}
	if (--q->deferred == 0 && q->busy == 0)
		pthread_cond_broadcast(&q->idle_cond);
	/*
	 * A loop worker that stopped for want of room, or that waits for the
	 * last request before it stops, must look again even if this request
	 * did not complete through its own wait().
	 */
	wake = vp->p.loop && (q->throttled || __atomic_load_n(&q->stop, __ATOMIC_ACQUIRE));
	pthread_mutex_unlock(&q->run_lock);
	if (wake)
		vp->p.loop->wake(vp->p.opaque, queue);
}

/* Drains the ring: run_lock held. */
static void service(struct virtio_pci *vp, struct virtio_pci_worker *w)
{
	struct virtio_pci_queue *q = w->q;
	int rc;

	do {
		if (!queue_live(vp, q))
			return;
		virtq_disable_notify(&q->vq);
		for (;;) {
			/*
			 * A device out of room: leave the rest in the ring with
			 * notifications off; the worker comes back after wait().
			 */
			if (vp->p.loop && virtq_has_avail(&q->vq) &&
			    !vp->p.loop->room(vp->p.opaque, q->index)) {
				q->throttled = true;
				return;
			}
			rc = virtq_pop(&q->vq, w->chain);
			if (rc <= 0)
				break;
			if (!serve_one(vp, w) || !queue_live(vp, q))
				return;
		}
		if (rc < 0) {
			virtio_pci_fail(vp, "queue %u: %s", q->index, q->vq.why);
			return;
		}
	} while (virtq_enable_notify(&q->vq));
}

static void *worker(void *arg)
{
	struct virtio_pci_worker *w = arg;
	struct virtio_pci_queue *q = w->q;

	pthread_mutex_lock(&q->kick_lock);
	for (;;) {
		while (!q->kicked && !q->stop)
			pthread_cond_wait(&q->kick_cond, &q->kick_lock);
		if (q->stop)
			break;
		q->kicked = false;
		pthread_mutex_unlock(&q->kick_lock);
		pthread_mutex_lock(&q->run_lock);
		service(q->vp, w);
		pthread_mutex_unlock(&q->run_lock);
		pthread_mutex_lock(&q->kick_lock);
	}
	pthread_mutex_unlock(&q->kick_lock);
	return NULL;
}

/*
 * The worker of a queue with a device loop: serves the ring when kicked (or
 * when it had stopped for want of room), otherwise sleeps in the device's
 * wait(), where deferred requests complete. On stop it leaves only once
 * nothing it started is in flight.
 */
static void *loop_worker(void *arg)
{
	struct virtio_pci_worker *w = arg;
	struct virtio_pci_queue *q = w->q;
	struct virtio_pci *vp = q->vp;

	for (;;) {
		bool kicked, stop;

		pthread_mutex_lock(&q->kick_lock);
		kicked = q->kicked;
		q->kicked = false;
		stop = q->stop;
		pthread_mutex_unlock(&q->kick_lock);
		pthread_mutex_lock(&q->run_lock);
		if (!stop && (kicked || q->throttled)) {
			q->throttled = false;
			service(vp, w);
		}
		if (stop && !q->deferred && !q->busy) {
			pthread_mutex_unlock(&q->run_lock);
			break;
		}
		pthread_mutex_unlock(&q->run_lock);
		vp->p.loop->wait(vp->p.opaque, q->index);
	}
	return NULL;
}

/* run_lock held: waits until no popped chain is in a worker's hands or in flight. */
static void wait_idle(struct virtio_pci_queue *q)
{
	while (q->busy || q->deferred)
		pthread_cond_wait(&q->idle_cond, &q->run_lock);
}

/* ---- registers ---- */

static bool any_remote_started(struct virtio_pci *vp)
{
	for (unsigned i = 0; i < vp->p.nr_queues; i++)
		if (vp->queues[i].remote_started)
			return true;
	return false;
}

static void reset_device(struct virtio_pci *vp)
{
	/* Other nodes stop serving first: no ring is touched after the reset. */
	if (any_remote_started(vp)) {
		vp->p.remote->reset(vp->p.remote_ctx);
		for (unsigned i = 0; i < vp->p.nr_queues; i++) {
			vp->queues[i].remote_started = false;
			__atomic_store_n(&vp->queues[i].remote, false, __ATOMIC_RELEASE);
		}
	}
	/* Workers finish what they are doing; then the device forgets everything. */
	for (unsigned i = 0; i < vp->p.nr_queues; i++) {
		pthread_mutex_lock(&vp->queues[i].run_lock);
		wait_idle(&vp->queues[i]);
	}
	if (vp->p.ops->reset)
		vp->p.ops->reset(vp->p.opaque);
	for (unsigned i = 0; i < vp->p.nr_queues; i++) {
		struct virtio_pci_queue *q = &vp->queues[i];

		virtq_reset(&q->vq);
		q->throttled = false;
		q->size = vp->p.queue_size;
		__atomic_store_n(&q->msix_vector, PCI_MSIX_NO_VECTOR, __ATOMIC_RELEASE);
		q->enabled = false;
		q->desc = q->driver = q->device = 0;
		q->route = (struct virtio_msix_route){ 0 };
	}
	vp->dfselect = vp->gfselect = 0;
	vp->guest_features = 0;
	vp->queue_sel = 0;
	__atomic_store_n(&vp->config_msix_vector, PCI_MSIX_NO_VECTOR, __ATOMIC_RELEASE);
	__atomic_store_n(&vp->status, 0, __ATOMIC_RELEASE);
	pthread_mutex_lock(&vp->isr_lock);
	vp->isr = 0;
	pci_set_intx(&vp->pci, 0);
	pthread_mutex_unlock(&vp->isr_lock);
	for (unsigned i = 0; i < vp->p.nr_queues; i++)
		pthread_mutex_unlock(&vp->queues[i].run_lock);
}

/* vp->lock held: where queue q's interrupt goes now. */
static struct virtio_msix_route current_route(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
	struct virtio_msix_route r = { 0 };
	uint16_t v = __atomic_load_n(&q->msix_vector, __ATOMIC_ACQUIRE);

	if (v != PCI_MSIX_NO_VECTOR)
		r.direct = pci_msix_route(&vp->msix, v, &r.addr, &r.data);
	return r;
}

/* vp->lock held: the queue's server learns a changed route (only a change is sent). */
static void sync_route(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
	struct virtio_msix_route r;

	if (!q->remote_started)
		return;
	r = current_route(vp, q);
	if (!memcmp(&r, &q->route, sizeof(r)))
		return;
	q->route = r;
	vp->p.remote->route(vp->p.remote_ctx, q->index, &r);
}

/* The guest wrote the MSI-X table or its control: the servers' routes follow. */
static void msix_changed(void *ctx)
{
	struct virtio_pci *vp = ctx;

	pthread_mutex_lock(&vp->lock);
	for (unsigned i = 0; i < vp->p.nr_queues; i++)
		sync_route(vp, &vp->queues[i]);
	pthread_mutex_unlock(&vp->lock);
}

/* vp->lock held, DRIVER_OK: queue q's node starts serving it, if it is not this one. */
static bool start_remote(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
	struct virtio_queue_state st = {
		.size = q->size,
		.vector = __atomic_load_n(&q->msix_vector, __ATOMIC_ACQUIRE),
		.features = vp->guest_features,
		/* The guest does not move the BAR while its driver runs. */
		.notify_gpa = vp->pci.bar[VIRTIO_PCI_BAR].addr + VIRTIO_PCI_NOTIFY_OFF +
			      (uint64_t)q->index * VIRTIO_PCI_NOTIFY_MULT,
		.desc = q->desc, .driver = q->driver, .device = q->device,
	};

	st.route = current_route(vp, q);
	if (!vp->p.remote->place(vp->p.remote_ctx, q->index, &st.route))
		return false;
	q->route = st.route;
	q->remote_started = true;
	__atomic_store_n(&q->remote, true, __ATOMIC_RELEASE);
	vp->p.remote->start(vp->p.remote_ctx, q->index, &st);
	return true;
}

static bool features_ok(struct virtio_pci *vp)
{
	uint64_t f = vp->guest_features;

	return !(f & ~vp->p.features) && (f & (1ULL << VIRTIO_F_VERSION_1));
}

static void write_status(struct virtio_pci *vp, uint8_t val)
{
	uint8_t old = get_status(vp);

	if (!val) {
		reset_device(vp);
		return;
	}
	/* FEATURES_OK sticks only if we accept the features (3.1.1). */
	if ((val & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
	    !features_ok(vp)) {
		vlog(vp, "driver features 0x%llx refused (offered 0x%llx)",
		     (unsigned long long)vp->guest_features, (unsigned long long)vp->p.features);
		val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((val & VIRTIO_STATUS_DRIVER_OK) && !(val & VIRTIO_STATUS_FEATURES_OK))
		val &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	val |= old & VIRTIO_STATUS_NEEDS_RESET;
	__atomic_store_n(&vp->status, val, __ATOMIC_RELEASE);
	/* Anything queued before DRIVER_OK is served now, here or by the queue's node. */
	if ((val & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK))
		for (unsigned i = 0; i < vp->p.nr_queues; i++) {
			struct virtio_pci_queue *q = &vp->queues[i];

			if (!q->enabled)
				continue;
			if (!vp->p.remote || !start_remote(vp, q))
				kick(q);
		}
}

static uint16_t valid_vector(struct virtio_pci *vp, uint16_t v)
{
	return v < vp->msix.nr ? v : PCI_MSIX_NO_VECTOR;
}

static void enable_queue(struct virtio_pci *vp, struct virtio_pci_queue *q)
{
	int rc;

	if (q->enabled)
		return;
	pthread_mutex_lock(&q->run_lock);
	rc = virtq_enable(&q->vq, vp->p.mem, q->size, q->desc, q->driver, q->device,
			  vp->guest_features);
	pthread_mutex_unlock(&q->run_lock);
	if (rc) {
		virtio_pci_fail(vp, "queue %u: %s", q->index, q->vq.why);
		return;
	}
	q->enabled = true;
}

/* The common configuration structure as the driver sees it now. */
static void common_image(struct virtio_pci *vp, uint8_t img[VIRTIO_PCI_COMMON_LEN])
{
	struct virtio_pci_queue *q = vp->queue_sel < vp->p.nr_queues ?
				     &vp->queues[vp->queue_sel] : NULL;
	uint32_t df = vp->dfselect < 2 ? (uint32_t)(vp->p.features >> (32 * vp->dfselect)) : 0;
	uint32_t gf = vp->gfselect < 2 ? (uint32_t)(vp->guest_features >> (32 * vp->gfselect)) : 0;
	uint16_t nq = (uint16_t)vp->p.nr_queues;
	uint16_t cv = __atomic_load_n(&vp->config_msix_vector, __ATOMIC_RELAXED);

	memset(img, 0, VIRTIO_PCI_COMMON_LEN);
	memcpy(img + VIRTIO_PCI_COMMON_DFSELECT, &vp->dfselect, 4);
	memcpy(img + VIRTIO_PCI_COMMON_DF, &df, 4);
	memcpy(img + VIRTIO_PCI_COMMON_GFSELECT, &vp->gfselect, 4);
	memcpy(img + VIRTIO_PCI_COMMON_GF, &gf, 4);
	memcpy(img + VIRTIO_PCI_COMMON_MSIX, &cv, 2);
	memcpy(img + VIRTIO_PCI_COMMON_NUMQ, &nq, 2);
	img[VIRTIO_PCI_COMMON_STATUS] = get_status(vp);
	img[VIRTIO_PCI_COMMON_CFGGEN] = __atomic_load_n(&vp->config_generation, __ATOMIC_ACQUIRE);
	memcpy(img + VIRTIO_PCI_COMMON_Q_SELECT, &vp->queue_sel, 2);
	if (q) {
		uint16_t en = q->enabled, noff = (uint16_t)q->index;
		uint16_t mv = __atomic_load_n(&q->msix_vector, __ATOMIC_RELAXED);

		memcpy(img + VIRTIO_PCI_COMMON_Q_SIZE, &q->size, 2);
		memcpy(img + VIRTIO_PCI_COMMON_Q_MSIX, &mv, 2);
		memcpy(img + VIRTIO_PCI_COMMON_Q_ENABLE, &en, 2);
		memcpy(img + VIRTIO_PCI_COMMON_Q_NOFF, &noff, 2);
		memcpy(img + VIRTIO_PCI_COMMON_Q_DESC, &q->desc, 8);
		memcpy(img + VIRTIO_PCI_COMMON_Q_DRIVER, &q->driver, 8);
		memcpy(img + VIRTIO_PCI_COMMON_Q_DEVICE, &q->device, 8);
	} else {
		/* No such queue: size 0 tells the driver (4.1.4.3.2). */
		uint16_t nv = PCI_MSIX_NO_VECTOR;

		memcpy(img + VIRTIO_PCI_COMMON_Q_MSIX, &nv, 2);
	}
}

static uint64_t field(const uint8_t *img, unsigned off, unsigned size)
{
	uint64_t v = 0;

	memcpy(&v, img + off, size);
	return v;
}

/*
 * A write lands in a copy of the structure; then each field it touched
 * takes its new value, with the field's rules. Drivers write fields whole
 * (64-bit ones as two halves), but nothing here depends on it.
 */
static void common_write(struct virtio_pci *vp, uint64_t off, unsigned len, uint64_t data)
{
	static const struct { uint8_t off, size; } fields[] = {
		{ VIRTIO_PCI_COMMON_DFSELECT, 4 }, { VIRTIO_PCI_COMMON_GFSELECT, 4 },
		{ VIRTIO_PCI_COMMON_GF, 4 }, { VIRTIO_PCI_COMMON_MSIX, 2 },
		{ VIRTIO_PCI_COMMON_Q_SELECT, 2 }, { VIRTIO_PCI_COMMON_Q_SIZE, 2 },
		{ VIRTIO_PCI_COMMON_Q_MSIX, 2 }, { VIRTIO_PCI_COMMON_Q_DESC, 8 },
		{ VIRTIO_PCI_COMMON_Q_DRIVER, 8 }, { VIRTIO_PCI_COMMON_Q_DEVICE, 8 },
		/* Last: they act on what the others set. */
		{ VIRTIO_PCI_COMMON_Q_ENABLE, 2 }, { VIRTIO_PCI_COMMON_STATUS, 1 },
	};
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	struct virtio_pci_queue *q;

	if (off >= VIRTIO_PCI_COMMON_LEN || len > VIRTIO_PCI_COMMON_LEN - off)
		return;
	pthread_mutex_lock(&vp->lock);
	common_image(vp, img);
	memcpy(img + off, &data, len);
	q = vp->queue_sel < vp->p.nr_queues ? &vp->queues[vp->queue_sel] : NULL;
	for (unsigned i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		unsigned fo = fields[i].off, fs = fields[i].size;
		uint64_t v = field(img, fo, fs);
		bool frozen = get_status(vp) & VIRTIO_STATUS_FEATURES_OK;

		if (!(off < fo + fs && fo < off + len))
			continue;
		switch (fo) {
		case VIRTIO_PCI_COMMON_DFSELECT:
			vp->dfselect = (uint32_t)v;
			break;
		case VIRTIO_PCI_COMMON_GFSELECT:
			vp->gfselect = (uint32_t)v;
			break;
		case VIRTIO_PCI_COMMON_GF:
			if (!frozen && vp->gfselect < 2) {
				unsigned sh = 32 * vp->gfselect;

				vp->guest_features &= ~(0xffffffffULL << sh);
				vp->guest_features |= (v & 0xffffffffULL) << sh;
			}
			break;
		case VIRTIO_PCI_COMMON_MSIX:
			__atomic_store_n(&vp->config_msix_vector, valid_vector(vp, (uint16_t)v),
					 __ATOMIC_RELEASE);
			break;
		case VIRTIO_PCI_COMMON_Q_SELECT:
			vp->queue_sel = (uint16_t)v;
			q = vp->queue_sel < vp->p.nr_queues ? &vp->queues[vp->queue_sel] : NULL;
			break;
		case VIRTIO_PCI_COMMON_Q_SIZE:
			if (q && !q->enabled)
				q->size = (uint16_t)v;
			break;
		case VIRTIO_PCI_COMMON_Q_MSIX:
			if (q) {
				__atomic_store_n(&q->msix_vector, valid_vector(vp, (uint16_t)v),
						 __ATOMIC_RELEASE);
				sync_route(vp, q);
			}
			break;
		case VIRTIO_PCI_COMMON_Q_DESC:
			if (q && !q->enabled)
				q->desc = v;
			break;
		case VIRTIO_PCI_COMMON_Q_DRIVER:
			if (q && !q->enabled)
				q->driver = v;
			break;
		case VIRTIO_PCI_COMMON_Q_DEVICE:
			if (q && !q->enabled)
				q->device = v;
			break;
		case VIRTIO_PCI_COMMON_Q_ENABLE:
			/* Only 1 may be written; a queue stops by resetting the device. */
			if (q && v == 1)
				enable_queue(vp, q);
			break;
		case VIRTIO_PCI_COMMON_STATUS:
			write_status(vp, (uint8_t)v);
			break;
		}
	}
	pthread_mutex_unlock(&vp->lock);
}

static void common_read(struct virtio_pci *vp, uint64_t off, unsigned len, uint64_t *data)
{
	uint8_t img[VIRTIO_PCI_COMMON_LEN];
	uint64_t v = 0;

	if (off >= VIRTIO_PCI_COMMON_LEN || len > VIRTIO_PCI_COMMON_LEN - off)
		return;
	pthread_mutex_lock(&vp->lock);
	common_image(vp, img);
	pthread_mutex_unlock(&vp->lock);
	memcpy(&v, img + off, len);
	*data = v;
}

/* Reading the ISR acknowledges it and lowers INTx (4.1.4.5). */
static uint8_t isr_read(struct virtio_pci *vp)
{
	uint8_t v;

	pthread_mutex_lock(&vp->isr_lock);
	v = vp->isr;
	vp->isr = 0;
	pci_set_intx(&vp->pci, 0);
	pthread_mutex_unlock(&vp->isr_lock);
	return v;
}

static void bar_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	struct virtio_pci *vp = opaque;

	if (off < VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_LEN) {
		common_read(vp, off - VIRTIO_PCI_COMMON_OFF, len, data);
	} else if (off >= VIRTIO_PCI_ISR_OFF && off < VIRTIO_PCI_ISR_OFF + VIRTIO_PCI_ISR_LEN) {
		*data = off == VIRTIO_PCI_ISR_OFF ? isr_read(vp) : 0;
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off - VIRTIO_PCI_DEVICE_OFF < vp->p.config_size) {
		uint64_t o = off - VIRTIO_PCI_DEVICE_OFF;

		if (len <= vp->p.config_size - o && vp->p.ops->config_read)
			vp->p.ops->config_read(vp->p.opaque, o, len, data);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF) {
		*data = 0;	/* notification registers read as zero */
	}
}

static void bar_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	struct virtio_pci *vp = opaque;

	if (off < VIRTIO_PCI_COMMON_OFF + VIRTIO_PCI_COMMON_LEN) {
		common_write(vp, off - VIRTIO_PCI_COMMON_OFF, len, data);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off - VIRTIO_PCI_DEVICE_OFF < vp->p.config_size) {
		uint64_t o = off - VIRTIO_PCI_DEVICE_OFF;

		if (len <= vp->p.config_size - o && vp->p.ops->config_write)
			vp->p.ops->config_write(vp->p.opaque, o, len, data);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF) {
		/* queue_notify_off is the queue index, times the multiplier. */
		uint64_t qi = (off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT;

		if (qi < vp->p.nr_queues && __atomic_load_n(&vp->queues[qi].remote, __ATOMIC_ACQUIRE))
			vp->p.remote->kick(vp->p.remote_ctx, (unsigned)qi);
		else if (qi < vp->p.nr_queues)
			kick(&vp->queues[qi]);
	}
}

/* ---- capabilities ---- */

static int add_vcap(struct virtio_pci *vp, uint8_t type, unsigned caplen, uint32_t off,
		    uint32_t len)
{
	struct pci_device *d = &vp->pci;
	int c = pci_device_add_cap(d, PCI_CAP_ID_VNDR, caplen);

	if (c < 0)
		return c;
	d->cfg[c + 2] = (uint8_t)caplen;
	d->cfg[c + 3] = type;
	d->cfg[c + 4] = VIRTIO_PCI_BAR;
	d->cfg[c + 5] = 0;   /* id: one structure of each type */
	pci_cfg_set32(d, c + 8, off);
	pci_cfg_set32(d, c + 12, len);
	return c;
}

/*
 * The PCI-configuration-access capability (4.1.4.9): the driver names a
 * BAR, an offset and a length, then reads or writes pci_cfg_data to access
 * the BAR through config space. Called with the bus lock held.
 */
static bool pcicfg_window(struct pci_device *d, unsigned cap, unsigned *bar, uint32_t *off,
			  unsigned *len)
{
	*bar = d->cfg[cap + 4];
	*off = pci_cfg_get32(d, cap + 8);
	*len = pci_cfg_get32(d, cap + 12);
	return (*len == 1 || *len == 2 || *len == 4) && !(*off & (*len - 1));
}

static bool touches_data(unsigned cap, unsigned off, unsigned len)
{
	return cap && off < cap + PCICFG_CAP_LEN && cap + 16 < off + len;
}

static void vp_cfg_read(struct pci_device *d, unsigned off, unsigned len)
{
	struct virtio_pci *vp = d->opaque;
	unsigned cap = vp->pcicfg_cap, bar, l;
	uint32_t o;
	uint64_t v = 0;

	if (!touches_data(cap, off, len))
		return;
	if (!pcicfg_window(d, cap, &bar, &o, &l) || !pci_bar_access(d, bar, o, l, false, &v))
		v = 0;
	pci_cfg_set32(d, cap + 16, (uint32_t)v);
}

static void vp_cfg_write(struct pci_device *d, unsigned off, unsigned len, uint32_t val)
{
	struct virtio_pci *vp = d->opaque;
	unsigned cap = vp->pcicfg_cap, bar, l;
	uint32_t o;
	uint64_t v;

	if (!touches_data(cap, off, len))
		return;
	v = pci_cfg_get32(d, cap + 16);
	if (pcicfg_window(d, cap, &bar, &o, &l))
		pci_bar_access(d, bar, o, l, true, &v);
}

static const struct pci_device_ops vp_pci_ops = {
	.cfg_read = vp_cfg_read,
	.cfg_write = vp_cfg_write,
};

static int add_caps(struct virtio_pci *vp)
{
	struct pci_device *d = &vp->pci;
	int c;

	if (add_vcap(vp, VIRTIO_PCI_CAP_COMMON_CFG, CAP_LEN, VIRTIO_PCI_COMMON_OFF,
		     VIRTIO_PCI_COMMON_LEN) < 0 ||
	    add_vcap(vp, VIRTIO_PCI_CAP_ISR_CFG, CAP_LEN, VIRTIO_PCI_ISR_OFF,
		     VIRTIO_PCI_ISR_LEN) < 0)
		return -ENOSPC;
	if (vp->p.config_size &&
	    add_vcap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, CAP_LEN, VIRTIO_PCI_DEVICE_OFF,
		     (uint32_t)vp->p.config_size) < 0)
		return -ENOSPC;
	c = add_vcap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, NOTIFY_CAP_LEN, VIRTIO_PCI_NOTIFY_OFF,
		     vp->p.nr_queues * VIRTIO_PCI_NOTIFY_MULT);
	if (c < 0)
		return c;
	pci_cfg_set32(d, c + 16, VIRTIO_PCI_NOTIFY_MULT);
	c = add_vcap(vp, VIRTIO_PCI_CAP_PCI_CFG, PCICFG_CAP_LEN, 0, 0);
	if (c < 0)
		return c;
	d->cfg[c + 4] = 0;
	/* bar, offset, length and data are the driver's to write. */
	d->wmask[c + 4] = 0xff;
	memset(d->wmask + c + 8, 0xff, 12);
	vp->pcicfg_cap = (uint8_t)c;
	return 0;
}

/* ---- life cycle ---- */

static void stop_workers(struct virtio_pci *vp)
{
	for (unsigned i = 0; vp->queues && i < vp->p.nr_queues; i++) {
		struct virtio_pci_queue *q = &vp->queues[i];

		pthread_mutex_lock(&q->kick_lock);
		__atomic_store_n(&q->stop, true, __ATOMIC_RELEASE);
		pthread_cond_broadcast(&q->kick_cond);
		pthread_mutex_unlock(&q->kick_lock);
		if (vp->p.loop && q->nr_workers)
			vp->p.loop->wake(vp->p.opaque, q->index);
		for (unsigned t = 0; t < q->nr_workers; t++)
			pthread_join(q->workers[t].thread, NULL);
		q->nr_workers = 0;
		/* Deferred requests finish before the device's store may go away. */
		pthread_mutex_lock(&q->run_lock);
		wait_idle(q);
		pthread_mutex_unlock(&q->run_lock);
	}
}

/* A queue loop owns its queue alone; condition-variable workers may be many. */
static unsigned workers_per_queue(const struct virtio_pci *vp)
{
	unsigned n = vp->p.loop ? 1 : vp->p.queue_threads ? vp->p.queue_threads : 1;

	return n < VIRTIO_PCI_MAX_QUEUE_THREADS ? n : VIRTIO_PCI_MAX_QUEUE_THREADS;
}

static int start_workers(struct virtio_pci *vp, struct virtio_pci_queue *q, unsigned n,
			 char *err, size_t errlen)
{
	for (unsigned t = 0; t < n; t++) {
		struct virtio_pci_worker *w = &q->workers[t];
		int rc;

		w->q = q;
		w->chain = malloc(sizeof(*w->chain));
		if (!w->chain) {
			snprintf(err, errlen, "%s: out of memory", vp->p.name);
			return -1;
		}
		rc = pthread_create(&w->thread, NULL, vp->p.loop ? loop_worker : worker, w);
		if (rc) {
			free(w->chain);
			w->chain = NULL;
			snprintf(err, errlen, "%s: cannot start queue %u's worker: %s", vp->p.name,
				 q->index, strerror(rc));
			return -1;
		}
		q->nr_workers++;
	}
	return 0;
}

int virtio_pci_init(struct virtio_pci *vp, const struct virtio_pci_params *p,
		    char *err, size_t errlen)
{
	struct pci_device *d = &vp->pci;
	int rc;

	memset(vp, 0, sizeof(*vp));
	vp->p = *p;
	if (!p->nr_queues || p->nr_queues > VIRTIO_PCI_MAX_QUEUES || !p->queue_size ||
	    (p->queue_size & (p->queue_size - 1)) || p->queue_size > VIRTQ_MAX_SIZE ||
	    p->config_size > VIRTIO_PCI_DEVICE_MAX || !p->ops || !p->ops->process ||
	    (p->remote && p->replica)) {
		snprintf(err, errlen, "%s: bad virtio device parameters", p->name);
		return -1;
	}
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->isr_lock, NULL);
	pthread_mutex_init(&vp->route_lock, NULL);
	vp->config_msix_vector = PCI_MSIX_NO_VECTOR;
	pci_device_init(d, p->name, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BASE + p->device_type,
			p->class_code, 1, VIRTIO_PCI_VENDOR, VIRTIO_PCI_SUBSYS_ID);
	d->ops = &vp_pci_ops;
	d->opaque = vp;
	rc = pci_device_set_bar(d, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, PCI_BAR_MEM64,
				bar_read, bar_write, vp);
	/* One vector per queue plus one for configuration changes. */
	if (!rc)
		rc = pci_msix_init(&vp->msix, d, p->nr_queues + 1, VIRTIO_PCI_MSIX_BAR);
	if (!rc)
		rc = add_caps(vp);
	if (!rc && p->remote) {
		vp->msix.changed = msix_changed;
		vp->msix.changed_ctx = vp;
	}
	if (rc) {
		snprintf(err, errlen, "%s: cannot lay out the PCI function: %s", p->name,
			 strerror(-rc));
		virtio_pci_destroy(vp);
		return -1;
	}
	vp->queues = calloc(p->nr_queues, sizeof(*vp->queues));
	if (!vp->queues) {
		snprintf(err, errlen, "%s: out of memory", p->name);
		virtio_pci_destroy(vp);
		return -1;
	}
	for (unsigned i = 0; i < p->nr_queues; i++) {
		struct virtio_pci_queue *q = &vp->queues[i];

		q->vp = vp;
		q->index = i;
		q->size = p->queue_size;
		q->msix_vector = PCI_MSIX_NO_VECTOR;
		pthread_mutex_init(&q->run_lock, NULL);
		pthread_mutex_init(&q->kick_lock, NULL);
		pthread_cond_init(&q->kick_cond, NULL);
		pthread_cond_init(&q->idle_cond, NULL);
	}
	/* A replica starts a queue's workers when it is asked to serve it. */
	for (unsigned i = 0; i < p->nr_queues && !p->replica; i++) {
		if (start_workers(vp, &vp->queues[i], workers_per_queue(vp), err, errlen)) {
			virtio_pci_destroy(vp);
			return -1;
		}
	}
	return 0;
}

void virtio_pci_stop(struct virtio_pci *vp)
{
	if (vp->p.ops)
		stop_workers(vp);
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp->p.ops)
		return;
	stop_workers(vp);
	for (unsigned i = 0; vp->queues && i < vp->p.nr_queues; i++) {
		struct virtio_pci_queue *q = &vp->queues[i];

		for (unsigned t = 0; t < VIRTIO_PCI_MAX_QUEUE_THREADS; t++)
			free(q->workers[t].chain);
		pthread_cond_destroy(&q->idle_cond);
		pthread_cond_destroy(&q->kick_cond);
		pthread_mutex_destroy(&q->kick_lock);
		pthread_mutex_destroy(&q->run_lock);
	}
	free(vp->queues);
	vp->queues = NULL;
	pci_msix_destroy(&vp->msix);
	pthread_mutex_destroy(&vp->route_lock);
	pthread_mutex_destroy(&vp->isr_lock);
	pthread_mutex_destroy(&vp->lock);
	vp->p.ops = NULL;
}

/* ---- replica: queues of a device whose registers live on another node ---- */

int virtio_pci_replica_start(struct virtio_pci *vp, unsigned q, const struct virtio_queue_state *st,
			     char *err, size_t errlen)
{
	struct virtio_pci_queue *vq;
	int rc = 0;

	if (!vp->p.replica || q >= vp->p.nr_queues) {
		snprintf(err, errlen, "%s: no queue %u here", vp->p.name, q);
		return -1;
	}
	vq = &vp->queues[q];
	pthread_mutex_lock(&vp->lock);
	if (!vq->nr_workers &&
	    start_workers(vp, vq, workers_per_queue(vp), err, errlen)) {
		pthread_mutex_unlock(&vp->lock);
		return -1;
	}
	if (vq->enabled) {
		/* Started twice without a reset: the I/O node lost track; keep the first. */
		pthread_mutex_unlock(&vp->lock);
		kick(vq);
		return 0;
	}
	vp->guest_features = st->features;
	vq->size = st->size;
	vq->desc = st->desc;
	vq->driver = st->driver;
	vq->device = st->device;
	__atomic_store_n(&vq->msix_vector, st->vector, __ATOMIC_RELEASE);
	virtio_pci_replica_route(vp, q, &st->route);
	pthread_mutex_lock(&vq->run_lock);
	rc = virtq_enable(&vq->vq, vp->p.mem, vq->size, vq->desc, vq->driver, vq->device,
			  vp->guest_features);
	pthread_mutex_unlock(&vq->run_lock);
	if (rc) {
		snprintf(err, errlen, "%s: queue %u: %s", vp->p.name, q, vq->vq.why);
		pthread_mutex_unlock(&vp->lock);
		return -1;
	}
	vq->enabled = true;
	__atomic_store_n(&vp->status, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
			 VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&vp->lock);
	/* The driver may have queued requests before we got here. */
	kick(vq);
	return 0;
}

void virtio_pci_replica_route(struct virtio_pci *vp, unsigned q, const struct virtio_msix_route *r)
{
	if (q >= vp->p.nr_queues)
		return;
	pthread_mutex_lock(&vp->route_lock);
	vp->queues[q].route = *r;
	pthread_mutex_unlock(&vp->route_lock);
}

void virtio_pci_replica_kick(struct virtio_pci *vp, unsigned q)
{
	if (q < vp->p.nr_queues)
		kick(&vp->queues[q]);
}

void virtio_pci_replica_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	reset_device(vp);
	pthread_mutex_unlock(&vp->lock);
}
