/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_VCPU_H
#define GRAPPE_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <sys/types.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/cpuid.h"
#include "vmm/lapic.h"

struct machine;

struct vcpu_stats {
	uint64_t exits;
	uint64_t pio;
	uint64_t mmio;
	uint64_t lapic;
	uint64_t hlt;
	uint64_t irq_injected;
	uint64_t irq_window;
	uint64_t kicks;
};

/* Architectural state as KVM holds it: what INIT restores, what migration ships. */
struct vcpu_arch_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
};

struct vcpu {
	struct machine *m;
	unsigned index;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct lapic lapic;
	struct cpuid_table cpuid;
	struct vcpu_arch_state reset_state;  /* right after creation: for INIT */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;   /* protects 'kicked' and the wait below */
	pthread_cond_t cond;
	bool kicked;
	int in_guest;           /* atomic: inside KVM_RUN */
	int halted;             /* atomic: sleeping on HLT */
	bool waiting;           /* not in KVM_RUN (HLT, before SIPI, paused): machine_vcpu_waiting */
	pid_t tid;              /* host thread id, for query-cpus-fast */
	uint64_t cr8;           /* the CR8 given to the last KVM_RUN */
	struct vcpu_stats stats;
	/* A device access forwarded to the I/O node waits here for its answer. */
	pthread_mutex_t io_lock;
	pthread_cond_t io_cond;
	bool io_done;
	struct io_req io_resp;
};

/* Creates the KVM vCPU; 'apic_id' and the supported CPUID shape what it sees. */
int vcpu_create(struct vcpu *v, struct machine *m, unsigned index, uint8_t apic_id,
		const struct cpuid_table *supported, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);
int vcpu_start(struct vcpu *v);
void vcpu_join(struct vcpu *v);
/* Makes the vCPU look at its LAPIC now (from any thread). */
void vcpu_kick(struct vcpu *v);
/* Puts the BSP at the kernel's 64-bit entry point. */
struct boot_entry;
int vcpu_set_boot_entry(struct vcpu *v, const struct boot_entry *e);

/* The signal that knocks a vCPU thread out of KVM_RUN. */
#define VCPU_KICK_SIGNAL SIGUSR1
/* Installs its (empty) handler; idempotent. */
int vcpu_install_kick_handler(void);

#endif
