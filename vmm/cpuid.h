/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_CPUID_H
#define GRAPPE_CPUID_H

#include <linux/kvm.h>
#include <stdint.h>

/*
 * The CPUID a vCPU sees: what KVM supports, minus what a userspace
 * interrupt controller cannot honour and what differs between hosts.
 */

#define CPUID_MAX_ENTRIES 256

struct cpuid_table {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 entries[CPUID_MAX_ENTRIES];
};

/*
 * Rewrites 'in' (from KVM_GET_SUPPORTED_CPUID) for one vCPU into 'out'.
 * Topology: every vCPU is a one-core package; its NUMA cell comes from ACPI.
 */
void cpuid_filter(const struct cpuid_table *in, struct cpuid_table *out,
		  uint8_t apic_id, unsigned nr_vcpus);

/* Bits of leaf 0x40000001 EAX that grappe offers, and what it never offers. */
uint32_t cpuid_kvm_features(uint32_t supported);

#endif
