/* SPDX-License-Identifier: MIT */
#ifndef GRAPPE_PCI_H
#define GRAPPE_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/apic_bus.h"
#include "vmm/io.h"
#include "vmm/irq.h"

/*
 * A conventional PCI bus 0 behind a host bridge, reached through
 * configuration mechanism #1 (PCI Local Bus spec 3.0, 3.2.2.3.2):
 * CONFIG_ADDRESS at 0xCF8 (dword accesses only) and CONFIG_DATA at
 * 0xCFC-0xCFF. There is no MMCONFIG (no MCFG table): 256 bytes of
 * configuration space per function, function 0 only.
 *
 * Memory BARs live in one MMIO window (the PCI hole below the IOAPIC),
 * registered on the I/O bus as a single range: an access is forwarded to the
 * device whose enabled BAR covers it, so a guest that moves a BAR needs no
 * change to the I/O bus. I/O BARs work the same in an I/O port window.
 * The machine pre-assigns every BAR inside the windows, as firmware would;
 * the ACPI DSDT (PNP0A03, vmm/acpi_dsdt.c) describes the same windows and
 * the INTx routing (_PRT).
 *
 * Layout and choices: docs/devices.md.
 */

#define PCI_CONFIG_ADDRESS   0xcf8
#define PCI_CONFIG_DATA      0xcfc
#define PCI_CFG_SIZE         256
#define PCI_MAX_SLOTS        32
#define PCI_NR_BARS          6

/* Windows the host bridge decodes (also in the DSDT's _CRS). */
#define PCI_MMIO_BASE        0xc0000000ULL
#define PCI_MMIO_END         0xfec00000ULL   /* exclusive: the IOAPIC follows */
#define PCI_IO_BASE          0x0d00
#define PCI_IO_END           0x10000         /* exclusive */

/* INTx: slot s, pin INTA, goes to GSI PCI_INTX_GSI_BASE + s % 8 (level, active low). */
#define PCI_INTX_GSI_BASE    16
#define PCI_INTX_NR_GSI      8

/* The host bridge at 00:00.0 (see docs/devices.md for the choice of IDs). */
#define PCI_HOST_VENDOR      0x1b36
#define PCI_HOST_DEVICE      0x0008

/* Configuration space offsets (type 0 header). */
#define PCI_VENDOR_ID        0x00
#define PCI_DEVICE_ID        0x02
#define PCI_COMMAND          0x04
#define PCI_STATUS           0x06
#define PCI_REVISION_ID      0x08
#define PCI_CLASS_PROG       0x09
#define PCI_CACHE_LINE_SIZE  0x0c
#define PCI_LATENCY_TIMER    0x0d
#define PCI_HEADER_TYPE      0x0e
#define PCI_BAR0             0x10
#define PCI_SUBSYSTEM_VENDOR 0x2c
#define PCI_SUBSYSTEM_ID     0x2e
#define PCI_ROM_ADDRESS      0x30
#define PCI_CAPABILITY_LIST  0x34
#define PCI_INTERRUPT_LINE   0x3c
#define PCI_INTERRUPT_PIN    0x3d
#define PCI_CAP_START        0x40

#define PCI_COMMAND_IO       (1u << 0)
#define PCI_COMMAND_MEMORY   (1u << 1)
#define PCI_COMMAND_MASTER   (1u << 2)
#define PCI_COMMAND_PARITY   (1u << 6)
#define PCI_COMMAND_SERR     (1u << 8)
#define PCI_COMMAND_INTX_DISABLE (1u << 10)
#define PCI_STATUS_INTERRUPT (1u << 3)
#define PCI_STATUS_CAP_LIST  (1u << 4)
/* Error bits, write one to clear. */
#define PCI_STATUS_W1C       0xf900u

#define PCI_CAP_ID_MSIX      0x11
#define PCI_CAP_ID_VNDR      0x09

/* BAR kinds. */
#define PCI_BAR_IO           0x1
#define PCI_BAR_MEM32        0x0
#define PCI_BAR_MEM64        0x4
#define PCI_BAR_PREFETCH     0x8

struct pci_bus;
struct pci_device;

struct pci_bar {
	uint64_t size;        /* 0: not implemented */
	uint64_t addr;        /* as programmed by the guest (or by us) */
	uint8_t kind;         /* PCI_BAR_IO, PCI_BAR_MEM32 or PCI_BAR_MEM64 | PREFETCH */
	io_read_fn read;      /* offset within the BAR */
	io_write_fn write;
	void *opaque;
};

/*
 * MSI-X (PCI 3.0, 6.8.2): the table and the PBA sit in one memory BAR of
 * their own. Messages become struct apic_msg on the machine's APIC bus.
 */
#define PCI_MSIX_MAX_VECTORS 128   /* table (16 B each) in the BAR's first 2 KiB */
#define PCI_MSIX_NO_VECTOR   0xffff

struct pci_msix {
	struct pci_device *dev;
	pthread_mutex_t lock;
	unsigned nr;          /* table size */
	uint8_t cap;          /* offset of the capability in config space */
	uint8_t bar;
	uint32_t pba_off;     /* within the BAR; the table is at 0 */
	uint32_t table[PCI_MSIX_MAX_VECTORS][4]; /* addr lo, addr hi, data, control */
	uint64_t pba[PCI_MSIX_MAX_VECTORS / 64];
	bool enabled;
	bool func_masked;
	uint64_t sent;        /* statistics: messages delivered */
	/*
	 * Called (without x->lock; maybe with the bus lock) after the guest
	 * wrote the table or the message control: a device whose queues are
	 * served on another node passes the new routes on.
	 */
	void (*changed)(void *ctx);
	void *changed_ctx;
};

/*
 * Hooks of a device model around config space accesses; both are called
 * with the bus lock held, so they must not call back into the bus's config
 * path (BAR handlers and the APIC bus are fine).
 */
struct pci_device_ops {
	/* Before a read of [off, off+len): may refresh d->cfg. */
	void (*cfg_read)(struct pci_device *d, unsigned off, unsigned len);
	/* After a write of [off, off+len) went into d->cfg through the write masks. */
	void (*cfg_write)(struct pci_device *d, unsigned off, unsigned len, uint32_t val);
};

struct pci_device {
	struct pci_bus *bus;
	const char *name;
	unsigned slot;                 /* set by pci_bus_add() */
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE];   /* bits the guest may write */
	uint8_t w1cmask[PCI_CFG_SIZE]; /* bits the guest clears by writing 1 */
	struct pci_bar bar[PCI_NR_BARS];
	uint8_t last_cap;              /* 0: no capability yet */
	uint8_t cap_end;               /* next free config offset */
	const struct pci_device_ops *ops;
	void *opaque;
	struct pci_msix *msix;
	unsigned gsi;                  /* INTx */
	/* INTx state, under the bus's irq_lock (not the bus lock). */
	bool intx;                     /* asserted by the device */
	bool intx_disabled;            /* command register bit 10 */
	bool intx_out;                 /* what reaches the wired-OR */
};

struct pci_bus {
	pthread_mutex_t lock;          /* config space, BARs, the slot table */
	uint32_t config_address;
	struct pci_device host;
	struct pci_device *slot[PCI_MAX_SLOTS];
	uint64_t mmio_next;            /* allocation cursors */
	uint32_t io_next;
	const struct irq_sink *irq;
	const struct apic_bus *apic;
	pthread_mutex_t irq_lock;      /* INTx: wired-OR per GSI */
	unsigned gsi_count[PCI_INTX_NR_GSI];
};

/* The host bridge in slot 0; INTx goes to irq, MSI messages to apic. */
void pci_bus_init(struct pci_bus *bus, const struct irq_sink *irq, const struct apic_bus *apic);
void pci_bus_destroy(struct pci_bus *bus);
/* Config ports and the two windows. Returns 0 or a negative errno. */
int pci_bus_register(struct pci_bus *bus, struct io_bus *io);

/* A device model fills its header with these before pci_bus_add(). */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id);
/*
 * Declares BAR n (n+1 too for a 64-bit BAR): size a power of two, at least
 * 16 bytes for memory (4 KiB recommended), 4 for I/O. Returns 0 or -EINVAL.
 */
int pci_device_set_bar(struct pci_device *d, unsigned n, uint64_t size, uint8_t kind,
		       io_read_fn read, io_write_fn write, void *opaque);
/*
 * Appends a capability of 'len' bytes (including its ID and next bytes) to
 * the list; returns its config offset, or -ENOSPC. The body is zero and
 * read-only until the caller sets d->cfg / d->wmask.
 */
int pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len);
/*
 * Puts the device in the first free slot (or 'slot' if non-zero), assigns
 * its BARs in the windows and its INTx line. Returns the slot, or a
 * negative errno (-ENOSPC: no slot or no room in a window).
 */
int pci_bus_add(struct pci_bus *bus, struct pci_device *d, unsigned slot);

/* INTx level from the device (ignored while the command register disables it). */
void pci_set_intx(struct pci_device *d, int level);
/* Whether the guest enabled bus mastering (takes the bus lock: not from a config hook). */
bool pci_bus_master(struct pci_device *d);

/* Little-endian accessors of config space. */
static inline void pci_cfg_set16(struct pci_device *d, unsigned off, uint16_t v)
{
	d->cfg[off] = (uint8_t)v;
	d->cfg[off + 1] = (uint8_t)(v >> 8);
}

static inline void pci_cfg_set32(struct pci_device *d, unsigned off, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		d->cfg[off + i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t pci_cfg_get16(const struct pci_device *d, unsigned off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}

static inline uint32_t pci_cfg_get32(const struct pci_device *d, unsigned off)
{
	return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
	       (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

/*
 * Accesses a BAR of the device as the guest would (for the virtio
 * PCI-configuration-access capability). Returns false if the BAR is absent
 * or the range is outside it.
 */
bool pci_bar_access(struct pci_device *d, unsigned bar, uint64_t off, unsigned len,
		    bool is_write, uint64_t *data);

/*
 * MSI-X with 'nr' vectors in BAR 'bar' (a 4 KiB 32-bit memory BAR: table at
 * 0, PBA at 2 KiB, so nr <= 128). Adds the capability and the BAR.
 * Returns 0 or a negative errno.
 */
int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nr, unsigned bar);
void pci_msix_destroy(struct pci_msix *x);
bool pci_msix_enabled(struct pci_msix *x);
/*
 * Signals vector v: delivers its message, or sets its pending bit while it
 * is masked. Returns false when MSI-X is disabled or v is out of range (the
 * caller then falls back to INTx).
 */
bool pci_msix_notify(struct pci_msix *x, unsigned v);

/*
 * An MSI message (address, data) as an APIC bus message (Intel SDM vol. 3,
 * 11.11). Returns false for an address outside 0xFEExxxxx or a delivery
 * mode a device cannot send (SMI, SIPI, ExtINT, reserved).
 */
bool pci_msi_to_apic(uint64_t addr, uint32_t data, struct apic_msg *msg);
/*
 * Vector v's message (address, data) into addr and data, and whether it may
 * be sent now: MSI-X enabled, function and entry unmasked. False with
 * zeros for a vector outside the table.
 */
bool pci_msix_route(struct pci_msix *x, unsigned v, uint64_t *addr, uint32_t *data);

#endif
