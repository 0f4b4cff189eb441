// SPDX-License-Identifier: MIT
/*
 * vCPU threads: KVM_RUN, exit handling and interrupt injection for a VM
 * without an in-kernel irqchip. Interrupts come from the vCPU's userspace
 * LAPIC and are injected with KVM_INTERRUPT when the guest can take them,
 * or an interrupt window is requested; HLT comes back to us and the thread
 * sleeps until its LAPIC has something.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/boot_linux.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"

static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu_install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) ? -errno : 0;
}

static void lapic_kick_cb(void *ctx)
{
	vcpu_kick(ctx);
}

static void lapic_send_cb(void *ctx, const struct apic_msg *msg)
{
	struct vcpu *v = ctx;

	machine_apic_send(v->m, msg);
}

static void lapic_eoi_cb(void *ctx, uint8_t vector)
{
	struct vcpu *v = ctx;

	machine_eoi(v->m, vector);
}

static bool lapic_extint_pending_cb(void *ctx)
{
	struct vcpu *v = ctx;

	return machine_extint_pending(v->m);
}

static int lapic_extint_ack_cb(void *ctx)
{
	struct vcpu *v = ctx;

	return machine_extint_ack(v->m);
}

static void lapic_addr_changed_cb(void *ctx)
{
	struct vcpu *v = ctx;

	machine_apic_addr_changed(v->m, v->index);
}

static int save_arch_state(struct vcpu *v, struct vcpu_arch_state *st)
{
	if (ioctl(v->fd, KVM_GET_REGS, &st->regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &st->sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_FPU, &st->fpu) < 0)
		return -errno;
	return 0;
}

static int load_arch_state(struct vcpu *v, const struct vcpu_arch_state *st)
{
	if (ioctl(v->fd, KVM_SET_REGS, &st->regs) < 0 ||
	    ioctl(v->fd, KVM_SET_SREGS, &st->sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_FPU, &st->fpu) < 0)
		return -errno;
	return 0;
}

int vcpu_create(struct vcpu *v, struct machine *m, unsigned index, uint8_t apic_id,
		const struct cpuid_table *supported, char *err, size_t errlen)
{
	struct lapic_ops ops = {
		.kick = lapic_kick_cb,
		.send = lapic_send_cb,
		.eoi_level = lapic_eoi_cb,
		.extint_pending = lapic_extint_pending_cb,
		.extint_ack = lapic_extint_ack_cb,
		.addr_changed = lapic_addr_changed_cb,
		.ctx = v,
	};
	int mmap_size;

	memset(v, 0, sizeof(*v));
	v->waiting = true;             /* counted as running once it enters the guest */
	v->m = m;
	v->index = index;
	v->fd = -1;
	pthread_mutex_init(&v->lock, NULL);
	pthread_cond_init(&v->cond, NULL);
	pthread_mutex_init(&v->io_lock, NULL);
	pthread_cond_init(&v->io_cond, NULL);
	lapic_init(&v->lapic, index, apic_id, index == 0, &m->tq, &ops);

	v->fd = ioctl(m->vm_fd, KVM_CREATE_VCPU, index);
	if (v->fd < 0)
		goto sys_fail;
	mmap_size = ioctl(m->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size < 0)
		goto sys_fail;
	v->run = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		goto sys_fail;
	}
	v->run_size = mmap_size;
	cpuid_filter(supported, &v->cpuid, apic_id, m->nr_vcpus);
	if (ioctl(v->fd, KVM_SET_CPUID2, &v->cpuid) < 0)
		goto sys_fail;
	if (save_arch_state(v, &v->reset_state))
		goto sys_fail;
	return 0;

sys_fail:
	snprintf(err, errlen, "vCPU %u: KVM set-up failed: %s", index, strerror(errno));
	return -1;
}

void vcpu_destroy(struct vcpu *v)
{
	lapic_destroy(&v->lapic);
	if (v->run)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	pthread_cond_destroy(&v->cond);
	pthread_mutex_destroy(&v->lock);
	pthread_cond_destroy(&v->io_cond);
	pthread_mutex_destroy(&v->io_lock);
}

static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code64;
	s->db = !code64;
}

int vcpu_set_boot_entry(struct vcpu *v, const struct boot_entry *e)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	set_seg(&sregs.cs, BOOT_CODE_SEL, 0xb, true);
	set_seg(&sregs.ds, BOOT_DATA_SEL, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = e->gdt_base;
	sregs.gdt.limit = e->gdt_limit;
	sregs.cr3 = e->cr3;
	sregs.cr4 = 1u << 5;                           /* PAE */
	sregs.cr0 = (1u << 0) | (1u << 4) | (1u << 31); /* PE, ET, PG */
	sregs.efer = (1u << 8) | (1u << 10);           /* LME, LMA */
	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;
	regs.rip = e->rip;
	regs.rsi = e->rsi;
	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->kicked = true;
	pthread_cond_signal(&v->cond);
	pthread_mutex_unlock(&v->lock);
	/*
	 * immediate_exit covers a kick that lands between the vCPU's last look
	 * at its LAPIC and KVM_RUN; the signal covers a vCPU inside the guest.
	 */
	if (v->run)
		__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&v->in_guest, __ATOMIC_SEQ_CST) && v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
	__atomic_add_fetch(&v->stats.kicks, 1, __ATOMIC_RELAXED);
}

/*
 * Whether this thread is out of the guest for a while (HLT, waiting for
 * SIPI, paused) or about to enter it: the machine tells the cluster when
 * none of this node's vCPUs runs, and the DSM then lets pages go at once
 * instead of keeping them for a vCPU that sleeps.
 */
static void set_waiting(struct vcpu *v, bool waiting)
{
	if (v->waiting == waiting)
		return;
	v->waiting = waiting;
	machine_vcpu_waiting(v->m, waiting);
}

/* Sleeps until kicked or the machine stops. */
static void wait_for_kick(struct vcpu *v)
{
	set_waiting(v, true);
	pthread_mutex_lock(&v->lock);
	while (!v->kicked && !machine_stopping(v->m))
		pthread_cond_wait(&v->cond, &v->lock);
	v->kicked = false;
	pthread_mutex_unlock(&v->lock);
}

static void clear_kick(struct vcpu *v)
{
	pthread_mutex_lock(&v->lock);
	v->kicked = false;
	pthread_mutex_unlock(&v->lock);
}

static int do_sipi(struct vcpu *v, int vector)
{
	struct vcpu_arch_state st = v->reset_state;

	st.sregs.cs.selector = (uint16_t)(vector << 8);
	st.sregs.cs.base = (uint64_t)vector << 12;
	st.regs.rip = 0;
	return load_arch_state(v, &st);
}

/*
 * Acts on NMI/INIT/SIPI. Returns 1 while the vCPU must stay parked
 * (waiting for a start-up IPI), 0 to run, <0 on error.
 */
static int handle_events(struct vcpu *v)
{
	struct lapic_events ev;

	lapic_take_events(&v->lapic, &ev);
	if (ev.init) {
		int err = load_arch_state(v, &v->reset_state);

		if (err)
			return err;
	}
	if (ev.sipi >= 0) {
		int err = do_sipi(v, ev.sipi);

		if (err)
			return err;
	}
	if (ev.nmi && ioctl(v->fd, KVM_NMI) < 0)
		return -errno;
	return lapic_waiting_for_sipi(&v->lapic) ? 1 : 0;
}

/* Injects the best pending interrupt if the guest can take one now. */
static int inject_interrupt(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	bool extint;
	int vec;

	run->request_interrupt_window = 0;
	if (!run->ready_for_interrupt_injection || !run->if_flag) {
		run->request_interrupt_window = lapic_has_event(&v->lapic);
		return 0;
	}
	vec = lapic_next_vector(&v->lapic, &extint);
	if (vec < 0)
		return 0;
	{
		struct kvm_interrupt irq = { .irq = (uint32_t)vec };

		if (ioctl(v->fd, KVM_INTERRUPT, &irq) < 0)
			return -errno;
	}
	if (!extint)
		lapic_ack(&v->lapic, vec);
	v->stats.irq_injected++;
	/* More may be waiting behind it: ask for the next window. */
	run->request_interrupt_window = lapic_has_event(&v->lapic);
	return 0;
}

static void handle_pio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		struct io_req req = {
			.space = IO_SPACE_PIO,
			.is_write = run->io.direction == KVM_EXIT_IO_OUT,
			.len = run->io.size,
			.vcpu = (uint16_t)v->index,
			.addr = run->io.port,
		};

		if (req.is_write)
			memcpy(&req.data, data, req.len);
		machine_io(v->m, &req);
		if (!req.is_write)
			memcpy(data, &req.data, req.len);
	}
	v->stats.pio++;
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t addr = run->mmio.phys_addr;
	struct io_req req = {
		.space = IO_SPACE_MMIO,
		.is_write = run->mmio.is_write,
		.len = (uint8_t)run->mmio.len,
		.vcpu = (uint16_t)v->index,
		.addr = addr,
	};

	if (addr >= LAPIC_BASE_GPA && addr < LAPIC_BASE_GPA + 0x1000) {
		uint32_t val = 0;

		v->stats.lapic++;
		if (run->mmio.is_write) {
			memcpy(&val, run->mmio.data, run->mmio.len < 4 ? run->mmio.len : 4);
			lapic_write(&v->lapic, addr & 0xfff, val);
		} else {
			val = lapic_read(&v->lapic, addr & 0xfff);
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			memcpy(run->mmio.data, &val, run->mmio.len < 4 ? run->mmio.len : 4);
		}
		return;
	}
	v->stats.mmio++;
	if (req.is_write)
		memcpy(&req.data, run->mmio.data, req.len > 8 ? 8 : req.len);
	machine_io(v->m, &req);
	if (!req.is_write)
		memcpy(run->mmio.data, &req.data, req.len > 8 ? 8 : req.len);
}

/* HLT: sleep until something would wake the CPU. */
static void handle_hlt(struct vcpu *v)
{
	bool if_flag = v->run->if_flag;

	v->stats.hlt++;
	__atomic_store_n(&v->halted, 1, __ATOMIC_RELAXED);
	while (!machine_stopping(v->m) && !__atomic_load_n(&v->m->paused, __ATOMIC_ACQUIRE)) {
		clear_kick(v);
		if (if_flag ? lapic_has_event(&v->lapic) : lapic_has_nmi_init(&v->lapic))
			break;
		wait_for_kick(v);
	}
	__atomic_store_n(&v->halted, 0, __ATOMIC_RELAXED);
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_UNKNOWN: return "UNKNOWN";
	case KVM_EXIT_EXCEPTION: return "EXCEPTION";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	case KVM_EXIT_DEBUG: return "DEBUG";
	case KVM_EXIT_SYSTEM_EVENT: return "SYSTEM_EVENT";
	default: return "unhandled";
	}
}

static void vcpu_error(struct vcpu *v, const char *what)
{
	struct kvm_regs regs;
	uint64_t rip = 0;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
		rip = regs.rip;
	machine_fail(v->m, "vCPU %u: %s (exit reason %u, RIP 0x%llx)", v->index, what,
		     v->run->exit_reason, (unsigned long long)rip);
}

/* Returns false when the loop must end. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[96];

	v->stats.exits++;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_pio(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_HLT:
		handle_hlt(v);
		return true;
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		v->stats.irq_window++;
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SET_TPR:
		lapic_set_cr8(&v->lapic, run->cr8);
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* A triple fault: a PC resets. */
		machine_request(v->m, MACHINE_EV_TRIPLE_FAULT, v->index);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		machine_request(v->m, run->system_event.type == KVM_SYSTEM_EVENT_RESET ?
				MACHINE_EV_RESET : MACHINE_EV_POWEROFF, v->index);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM internal error, suberror %u",
			 run->internal.suberror);
		vcpu_error(v, what);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_error(v, what);
		return false;
	default:
		snprintf(what, sizeof(what), "unhandled exit %s", exit_name(run->exit_reason));
		vcpu_error(v, what);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(pthread_self(), name);
	__atomic_store_n(&v->tid, gettid(), __ATOMIC_RELAXED);
	while (!machine_stopping(v->m)) {
		int parked;

		__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
		clear_kick(v);
		/* Paused (QMP stop): out of the guest until cont. */
		if (__atomic_load_n(&v->m->paused, __ATOMIC_ACQUIRE)) {
			wait_for_kick(v);
			continue;
		}
		parked = handle_events(v);
		if (parked < 0) {
			vcpu_error(v, "cannot apply INIT/SIPI/NMI");
			break;
		}
		if (parked) {
			wait_for_kick(v);
			continue;
		}
		if (inject_interrupt(v) < 0) {
			vcpu_error(v, "KVM_INTERRUPT failed");
			break;
		}
		v->run->cr8 = v->cr8 = lapic_get_cr8(&v->lapic);
		set_waiting(v, false);
		__atomic_store_n(&v->in_guest, 1, __ATOMIC_SEQ_CST);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			__atomic_store_n(&v->in_guest, 0, __ATOMIC_SEQ_CST);
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vcpu_error(v, strerror(errno));
			break;
		}
		__atomic_store_n(&v->in_guest, 0, __ATOMIC_SEQ_CST);
		/* The guest may have moved CR8 (TPR's alias) itself. */
		if (v->run->cr8 != v->cr8)
			lapic_set_cr8(&v->lapic, v->run->cr8);
		if (!handle_exit(v))
			break;
	}
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	int err = pthread_create(&v->thread, NULL, vcpu_thread, v);

	if (err)
		return -err;
	v->thread_started = true;
	return 0;
}

void vcpu_join(struct vcpu *v)
{
	if (!v->thread_started)
		return;
	vcpu_kick(v);
	pthread_join(v->thread, NULL);
	v->thread_started = false;
}
