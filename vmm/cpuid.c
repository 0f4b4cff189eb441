// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <string.h>

#include "vmm/cpuid.h"

/* Leaf 1 */
#define ECX_X2APIC       (1u << 21)
#define ECX_TSC_DEADLINE (1u << 24)
#define ECX_HYPERVISOR   (1u << 31)
#define EDX_APIC         (1u << 9)
#define EDX_HTT          (1u << 28)
/* Leaf 0x80000001 ECX (AMD) */
#define ECX_SVM          (1u << 2)
#define ECX_EXTAPIC      (1u << 3)
#define ECX_TOPOEXT      (1u << 22)
/* Leaf 7 */
#define ECX7_LA57        (1u << 16)
#define EDX7_HYBRID      (1u << 15)

/* KVM paravirtual features, leaf 0x40000001 EAX (Documentation/virt/kvm/x86/cpuid.rst). */
#define KVM_F_CLOCKSOURCE        (1u << 0)
#define KVM_F_NOP_IO_DELAY       (1u << 1)
#define KVM_F_CLOCKSOURCE2       (1u << 3)
#define KVM_F_STEAL_TIME         (1u << 5)
#define KVM_F_PV_TLB_FLUSH       (1u << 9)
#define KVM_F_CLOCKSOURCE_STABLE (1u << 24)

uint32_t cpuid_kvm_features(uint32_t supported)
{
	/*
	 * Offered: kvmclock, steal time (a vCPU stalled on a remote page shows
	 * up as steal) and PV TLB flush (fewer cross-host IPIs). Withheld,
	 * because each needs KVM's in-kernel LAPIC: PV EOI, PV unhalt, PV
	 * send-IPI, PV sched-yield, async page faults, poll control, and the
	 * extended MSI destination ID.
	 */
	uint32_t want = KVM_F_CLOCKSOURCE | KVM_F_NOP_IO_DELAY | KVM_F_CLOCKSOURCE2 |
			KVM_F_STEAL_TIME | KVM_F_PV_TLB_FLUSH | KVM_F_CLOCKSOURCE_STABLE;

	return supported & want;
}

static void fix_entry(struct kvm_cpuid_entry2 *e, uint8_t apic_id, unsigned nr_vcpus)
{
	switch (e->function) {
	case 1:
		e->ecx &= ~(ECX_X2APIC | ECX_TSC_DEADLINE);
		e->ecx |= ECX_HYPERVISOR;
		e->edx |= EDX_APIC;
		e->edx &= ~EDX_HTT;
		/* APIC ID in 31-24, one logical processor per package in 23-16. */
		e->ebx = (e->ebx & 0xffff) | (1u << 16) | ((uint32_t)apic_id << 24);
		break;
	case 4:
		/* Deterministic cache parameters: one core, one thread per cache. */
		e->eax &= 0x3ff;
		break;
	case 7:
		if (e->index == 0) {
			e->edx &= ~EDX7_HYBRID;
			/*
			 * No 5-level paging: 4 levels map 64 TiB, and in a cluster
			 * every level of the guest's page table is a page that each
			 * node's page walks need writable (docs/dsm.md, "Holding"):
			 * one level fewer is one page fewer to move per turn. It
			 * also differs between hosts.
			 */
			e->ecx &= ~ECX7_LA57;
		}
		break;
	case 0xa:
		/* No PMU: its interrupt is an LVT entry we do not drive. */
		e->eax = e->ebx = e->ecx = e->edx = 0;
		break;
	case 0xb:
	case 0x1f:
		/* Topology: SMT and core levels have one member each. */
		e->eax = 0;
		e->ebx = e->index < 2 ? 1 : 0;
		e->ecx = e->index < 2 ? ((e->index + 1) << 8) | e->index : e->index;
		e->edx = apic_id;
		break;
	case 0x80000001:
		e->ecx &= ~(ECX_SVM | ECX_EXTAPIC | ECX_TOPOEXT);
		break;
	case 0x80000008:
		e->ecx &= ~0xf0ffu; /* one core per package, APIC ID size from the legacy scheme */
		break;
	default:
		break;
	}
	(void)nr_vcpus;
}

static bool drop_leaf(uint32_t fn)
{
	/* Leaves describing features we hide entirely. */
	return fn == 0x8000000a || fn == 0x8000001e;
}

static struct kvm_cpuid_entry2 *find_entry(struct cpuid_table *t, uint32_t fn, uint32_t idx)
{
	for (unsigned i = 0; i < t->hdr.nent; i++)
		if (t->entries[i].function == fn && t->entries[i].index == idx)
			return &t->entries[i];
	return NULL;
}

/*
 * Leaf 0xD must agree with the feature flags and describe every XSAVE
 * component it claims: a guest kernel sizes its FPU buffers from it and
 * warns (or worse) when the totals disagree. Nested KVM under TCG lists
 * AVX and PKRU state in XCR0's mask while leaf 1 has no AVX; drop every
 * component whose feature is absent or whose subleaf is missing.
 */
static bool component_usable(struct cpuid_table *t, unsigned bit)
{
	struct kvm_cpuid_entry2 *e1 = find_entry(t, 1, 0), *e7 = find_entry(t, 7, 0);
	struct kvm_cpuid_entry2 *c = find_entry(t, 0xd, bit);

	if (!c || !c->eax)
		return false;
	switch (bit) {
	case 2: return e1 && (e1->ecx & (1u << 28));               /* AVX */
	case 3: case 4: return e7 && (e7->ebx & (1u << 14));       /* MPX */
	case 5: case 6: case 7: return e7 && (e7->ebx & (1u << 16)); /* AVX-512F */
	case 9: return e7 && (e7->ecx & (1u << 3));                /* PKU */
	default: return true;
	}
}

static void fix_xsave(struct cpuid_table *t)
{
	struct kvm_cpuid_entry2 *e0 = find_entry(t, 0xd, 0), *e7 = find_entry(t, 7, 0);
	uint32_t max_end = 576; /* legacy area + XSAVE header */

	if (!e0)
		return;
	for (unsigned bit = 2; bit < 32; bit++) {
		struct kvm_cpuid_entry2 *c = find_entry(t, 0xd, bit);

		if (!(e0->eax & (1u << bit)))
			continue;
		if (!component_usable(t, bit)) {
			e0->eax &= ~(1u << bit);
			if (bit == 9 && e7)
				e7->ecx &= ~(1u << 3); /* PKU needs the PKRU component */
			if (c)
				c->eax = c->ebx = c->ecx = c->edx = 0;
			continue;
		}
		if (c->ebx + c->eax > max_end)
			max_end = c->ebx + c->eax;
	}
	e0->ecx = max_end;
}

void cpuid_filter(const struct cpuid_table *in, struct cpuid_table *out,
		  uint8_t apic_id, unsigned nr_vcpus)
{
	unsigned n = 0;

	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < in->hdr.nent && n < CPUID_MAX_ENTRIES; i++) {
		struct kvm_cpuid_entry2 e = in->entries[i];

		if (drop_leaf(e.function))
			continue;
		if (e.function == 0x40000000) {
			e.eax = 0x40000001;
			memcpy(&e.ebx, "KVMK", 4);
			memcpy(&e.ecx, "VMKV", 4);
			memcpy(&e.edx, "M\0\0\0", 4);
		} else if (e.function == 0x40000001) {
			e.eax = cpuid_kvm_features(e.eax);
			e.ebx = e.ecx = e.edx = 0;
		} else {
			fix_entry(&e, apic_id, nr_vcpus);
		}
		out->entries[n++] = e;
	}
	out->hdr.nent = n;
	fix_xsave(out);
}
