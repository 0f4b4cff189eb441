// SPDX-License-Identifier: MIT
/*
 * The machine: creates the KVM VM without an in-kernel irqchip, guest RAM,
 * the chipset and the vCPUs, routes interrupts, and turns guest power
 * events into one machine event that the node acts on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "blockdev/file_store.h"    /* [issue #4: PCI + virtio-blk] */
#include "vmm/acpi.h"
#include "vmm/machine.h"
#include "vmm/virtio_blk.h"         /* [issue #4] */

#define KVM_TSS_GPA      0xfffbd000ULL
#define KVM_IDMAP_GPA    0xfffbc000ULL
#define IOAPIC_ID        0   /* APIC IDs of vCPUs start at 0 too: xAPIC IDs and IOAPIC IDs are separate namespaces */

static const char *event_names[] = {
	[MACHINE_EV_NONE] = "none",
	[MACHINE_EV_POWEROFF] = "poweroff",
	[MACHINE_EV_RESET] = "reset",
	[MACHINE_EV_TRIPLE_FAULT] = "triple fault",
	[MACHINE_EV_PANIC] = "guest panic",
	[MACHINE_EV_ERROR] = "error",
	[MACHINE_EV_STOP] = "stop",
};

void machine_vcpu_waiting(struct machine *m, bool waiting)
{
	pthread_mutex_lock(&m->run_lock);
	m->running += waiting ? -1u : 1u;
	if (m->idle_hook && m->running == (waiting ? 0u : 1u))
		m->idle_hook(m->idle_ctx, waiting);
	pthread_mutex_unlock(&m->run_lock);
}

void machine_set_idle_hook(struct machine *m, void (*hook)(void *ctx, bool idle),
			   void (*yield)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&m->run_lock);
	m->idle_hook = hook;
	m->yield_hook = yield;
	m->idle_ctx = ctx;
	if (hook)
		hook(ctx, m->running == 0);
	pthread_mutex_unlock(&m->run_lock);
}

bool machine_vcpu_is_local(const struct machine *m, unsigned vcpu)
{
	return vcpu < m->nr_vcpus && m->pl.vcpu_node[vcpu] == m->pl.self;
}

static bool is_io_node(const struct machine *m)
{
	return m->pl.self == m->pl.io_node;
}

static int link_send(struct machine *m, unsigned dst, const struct node_msg *msg)
{
	if (!m->link.send)
		return -ENOTCONN;
	return m->link.send(m->link.ctx, dst, msg);
}

bool machine_stopping(struct machine *m)
{
	return __atomic_load_n(&m->stopping, __ATOMIC_ACQUIRE);
}

static void set_event(struct machine *m, enum machine_event ev, const char *msg,
		      bool tell_others)
{
	bool first = false;

	pthread_mutex_lock(&m->ev_lock);
	if (m->event == MACHINE_EV_NONE) {
		m->event = ev;
		snprintf(m->ev_msg, sizeof(m->ev_msg), "%s", msg);
		first = true;
	}
	pthread_cond_broadcast(&m->ev_cond);
	pthread_mutex_unlock(&m->ev_lock);
	/* The guest is one machine: an event on one node ends it on all. */
	if (first && tell_others) {
		struct node_msg nm = { .type = NODE_MSG_EVENT, .u.event.event = (uint8_t)ev };

		snprintf(nm.u.event.text, sizeof(nm.u.event.text), "%s", msg);
		for (unsigned node = 0; node < m->pl.nr_nodes; node++)
			if (node != m->pl.self)
				link_send(m, node, &nm);
	}
	/* vCPUs stop at their next exit; kick them so that happens now. */
	__atomic_store_n(&m->stopping, 1, __ATOMIC_RELEASE);
	for (unsigned i = 0; m->vcpus && i < m->nr_vcpus; i++) {
		if (!m->vcpus[i].m)
			continue;
		vcpu_kick(&m->vcpus[i]);
		/* A vCPU waiting on a forwarded I/O access must notice too. */
		pthread_mutex_lock(&m->vcpus[i].io_lock);
		pthread_cond_broadcast(&m->vcpus[i].io_cond);
		pthread_mutex_unlock(&m->vcpus[i].io_lock);
	}
}

static void post_event(struct machine *m, enum machine_event ev, const char *msg)
{
	set_event(m, ev, msg, true);
}

void machine_peer_down(struct machine *m, unsigned node, const char *why)
{
	char msg[320];

	snprintf(msg, sizeof(msg), "node %u is gone (%s): stopping the guest", node, why);
	set_event(m, MACHINE_EV_ERROR, msg, true);
}

/* On the I/O worker thread (vmm/io_worker.h says why not on the receive thread). */
static void run_remote_io(void *ctx, unsigned src, struct io_req *req)
{
	struct machine *m = ctx;
	struct node_msg resp = { .type = NODE_MSG_IO_RESP, .u.io = *req };

	io_bus_dispatch(&m->bus, &resp.u.io);
	if (link_send(m, src, &resp))
		machine_fail(m, "cannot answer an I/O access from node %u", src);
}

static void handle_io_req(struct machine *m, unsigned src, const struct node_msg *msg)
{
	if (io_worker_push(&m->io_worker, src, &msg->u.io))
		machine_fail(m, "too many I/O accesses queued from node %u", src);
}

static void handle_io_resp(struct machine *m, const struct node_msg *msg)
{
	unsigned i = msg->u.io.vcpu;
	struct vcpu *v;

	if (!machine_vcpu_is_local(m, i))
		return;
	v = &m->vcpus[i];
	pthread_mutex_lock(&v->io_lock);
	v->io_resp = msg->u.io;
	v->io_done = true;
	pthread_cond_signal(&v->io_cond);
	pthread_mutex_unlock(&v->io_lock);
}

void machine_node_msg(struct machine *m, unsigned src, const struct node_msg *msg)
{
	switch (msg->type) {
	case NODE_MSG_APIC:
		if (machine_vcpu_is_local(m, msg->u.apic.vcpu))
			lapic_accept(&m->vcpus[msg->u.apic.vcpu].lapic, &msg->u.apic.msg);
		break;
	case NODE_MSG_APIC_ID:
		if (msg->u.apic_id.vcpu < m->nr_vcpus && !machine_vcpu_is_local(m, msg->u.apic_id.vcpu)) {
			pthread_mutex_lock(&m->dir_lock);
			m->apic_dir[msg->u.apic_id.vcpu] = (struct lapic_addr){
				msg->u.apic_id.apic_id, msg->u.apic_id.ldr, msg->u.apic_id.dfr };
			pthread_mutex_unlock(&m->dir_lock);
		}
		break;
	case NODE_MSG_EOI:
		if (is_io_node(m))
			ioapic_eoi(&m->ioapic, msg->u.eoi.vector);
		break;
	case NODE_MSG_IO_REQ:
		if (is_io_node(m) && msg->u.io.vcpu < m->nr_vcpus)
			handle_io_req(m, src, msg);
		break;
	case NODE_MSG_IO_RESP:
		handle_io_resp(m, msg);
		break;
	case NODE_MSG_VQ_START:
	case NODE_MSG_VQ_MSIX:
	case NODE_MSG_VQ_KICK:
	case NODE_MSG_VQ_RESET:
	case NODE_MSG_VQ_RESET_DONE:
	case NODE_MSG_VQ_IRQ:
	case NODE_MSG_VQ_FAIL:
		vq_remote_receive(m->vqr, src, msg);
		break;
	case NODE_MSG_EVENT:
		if (msg->u.event.event > MACHINE_EV_NONE && msg->u.event.event <= MACHINE_EV_STOP) {
			char text[NODE_MSG_TEXT_MAX + 32];

			snprintf(text, sizeof(text), "%s (on node %u)", msg->u.event.text, src);
			set_event(m, (enum machine_event)msg->u.event.event, text, false);
		}
		break;
	default:
		break;
	}
}

void machine_request(struct machine *m, enum machine_event ev, unsigned vcpu)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "%s (from vCPU %u)", event_names[ev], vcpu);
	post_event(m, ev, msg);
}

void machine_fail(struct machine *m, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	post_event(m, MACHINE_EV_ERROR, msg);
}

const char *machine_event_message(struct machine *m)
{
	return m->ev_msg;
}

/*
 * A device on the I/O node: the vCPU waits for the answer, as it would for
 * a slow device. The wait is bounded by the machine stopping (a dead I/O
 * node stops the machine).
 */
static void remote_io(struct machine *m, struct io_req *req)
{
	struct vcpu *v = &m->vcpus[req->vcpu];
	struct node_msg msg = { .type = NODE_MSG_IO_REQ, .u.io = *req };

	pthread_mutex_lock(&v->io_lock);
	v->io_done = false;
	pthread_mutex_unlock(&v->io_lock);
	if (link_send(m, m->pl.io_node, &msg)) {
		machine_fail(m, "vCPU %u: cannot forward an I/O access to node %u",
			     req->vcpu, m->pl.io_node);
		return;
	}
	pthread_mutex_lock(&v->io_lock);
	while (!v->io_done && !machine_stopping(m))
		pthread_cond_wait(&v->io_cond, &v->io_lock);
	if (v->io_done && !req->is_write)
		req->data = v->io_resp.data;
	pthread_mutex_unlock(&v->io_lock);
}

void machine_io(struct machine *m, struct io_req *req)
{
	if (is_io_node(m))
		io_bus_dispatch(&m->bus, req);
	else if (!vq_remote_notify(m->vqr, req))   /* a queue served here: not forwarded */
		remote_io(m, req);
}

/* ISA IRQ n is IOAPIC pin n, except the PIT's IRQ 0 which is wired to pin 2 (MADT override). */
static void route_irq(void *ctx, unsigned gsi, int level)
{
	struct machine *m = ctx;

	if (gsi < 16)
		pic_set_irq(&m->pic, gsi, level);
	ioapic_set_irq(&m->ioapic, gsi == 0 ? 2 : gsi, level);
}

static void deliver_to(struct machine *m, unsigned i, const struct apic_msg *msg)
{
	struct node_msg nm;

	if (machine_vcpu_is_local(m, i)) {
		lapic_accept(&m->vcpus[i].lapic, msg);
		return;
	}
	nm = (struct node_msg){ .type = NODE_MSG_APIC, .u.apic = { .vcpu = (uint16_t)i, .msg = *msg } };
	if (link_send(m, m->pl.vcpu_node[i], &nm))
		machine_fail(m, "cannot deliver an interrupt to vCPU %u on node %u", i,
			     m->pl.vcpu_node[i]);
	/* the sender often waits for the target (an IPI): let it have the pages */
	if (m->yield_hook)
		m->yield_hook(m->idle_ctx);
}

/* Destination matching against the replicated APIC directory. */
static bool vcpu_matches(struct machine *m, unsigned i, const struct apic_msg *msg)
{
	struct lapic_addr a;

	if (machine_vcpu_is_local(m, i))
		return lapic_match_dest(&m->vcpus[i].lapic, msg);
	pthread_mutex_lock(&m->dir_lock);
	a = m->apic_dir[i];
	pthread_mutex_unlock(&m->dir_lock);
	return lapic_addr_match(&a, msg);
}

static void apic_deliver(void *ctx, const struct apic_msg *msg)
{
	struct machine *m = ctx;
	unsigned n = m->nr_vcpus;

	switch (msg->shorthand) {
	case APIC_SH_SELF:
		if (msg->source < n)
			deliver_to(m, msg->source, msg);
		return;
	case APIC_SH_ALL_INCL:
	case APIC_SH_ALL_EXCL:
		for (unsigned i = 0; i < n; i++)
			if (msg->shorthand == APIC_SH_ALL_INCL || i != msg->source)
				deliver_to(m, i, msg);
		return;
	default:
		break;
	}
	if (msg->delivery == APIC_DM_LOWEST) {
		/* Any one target will do: prefer one on this node, else round robin. */
		unsigned start = __atomic_fetch_add(&m->lowest_prio_rr, 1, __ATOMIC_RELAXED);
		int pick = -1;

		for (unsigned k = 0; k < n; k++) {
			unsigned i = (start + k) % n;

			if (!vcpu_matches(m, i, msg))
				continue;
			if (pick < 0 || machine_vcpu_is_local(m, i))
				pick = (int)i;
			if (machine_vcpu_is_local(m, i))
				break;
		}
		if (pick >= 0)
			deliver_to(m, (unsigned)pick, msg);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		if (vcpu_matches(m, i, msg))
			deliver_to(m, i, msg);
}

void machine_apic_send(struct machine *m, const struct apic_msg *msg)
{
	apic_deliver(m, msg);
}

void machine_eoi(struct machine *m, uint8_t vector)
{
	struct node_msg nm = { .type = NODE_MSG_EOI, .u.eoi.vector = vector };

	if (is_io_node(m))
		ioapic_eoi(&m->ioapic, vector);
	else if (link_send(m, m->pl.io_node, &nm))
		machine_fail(m, "cannot forward an EOI to node %u", m->pl.io_node);
}

/* A local LAPIC's address changed: every other node must route by the new one. */
void machine_apic_addr_changed(struct machine *m, unsigned vcpu)
{
	struct lapic_addr a;
	struct node_msg nm = { .type = NODE_MSG_APIC_ID };

	lapic_get_addr(&m->vcpus[vcpu].lapic, &a);
	pthread_mutex_lock(&m->dir_lock);
	m->apic_dir[vcpu] = a;
	pthread_mutex_unlock(&m->dir_lock);
	nm.u.apic_id.vcpu = (uint16_t)vcpu;
	nm.u.apic_id.apic_id = a.apic_id;
	nm.u.apic_id.ldr = a.ldr;
	nm.u.apic_id.dfr = a.dfr;
	for (unsigned node = 0; node < m->pl.nr_nodes; node++)
		if (node != m->pl.self)
			link_send(m, node, &nm);
}

bool machine_extint_pending(struct machine *m)
{
	return pic_int_pending(&m->pic);
}

int machine_extint_ack(struct machine *m)
{
	return pic_intack(&m->pic);
}

/* The 8259's INTR goes to the BSP's LINT0; the BSP is on the I/O node. */
static void pic_int_out(void *ctx, int level)
{
	struct machine *m = ctx;

	if (level && m->vcpus && m->vcpus[0].m)
		vcpu_kick(&m->vcpus[0]);
}

static void console_write(void *ctx, const uint8_t *buf, size_t len)
{
	struct machine *m = ctx;

	while (len > 0 && m->console.fd >= 0) {
		ssize_t w = write(m->console.fd, buf, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return; /* a closed console must not stop the guest */
		}
		buf += w;
		len -= (size_t)w;
	}
}

size_t machine_console_input(struct machine *m, const uint8_t *buf, size_t len)
{
	return uart_receive(&m->uart, buf, len);
}

static void pm_poweroff(void *ctx)
{
	machine_request(ctx, MACHINE_EV_POWEROFF, 0);
}

static void pm_reset(void *ctx)
{
	machine_request(ctx, MACHINE_EV_RESET, 0);
}

static void guest_panicked(void *ctx, uint8_t events)
{
	post_event(ctx, MACHINE_EV_PANIC, "the guest kernel panicked (pvpanic)");
}

/* Cells are laid out one after another in RAM order, across the PCI hole. */
static void acpi_add_cell_memory(struct acpi_machine *am, const struct guest_mem *gm,
				 uint64_t off, uint64_t len, unsigned cell)
{
	while (len > 0 && am->nr_mem < 2 * ACPI_MAX_CELLS) {
		uint64_t gpa = guest_mem_gpa(gm, off);
		uint64_t chunk = len;

		if (off < gm->low_size && off + len > gm->low_size)
			chunk = gm->low_size - off;
		am->mem[am->nr_mem++] = (struct acpi_mem_range){ gpa, chunk, cell };
		off += chunk;
		len -= chunk;
	}
}

static void fill_acpi_machine(const struct machine *m, struct acpi_machine *am)
{
	const struct vm_config *cfg = m->cfg;
	unsigned nr_cells = cfg->nr_cells ? cfg->nr_cells : 1;
	uint64_t off = 0;

	memset(am, 0, sizeof(*am));
	am->nr_cpus = m->nr_vcpus;
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		am->apic_id[i] = (uint8_t)i;
		am->cpu_cell[i] = vm_config_vcpu_cell(cfg, i);
	}
	am->nr_cells = nr_cells;
	for (unsigned c = 0; c < nr_cells; c++) {
		uint64_t len = cfg->nr_cells ? cfg->cells[c].mem_bytes : m->mem.size;

		acpi_add_cell_memory(am, &m->mem, off, len, c);
		off += len;
		for (unsigned d = 0; d < nr_cells; d++) {
			unsigned dist = cfg->nr_cells ? cfg->cells[c].distance[d] : 0;

			am->distance[c][d] = dist ? dist : (c == d ? 10 : 20);
		}
	}
	am->ioapic_id = IOAPIC_ID;
	am->ioapic_gsi_base = 0;
}

static int setup_kvm(struct machine *m, char *err, size_t errlen)
{
	struct kvm_userspace_memory_region low = { 0 }, high = { 0 };

	m->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm_fd < 0) {
		snprintf(err, errlen, "/dev/kvm: %s", strerror(errno));
		return -1;
	}
	if (ioctl(m->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(err, errlen, "/dev/kvm: unsupported KVM API version");
		return -1;
	}
	m->vm_fd = ioctl(m->kvm_fd, KVM_CREATE_VM, 0);
	if (m->vm_fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	/* Intel needs these two pages for real mode; harmless elsewhere. */
	ioctl(m->vm_fd, KVM_SET_TSS_ADDR, KVM_TSS_GPA);
	{
		uint64_t idmap = KVM_IDMAP_GPA;

		ioctl(m->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	}
	low.slot = 0;
	low.guest_phys_addr = 0;
	low.memory_size = m->mem.low_size;
	low.userspace_addr = (uintptr_t)m->mem.host;
	if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &low) < 0)
		goto mem_fail;
	if (m->mem.size > m->mem.low_size) {
		high.slot = 1;
		high.guest_phys_addr = GUEST_MEM_HIGH_START;
		high.memory_size = m->mem.size - m->mem.low_size;
		high.userspace_addr = (uintptr_t)m->mem.host + m->mem.low_size;
		if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)
			goto mem_fail;
	}
	m->supported.hdr.nent = CPUID_MAX_ENTRIES;
	if (ioctl(m->kvm_fd, KVM_GET_SUPPORTED_CPUID, &m->supported) < 0) {
		snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		return -1;
	}
	return 0;
mem_fail:
	snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	return -1;
}

/* ---- [issue #4: PCI + virtio-blk] the PCI bus and the disks on it ---- */

static void device_log(void *ctx, const char *msg)
{
	fprintf(stderr, "grappe-node: %s\n", msg);
}

/* What the I/O node's device and a serving node's replica of it agree on. */
static struct virtio_blk_opts disk_opts(struct machine *m, const struct vm_disk *d)
{
	return (struct virtio_blk_opts){
		.name = d->target, .serial = d->serial, .discard = d->discard,
		.logical_block = d->logical_block, .physical_block = d->physical_block,
		.nr_queues = m->nr_vcpus, .mem = &m->mem, .log = device_log,
	};
}

static int setup_disk(struct machine *m, const struct vm_disk *d, char *err, size_t errlen)
{
	static const enum file_store_cache cache[] = {
		[VM_DISK_CACHE_DEFAULT] = FILE_STORE_WRITEBACK,
		[VM_DISK_CACHE_NONE] = FILE_STORE_NONE,
		[VM_DISK_CACHE_WRITEBACK] = FILE_STORE_WRITEBACK,
		[VM_DISK_CACHE_WRITETHROUGH] = FILE_STORE_WRITETHROUGH,
		[VM_DISK_CACHE_DIRECTSYNC] = FILE_STORE_DIRECTSYNC,
		[VM_DISK_CACHE_UNSAFE] = FILE_STORE_UNSAFE,
	};
	struct file_store_opts fo = { .read_only = d->readonly, .cache = cache[d->cache] };
	struct virtio_blk_opts bo = disk_opts(m, d);
	char why[384];

	bo.io_uring = d->io_uring;
	if (m->vqr) {
		bo.remote = &vq_remote_ops;
		bo.remote_ctx = vq_remote_disk_ctx(m->vqr, m->nr_disks);
	}

	if (d->type == VM_DISK_VOLUME) {
		const struct vm_volume *v = vm_config_volume(m->cfg, d->volume);
		struct late_store_geometry g = { .size = v->size,
						 .block_size = vm_disk_logical_block(d),
						 .read_only = d->readonly, .discard = true };

		if (late_store_create(&g, &m->disk_late[m->nr_disks], &bo.bd)) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	} else if (file_store_open(d->path, &fo, &bo.bd, why, sizeof(why))) {
		snprintf(err, errlen, "%s:%ld: disk %s: %s", m->cfg->source, d->line, d->target, why);
		return -1;
	}
	if (virtio_blk_create(&m->disks[m->nr_disks], &m->pci, &bo, why, sizeof(why))) {
		snprintf(err, errlen, "%s:%ld: disk %s: %s", m->cfg->source, d->line, d->target, why);
		return -1;
	}
	if (m->vqr)
		vq_remote_set_device(m->vqr, m->nr_disks, &m->disks[m->nr_disks]->vp);
	m->nr_disks++;
	return 0;
}

int machine_attach_volumes(struct machine *m, struct volume_host *vh, char *err, size_t errlen)
{
	for (unsigned i = 0; i < m->nr_disks; i++) {
		const struct vm_disk *d = &m->cfg->disks[i];
		unsigned lbs = vm_disk_logical_block(d);
		struct volume *vol;

		if (!m->disk_late[i])
			continue;
		if (volume_host_open(vh, vm_config_volume(m->cfg, d->volume), &vol, err, errlen))
			return -1;
		/* A volume's blocks are its largest store's (4Kn devices opened O_DIRECT). */
		if (volume_blockdev(vol)->block_size > lbs) {
			unsigned want = volume_blockdev(vol)->block_size;

			volume_close(vol);
			snprintf(err, errlen, "%s:%ld: disk %s: volume %s has a store of %u-byte "
				 "blocks: give the disk <blockio logical_block_size='%u'/>",
				 m->cfg->source, d->line, d->target, d->volume, want, want);
			return -1;
		}
		if (late_store_attach(m->disk_late[i], volume_blockdev(vol))) {
			volume_close(vol);
			snprintf(err, errlen, "disk %s: the volume's size changed", d->target);
			return -1;
		}
		m->disk_volume[i] = vol;
	}
	return 0;
}

void machine_detach_volumes(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_disks; i++) {
		if (!m->disk_late[i])
			continue;
		m->disk_volume[i] = NULL;
		blockdev_close(late_store_detach(m->disk_late[i]));
	}
}

static int setup_pci(struct machine *m, char *err, size_t errlen)
{
	pci_bus_init(&m->pci, &m->irq, &m->apic_bus);
	if (pci_bus_register(&m->pci, &m->bus)) {
		snprintf(err, errlen, "PCI ranges overlap (a bug in the machine model)");
		return -1;
	}
	for (unsigned i = 0; i < m->cfg->nr_disks; i++)
		if (setup_disk(m, &m->cfg->disks[i], err, errlen))
			return -1;
	return 0;
}

static void destroy_pci(struct machine *m)
{
	for (unsigned i = 0; i < m->nr_disks; i++)
		virtio_blk_destroy(m->disks[i]);
	m->nr_disks = 0;
	pci_bus_destroy(&m->pci);
}

/* ---- end of [issue #4] ---- */

static int setup_devices(struct machine *m, char *err, size_t errlen)
{
	struct acpi_pm_ops pm_ops = { .poweroff = pm_poweroff, .reset = pm_reset, .ctx = m };
	int ret = 0;

	io_bus_init(&m->bus);
	m->irq = (struct irq_sink){ .set_irq = route_irq, .ctx = m };
	m->apic_bus = (struct apic_bus){ .deliver = apic_deliver, .ctx = m };
	pic_init(&m->pic, pic_int_out, m);
	ioapic_init(&m->ioapic, IOAPIC_ID, &m->apic_bus);
	pit_init(&m->pit, &m->tq, &m->irq);
	rtc_init(&m->rtc, &m->tq, &m->irq);
	rtc_set_memory_size(&m->rtc, m->mem.low_size, m->mem.size - m->mem.low_size);
	uart_init(&m->uart, UART_COM1_BASE, UART_COM1_IRQ, &m->irq, console_write, m);
	acpi_pm_init(&m->pm, &m->tq, &m->irq, &pm_ops);
	i8042_init(&m->kbd, pm_reset, m);
	pvpanic_init(&m->pvpanic, guest_panicked, m);
	m->devices_ready = true;

	ret |= pic_register(&m->pic, &m->bus);
	ret |= ioapic_register(&m->ioapic, &m->bus);
	ret |= pit_register(&m->pit, &m->bus);
	ret |= rtc_register(&m->rtc, &m->bus);
	ret |= uart_register(&m->uart, &m->bus);
	ret |= acpi_pm_register(&m->pm, &m->bus);
	ret |= i8042_register(&m->kbd, &m->bus);
	ret |= pvpanic_register(&m->pvpanic, &m->bus);
	if (ret) {
		snprintf(err, errlen, "device ranges overlap (a bug in the machine model)");
		return -1;
	}
	return setup_pci(m, err, errlen);	/* [issue #4] */
}

static int load_firmware_tables(struct machine *m, char *err, size_t errlen)
{
	struct acpi_machine am;
	struct e820_entry e820[E820_MAX];
	struct boot_linux_setup setup;
	void *acpi = guest_mem_ptr(&m->mem, BOOT_ACPI_GPA, BOOT_ACPI_SIZE);
	long used;

	fill_acpi_machine(m, &am);
	used = acpi_build(&am, acpi, BOOT_ACPI_SIZE, BOOT_ACPI_GPA, &m->rsdp_gpa);
	if (used < 0) {
		snprintf(err, errlen, "cannot build ACPI tables: %s", strerror((int)-used));
		return -1;
	}
	memset(&setup, 0, sizeof(setup));
	setup.kernel = m->cfg->kernel;
	setup.initrd = m->cfg->initrd;
	setup.cmdline = m->cfg->cmdline;
	setup.rsdp_gpa = m->rsdp_gpa;
	setup.e820 = e820;
	setup.nr_e820 = boot_linux_e820(&m->mem, e820, E820_MAX);
	return boot_linux_load(&m->mem, &setup, &m->entry, err, errlen);
}

void machine_placement_init(struct machine_placement *pl, const struct vm_config *cfg,
			    unsigned self)
{
	memset(pl, 0, sizeof(*pl));
	pl->self = self;
	pl->nr_nodes = cfg->cluster.nr_nodes ? cfg->cluster.nr_nodes : 1;
	for (unsigned i = 0; i < cfg->nr_vcpus; i++)
		pl->vcpu_node[i] = (uint8_t)vm_cluster_node_of_cell(cfg, vm_config_vcpu_cell(cfg, i));
	pl->io_node = pl->vcpu_node[0];
}

/* ---- disk queues served by the node of their vCPU (vmm/vq_remote.h) ---- */

static int vq_send(void *ctx, unsigned dst, const struct node_msg *msg)
{
	return link_send(ctx, dst, msg);
}

static int vq_make_replica(void *ctx, unsigned disk, const struct virtio_replica_ops *ops,
			   void *ops_ctx, struct virtio_blk **out, char *err, size_t errlen)
{
	struct machine *m = ctx;
	const struct vm_disk *d = &m->cfg->disks[disk];
	struct virtio_blk_opts bo = disk_opts(m, d);
	char why[384];

	bo.replica = ops;
	bo.remote_ctx = ops_ctx;

	if (!m->open_disk) {
		snprintf(err, errlen, "disk %s: no way to reach the I/O node's store", d->target);
		return -1;
	}
	if (m->open_disk(m->open_disk_ctx, d->target, &bo.bd, why, sizeof(why))) {
		snprintf(err, errlen, "disk %s: %s", d->target, why);
		return -1;
	}
	return virtio_blk_create(out, NULL, &bo, err, errlen);
}

static void vq_msi(void *ctx, uint64_t addr, uint32_t data)
{
	struct machine *m = ctx;
	struct apic_msg msg;

	if (pci_msi_to_apic(addr, data, &msg))
		apic_deliver(m, &msg);
}

/* The node of the first vCPU an MSI names (the guest's affinity for a queue is one CPU). */
static int vq_msi_node(void *ctx, uint64_t addr, uint32_t data)
{
	struct machine *m = ctx;
	struct apic_msg msg;

	if (!pci_msi_to_apic(addr, data, &msg))
		return -1;
	for (unsigned i = 0; i < m->nr_vcpus; i++)
		if (vcpu_matches(m, i, &msg))
			return m->pl.vcpu_node[i];
	return -1;
}

static bool vq_stopping(void *ctx)
{
	return machine_stopping(ctx);
}

static void vq_fail(void *ctx, const char *msg)
{
	machine_fail(ctx, "%s", msg);
}

static void vq_log(void *ctx, const char *msg)
{
	struct machine *m = ctx;

	fprintf(stderr, "grappe-node %u: %s\n", m->pl.self, msg);
}

/*
 * Each queue of a disk is served by the node of the vCPU its MSI-X vector
 * targets (vq_remote.h): one queue per vCPU, placed at DRIVER_OK.
 */
static int setup_queue_service(struct machine *m, char *err, size_t errlen)
{
	struct vq_remote_config c = {
		.self = m->pl.self, .io_node = m->pl.io_node, .nr_disks = m->cfg->nr_disks,
		.send = vq_send, .make_replica = vq_make_replica, .msi = vq_msi,
		.msi_node = vq_msi_node,
		.stopping = vq_stopping, .fail = vq_fail, .log = vq_log, .ctx = m,
	};

	if (m->pl.nr_nodes < 2 || !m->cfg->nr_disks || getenv("GRAPPE_DISK_QUEUES_ON_IO_NODE"))
		return 0;
	c.nr_queues = m->nr_vcpus < VIRTIO_BLK_MAX_QUEUES ? m->nr_vcpus : VIRTIO_BLK_MAX_QUEUES;
	return vq_remote_create(&m->vqr, &c, err, errlen);
}

void machine_stop_queues(struct machine *m)
{
	vq_remote_stop(m->vqr);
}

static int create_vcpus(struct machine *m, char *err, size_t errlen)
{
	m->vcpus = calloc(m->nr_vcpus, sizeof(*m->vcpus));
	if (!m->vcpus) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		/* Until a remote LAPIC says otherwise, it has the power-on address. */
		m->apic_dir[i] = (struct lapic_addr){ .apic_id = (uint8_t)i, .dfr = 0xffffffff };
		if (!machine_vcpu_is_local(m, i))
			continue;
		if (vcpu_create(&m->vcpus[i], m, i, (uint8_t)i, &m->supported, err, errlen))
			return -1;
	}
	return 0;
}

int machine_create(struct machine *m, const struct vm_config *cfg,
		   const struct machine_placement *pl, int console_fd,
		   char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	m->cfg = cfg;
	m->pl = *pl;
	m->kvm_fd = m->vm_fd = -1;
	m->nr_vcpus = cfg->nr_vcpus;
	m->console.fd = console_fd;
	pthread_mutex_init(&m->ev_lock, NULL);
	pthread_cond_init(&m->ev_cond, NULL);
	pthread_mutex_init(&m->dir_lock, NULL);
	pthread_mutex_init(&m->run_lock, NULL);
	timer_queue_init(&m->tq, timer_clock_monotonic, NULL);

	if (vcpu_install_kick_handler()) {
		snprintf(err, errlen, "cannot install the vCPU kick signal handler");
		return -1;
	}
	if (guest_mem_init(&m->mem, cfg->mem_bytes)) {
		snprintf(err, errlen, "cannot allocate %llu bytes of guest memory",
			 (unsigned long long)cfg->mem_bytes);
		return -1;
	}
	if (setup_kvm(m, err, errlen))
		return -1;
	if (setup_queue_service(m, err, errlen))
		return -1;
	if (is_io_node(m) && setup_devices(m, err, errlen))
		return -1;
	if (is_io_node(m) && m->pl.nr_nodes > 1 &&
	    io_worker_start(&m->io_worker, run_remote_io, m)) {
		snprintf(err, errlen, "cannot start the I/O worker thread");
		return -1;
	}
	return create_vcpus(m, err, errlen);
}

int machine_load(struct machine *m, char *err, size_t errlen)
{
	if (!is_io_node(m))
		return 0;
	if (load_firmware_tables(m, err, errlen))
		return -1;
	if (vcpu_set_boot_entry(&m->vcpus[0], &m->entry)) {
		snprintf(err, errlen, "vCPU 0: cannot set the boot state: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int machine_start(struct machine *m, char *err, size_t errlen)
{
	int ret = timer_queue_start(&m->tq);

	if (ret) {
		snprintf(err, errlen, "cannot start the timer thread: %s", strerror(-ret));
		return -1;
	}
	for (unsigned i = 0; i < m->nr_vcpus; i++) {
		if (!m->vcpus[i].m)
			continue;
		ret = vcpu_start(&m->vcpus[i]);
		if (ret) {
			snprintf(err, errlen, "cannot start vCPU %u: %s", i, strerror(-ret));
			post_event(m, MACHINE_EV_ERROR, err);
			return -1;
		}
	}
	return 0;
}

void machine_pause(struct machine *m, bool pause)
{
	__atomic_store_n(&m->paused, pause, __ATOMIC_RELEASE);
	for (unsigned i = 0; m->vcpus && i < m->nr_vcpus; i++)
		if (m->vcpus[i].m)
			vcpu_kick(&m->vcpus[i]);
}

void machine_stop_vcpus(struct machine *m)
{
	__atomic_store_n(&m->stopping, 1, __ATOMIC_RELEASE);
	if (m->quiesce_hook)
		m->quiesce_hook(m->stats_ctx);
	for (unsigned i = 0; m->vcpus && i < m->nr_vcpus; i++) {
		if (!m->vcpus[i].m)
			continue;
		pthread_mutex_lock(&m->vcpus[i].io_lock);
		pthread_cond_broadcast(&m->vcpus[i].io_cond);
		pthread_mutex_unlock(&m->vcpus[i].io_lock);
		vcpu_join(&m->vcpus[i]);
	}
	timer_queue_stop(&m->tq);
}

enum machine_event machine_run(struct machine *m)
{
	enum machine_event ev;

	pthread_mutex_lock(&m->ev_lock);
	while (m->event == MACHINE_EV_NONE)
		pthread_cond_wait(&m->ev_cond, &m->ev_lock);
	ev = m->event;
	pthread_mutex_unlock(&m->ev_lock);
	machine_stop_vcpus(m);
	return ev;
}

void machine_stop(struct machine *m, const char *why)
{
	post_event(m, MACHINE_EV_STOP, why);
}

void machine_destroy(struct machine *m)
{
	machine_stop_vcpus(m);
	machine_stop_queues(m);
	io_worker_stop(&m->io_worker);
	if (m->vcpus) {
		for (unsigned i = 0; i < m->nr_vcpus; i++)
			if (m->vcpus[i].m)
				vcpu_destroy(&m->vcpus[i]);
		free(m->vcpus);
		m->vcpus = NULL;
	}
	if (m->devices_ready) {
		destroy_pci(m);		/* [issue #4]: before guest RAM goes */
		pit_destroy(&m->pit);
		rtc_destroy(&m->rtc);
		acpi_pm_destroy(&m->pm);
		i8042_destroy(&m->kbd);
		uart_destroy(&m->uart);
		ioapic_destroy(&m->ioapic);
		pic_destroy(&m->pic);
	}
	if (m->vm_fd >= 0)
		close(m->vm_fd);
	if (m->kvm_fd >= 0)
		close(m->kvm_fd);
	vq_remote_destroy(m->vqr);	/* the I/O node's disks used it until now */
	m->vqr = NULL;
	guest_mem_destroy(&m->mem);
	timer_queue_destroy(&m->tq);
	pthread_mutex_destroy(&m->dir_lock);
	pthread_mutex_destroy(&m->run_lock);
	pthread_cond_destroy(&m->ev_cond);
	pthread_mutex_destroy(&m->ev_lock);
}
