/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_MACHINE_H
#define GRAPPE_MACHINE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/acpi_pm.h"
#include "vmm/apic_bus.h"
#include "vmm/boot_linux.h"
#include "vmm/cpuid.h"
#include "vmm/guest_mem.h"
#include "vmm/i8042.h"
#include "vmm/io.h"
#include "vmm/io_worker.h"
#include "vmm/node_msg.h"
#include "vmm/pci.h"             /* [issue #4: PCI + virtio-blk] */
#include "vmm/ioapic.h"
#include "vmm/irq.h"
#include "vmm/pic.h"
#include "vmm/pit.h"
#include "vmm/pvpanic.h"
#include "vmm/rtc.h"
#include "vmm/timer.h"
#include "vmm/uart.h"
#include "vmm/vcpu.h"
#include "vmm/vm_config.h"
#include "vmm/volume_host.h"
#include "vmm/vq_remote.h"
#include "blockdev/late_store.h"

/*
 * One node's part of the guest: a KVM VM, its vCPUs, guest RAM and the PC
 * chipset. Today one node holds the whole machine; every cross-component
 * path (device access, interrupt message, EOI) already goes through a
 * function here, which is where a cluster will route to other nodes.
 */

enum machine_event {
	MACHINE_EV_NONE = 0,
	MACHINE_EV_POWEROFF,     /* ACPI S5 or a poweroff request */
	MACHINE_EV_RESET,        /* guest reboot (0xCF9, 8042, ACPI reset) */
	MACHINE_EV_TRIPLE_FAULT, /* a vCPU shut down */
	MACHINE_EV_PANIC,        /* the guest reported a panic (pvpanic) */
	MACHINE_EV_ERROR,        /* the VMM could not go on */
	MACHINE_EV_STOP,         /* the host asked us to stop (signal) */
};

struct json_object;

struct console_out {
	int fd;
};

/*
 * How this node reaches the others: the cluster glue (vmm/cluster.c) sends
 * node messages over the fabric. NULL send: a machine alone on one node.
 */
struct node_link {
	int (*send)(void *ctx, unsigned dst, const struct node_msg *msg);
	void *ctx;
};

/* Which node runs what. */
struct machine_placement {
	unsigned self;
	unsigned nr_nodes;
	unsigned io_node;                 /* devices live here: the BSP's node */
	uint8_t vcpu_node[VM_MAX_VCPUS];
};

struct machine {
	const struct vm_config *cfg;
	int kvm_fd;
	int vm_fd;
	unsigned nr_vcpus;
	struct guest_mem mem;
	struct io_bus bus;
	struct timer_queue tq;
	struct irq_sink irq;
	struct apic_bus apic_bus;
	struct pic pic;
	struct ioapic ioapic;
	struct pit pit;
	struct rtc rtc;
	struct uart uart;
	struct acpi_pm pm;
	struct i8042 kbd;
	struct pvpanic pvpanic;
	/* [issue #4: PCI + virtio-blk] vmm/pci.c, vmm/virtio_blk.c, docs/devices.md */
	struct pci_bus pci;
	struct virtio_blk *disks[VM_MAX_DISKS];
	unsigned nr_disks;
	/* Volume disks: the stand-in the device holds, the volume once attached. */
	struct late_store *disk_late[VM_MAX_DISKS];
	struct volume *disk_volume[VM_MAX_DISKS];
	/* In a cluster: disk queues served by the node of their vCPU (vmm/vq_remote.h). */
	struct vq_remote *vqr;
	/* Serving node: opens disk 'target' of the I/O node (set once the fabric is up). */
	int (*open_disk)(void *ctx, const char *target, struct blockdev **out, char *err,
			 size_t errlen);
	void *open_disk_ctx;
	struct console_out console;
	bool devices_ready;
	struct cpuid_table supported;
	struct vcpu *vcpus;       /* all vCPUs; only this node's have vcpus[i].m set */
	struct machine_placement pl;
	struct node_link link;
	struct io_worker io_worker;   /* I/O node of a cluster: forwarded accesses */
	pthread_mutex_t dir_lock;
	struct lapic_addr apic_dir[VM_MAX_VCPUS]; /* every vCPU's APIC address */
	struct boot_entry entry;
	uint64_t rsdp_gpa;
	unsigned lowest_prio_rr;   /* round robin for lowest-priority delivery */

	pthread_mutex_t ev_lock;
	pthread_cond_t ev_cond;
	enum machine_event event;
	char ev_msg[512];
	int stopping;              /* atomic */
	int paused;                /* atomic: QMP stop */
	/* Adds cluster figures (DSM, fabric) to query-grappe-stats. */
	void (*stats_hook)(void *ctx, struct json_object *out);
	/* Adds the volumes' read-lease figures (vmm/volume_host.c) to it. */
	void (*volume_stats_hook)(void *ctx, struct json_object *out);
	void *volume_stats_ctx;
	/* The guest has stopped: release vCPUs blocked on remote memory. */
	void (*quiesce_hook)(void *ctx);
	/* None of this node's vCPUs runs (idle), or one runs again: called under run_lock. */
	void (*idle_hook)(void *ctx, bool idle);
	/* An interrupt went to a vCPU on another node: it needs to run there now. */
	void (*yield_hook)(void *ctx);
	void *idle_ctx;
	void *stats_ctx;
	pthread_mutex_t run_lock;
	unsigned running;          /* local vCPUs in or entering KVM_RUN (run_lock) */
};

/* Where each vCPU runs for this config, seen from node 'self'. */
void machine_placement_init(struct machine_placement *pl, const struct vm_config *cfg,
			    unsigned self);

/*
 * Builds this node's part of the machine described by cfg: KVM, guest RAM
 * (untouched), its vCPUs and, on the I/O node, the devices. The serial
 * console writes to console_fd. Returns 0, or -1 with a message in err.
 */
int machine_create(struct machine *m, const struct vm_config *cfg,
		   const struct machine_placement *pl, int console_fd,
		   char *err, size_t errlen);
/*
 * On the I/O node: writes ACPI tables and the kernel into guest RAM and
 * points the BSP at it. In a cluster guest RAM is under the DSM by then.
 */
/*
 * I/O node: opens every volume disk's volume (docs/volume.md) once the
 * fabric is up, and closes them (flushed, marked clean) before it goes.
 */
int machine_attach_volumes(struct machine *m, struct volume_host *vh, char *err, size_t errlen);
void machine_detach_volumes(struct machine *m);
int machine_load(struct machine *m, char *err, size_t errlen);
/* A message from another node's machine (called by the cluster glue). */
void machine_node_msg(struct machine *m, unsigned src, const struct node_msg *msg);
/* A peer node is gone: the guest cannot go on. */
void machine_peer_down(struct machine *m, unsigned node, const char *why);
bool machine_vcpu_is_local(const struct machine *m, unsigned vcpu);
/* A local vCPU leaves the guest for a while (waiting) or enters it again. */
void machine_vcpu_waiting(struct machine *m, bool waiting);
/*
 * Sets idle_hook (called at once with the current state) and yield_hook:
 * how the cluster's memory learns that this node's vCPUs need no pages, or
 * that another node's vCPU must run.
 */
void machine_set_idle_hook(struct machine *m, void (*hook)(void *ctx, bool idle),
			   void (*yield)(void *ctx), void *ctx);
void machine_apic_addr_changed(struct machine *m, unsigned vcpu);
void machine_destroy(struct machine *m);
int machine_start(struct machine *m, char *err, size_t errlen);
/* Waits for the first event (poweroff, reset, error...), then stops every vCPU. */
enum machine_event machine_run(struct machine *m);
const char *machine_event_message(struct machine *m);
/* QMP stop/cont for this node's vCPUs. */
void machine_pause(struct machine *m, bool pause);

/* Stops and joins this node's vCPU threads and the timer thread; idempotent. */
void machine_stop_vcpus(struct machine *m);
/* After the vCPUs: the disk queues this node serves for the I/O node stop (stores closed). */
void machine_stop_queues(struct machine *m);
/* Asks a running machine to stop (from a signal-watching thread). */
void machine_stop(struct machine *m, const char *why);

/* Used by vCPUs and devices. */
bool machine_stopping(struct machine *m);
void machine_io(struct machine *m, struct io_req *req);
void machine_apic_send(struct machine *m, const struct apic_msg *msg);
void machine_eoi(struct machine *m, uint8_t vector);
bool machine_extint_pending(struct machine *m);
int machine_extint_ack(struct machine *m);
void machine_request(struct machine *m, enum machine_event ev, unsigned vcpu);
void machine_fail(struct machine *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Feeds console input to the guest's UART; returns bytes taken. */
size_t machine_console_input(struct machine *m, const uint8_t *buf, size_t len);

#endif
