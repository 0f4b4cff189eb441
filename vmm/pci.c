// SPDX-License-Identifier: MIT
/*
 * PCI bus 0: configuration mechanism #1, type 0 headers with BAR sizing,
 * capability lists, INTx through the machine's irq sink and MSI-X through
 * its APIC bus. See pci.h for the shape and docs/devices.md for the layout.
 *
 * Locks, always taken in this order: the bus lock (config space, BARs),
 * a device's own lock (e.g. the virtio transport), then the MSI-X lock or
 * the bus's irq_lock. Interrupt messages leave with no PCI lock held except
 * possibly the bus lock (from a config write that unmasks MSI-X), and the
 * APIC bus never calls back into PCI.
 */
#include <errno.h>
#include <string.h>

#include "vmm/pci.h"

#define CFG_ADDR_ENABLE   0x80000000u

#define MSIX_CTRL_ENABLE  (1u << 15)
#define MSIX_CTRL_MASKALL (1u << 14)
#define MSIX_CAP_LEN      12
#define MSIX_BAR_SIZE     4096u
#define MSIX_PBA_OFF      2048u
#define MSIX_ENTRY_MASKED 1u

/* ---- devices ---- */

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		     uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	d->name = name;
	pci_cfg_set16(d, PCI_VENDOR_ID, vendor);
	pci_cfg_set16(d, PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION_ID] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t)class_code;
	d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	d->cfg[PCI_HEADER_TYPE] = 0;
	pci_cfg_set16(d, PCI_SUBSYSTEM_VENDOR, subsys_vendor);
	pci_cfg_set16(d, PCI_SUBSYSTEM_ID, subsys_id);
	/* Command: I/O, memory, bus master, parity, SERR#, INTx disable. */
	d->wmask[PCI_COMMAND] = 0x47;
	d->wmask[PCI_COMMAND + 1] = 0x05;
	d->w1cmask[PCI_STATUS + 1] = PCI_STATUS_W1C >> 8;
	d->wmask[PCI_CACHE_LINE_SIZE] = 0xff;
	d->wmask[PCI_LATENCY_TIMER] = 0xff;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	d->cap_end = PCI_CAP_START;
}

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

int pci_device_set_bar(struct pci_device *d, unsigned n, uint64_t size, uint8_t kind,
		       io_read_fn read, io_write_fn write, void *opaque)
{
	bool is64 = !(kind & PCI_BAR_IO) && (kind & PCI_BAR_MEM64);

	if (n >= PCI_NR_BARS || (is64 && n + 1 >= PCI_NR_BARS) || !pow2(size))
		return -EINVAL;
	if (kind & PCI_BAR_IO ? (size < 4 || size > 256 || kind != PCI_BAR_IO)
			      : (size < 16 || (!is64 && size > (1ULL << 31))))
		return -EINVAL;
	if (d->bar[n].size || (is64 && d->bar[n + 1].size))
		return -EINVAL;
	d->bar[n] = (struct pci_bar){ .size = size, .kind = kind, .read = read,
				      .write = write, .opaque = opaque };
	pci_cfg_set32(d, PCI_BAR0 + 4 * n, kind);
	return 0;
}

int pci_device_add_cap(struct pci_device *d, uint8_t id, unsigned len)
{
	unsigned off = (d->cap_end + 3u) & ~3u;

	if (len < 2 || off + len > PCI_CFG_SIZE)
		return -ENOSPC;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	if (d->last_cap)
		d->cfg[d->last_cap + 1] = (uint8_t)off;
	else
		d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	d->last_cap = (uint8_t)off;
	d->cap_end = (uint8_t)(off + len > 0xff ? 0xff : off + len);
	return (int)off;
}

/* The address a BAR decodes, from its register(s). */
static uint64_t bar_addr(const struct pci_device *d, unsigned n)
{
	const struct pci_bar *b = &d->bar[n];
	uint64_t lo = pci_cfg_get32(d, PCI_BAR0 + 4 * n);

	if (b->kind & PCI_BAR_IO)
		return lo & ~3ULL;
	if (b->kind & PCI_BAR_MEM64)
		return (lo & ~0xfULL) | (uint64_t)pci_cfg_get32(d, PCI_BAR0 + 4 * (n + 1)) << 32;
	return lo & ~0xfULL;
}

/* Is BAR register n the upper half of a 64-bit BAR? */
static bool bar_is_upper(const struct pci_device *d, unsigned n)
{
	return n > 0 && d->bar[n - 1].size && !(d->bar[n - 1].kind & PCI_BAR_IO) &&
	       (d->bar[n - 1].kind & PCI_BAR_MEM64);
}

/*
 * A write to BAR register n. Writing all ones and reading back is how
 * software learns a BAR's size: the bits below the size read as zero, the
 * type bits are read-only.
 */
static void bar_write(struct pci_device *d, unsigned n, uint32_t val)
{
	unsigned reg = PCI_BAR0 + 4 * n;

	if (bar_is_upper(d, n)) {
		uint64_t mask = ~(d->bar[n - 1].size - 1);

		pci_cfg_set32(d, reg, val & (uint32_t)(mask >> 32));
		d->bar[n - 1].addr = bar_addr(d, n - 1);
		return;
	}
	if (!d->bar[n].size) {
		pci_cfg_set32(d, reg, 0);
		return;
	}
	if (d->bar[n].kind & PCI_BAR_IO)
		val = (val & ~(uint32_t)(d->bar[n].size - 1) & 0xfffcu) | PCI_BAR_IO;
	else
		val = (val & ~(uint32_t)(d->bar[n].size - 1) & ~0xfu) | d->bar[n].kind;
	pci_cfg_set32(d, reg, val);
	d->bar[n].addr = bar_addr(d, n);
}

/* ---- INTx: a wired-OR per GSI, since slots share the eight lines ---- */

static void intx_update_locked(struct pci_device *d)
{
	struct pci_bus *bus = d->bus;
	bool out = d->intx && !d->intx_disabled;
	unsigned line = d->gsi - PCI_INTX_GSI_BASE;

	if (out == d->intx_out || line >= PCI_INTX_NR_GSI)
		return;
	d->intx_out = out;
	if (out && bus->gsi_count[line]++ == 0)
		irq_set(bus->irq, d->gsi, 1);
	else if (!out && --bus->gsi_count[line] == 0)
		irq_set(bus->irq, d->gsi, 0);
}

void pci_set_intx(struct pci_device *d, int level)
{
	struct pci_bus *bus = d->bus;

	if (!bus)
		return;
	pthread_mutex_lock(&bus->irq_lock);
	d->intx = level;
	intx_update_locked(d);
	pthread_mutex_unlock(&bus->irq_lock);
}

bool pci_bus_master(struct pci_device *d)
{
	bool on;

	if (!d->bus)
		return false;
	pthread_mutex_lock(&d->bus->lock);
	on = d->cfg[PCI_COMMAND] & PCI_COMMAND_MASTER;
	pthread_mutex_unlock(&d->bus->lock);
	return on;
}

/* ---- MSI-X ---- */

bool pci_msi_to_apic(uint64_t addr, uint32_t data, struct apic_msg *msg)
{
	unsigned dm = (data >> 8) & 7;
	bool logical = addr & (1u << 2), rh = addr & (1u << 3);

	if ((addr >> 20) != 0xfee)
		return false;
	if (dm != APIC_DM_FIXED && dm != APIC_DM_LOWEST && dm != APIC_DM_NMI &&
	    dm != APIC_DM_INIT)
		return false;
	/* RH with logical addressing: the lowest-priority one of the set. */
	if (rh && logical && dm == APIC_DM_FIXED)
		dm = APIC_DM_LOWEST;
	*msg = (struct apic_msg){
		.vector = (uint8_t)data,
		.delivery = (uint8_t)dm,
		.dest_logical = logical,
		.level = 1,
		.trigger_level = (data >> 15) & 1,
		.shorthand = APIC_SH_NONE,
		.dest = (uint8_t)(addr >> 12),
		.source = 0xffff,
	};
	return true;
}

static bool entry_masked(const struct pci_msix *x, unsigned v)
{
	return x->table[v][3] & MSIX_ENTRY_MASKED;
}

static bool entry_msg(const struct pci_msix *x, unsigned v, struct apic_msg *msg)
{
	uint64_t addr = x->table[v][0] | (uint64_t)x->table[v][1] << 32;

	return pci_msi_to_apic(addr, x->table[v][2], msg);
}

struct msix_outbox {
	unsigned n;
	struct apic_msg msg[PCI_MSIX_MAX_VECTORS];
};

/* Pending vectors that can go now leave through the outbox. */
static void msix_flush_pending(struct pci_msix *x, struct msix_outbox *ob)
{
	if (!x->enabled || x->func_masked)
		return;
	for (unsigned v = 0; v < x->nr; v++) {
		uint64_t bit = 1ULL << (v % 64);

		if (!(x->pba[v / 64] & bit) || entry_masked(x, v))
			continue;
		x->pba[v / 64] &= ~bit;
		if (entry_msg(x, v, &ob->msg[ob->n]))
			ob->n++;
	}
}

static void msix_send(struct pci_msix *x, const struct msix_outbox *ob)
{
	const struct apic_bus *apic = x->dev->bus ? x->dev->bus->apic : NULL;

	for (unsigned i = 0; i < ob->n; i++) {
		apic_bus_deliver(apic, &ob->msg[i]);
		__atomic_fetch_add(&x->sent, 1, __ATOMIC_RELAXED);
	}
}

bool pci_msix_notify(struct pci_msix *x, unsigned v)
{
	struct apic_msg msg;
	bool send = false;

	pthread_mutex_lock(&x->lock);
	if (!x->enabled || v >= x->nr) {
		pthread_mutex_unlock(&x->lock);
		return false;
	}
	if (x->func_masked || entry_masked(x, v))
		x->pba[v / 64] |= 1ULL << (v % 64);
	else
		send = entry_msg(x, v, &msg);
	pthread_mutex_unlock(&x->lock);
	if (send) {
		apic_bus_deliver(x->dev->bus ? x->dev->bus->apic : NULL, &msg);
		__atomic_fetch_add(&x->sent, 1, __ATOMIC_RELAXED);
	}
	return true;
}

bool pci_msix_route(struct pci_msix *x, unsigned v, uint64_t *addr, uint32_t *data)
{
	bool ok;

	*addr = 0;
	*data = 0;
	pthread_mutex_lock(&x->lock);
	ok = v < x->nr;
	if (ok) {
		*addr = x->table[v][0] | (uint64_t)x->table[v][1] << 32;
		*data = x->table[v][2];
		ok = x->enabled && !x->func_masked && !entry_masked(x, v);
	}
	pthread_mutex_unlock(&x->lock);
	return ok;
}

static void msix_changed(struct pci_msix *x)
{
	if (x->changed)
		x->changed(x->changed_ctx);
}

bool pci_msix_enabled(struct pci_msix *x)
{
	bool e;

	pthread_mutex_lock(&x->lock);
	e = x->enabled;
	pthread_mutex_unlock(&x->lock);
	return e;
}

/* Table and PBA accesses: aligned dwords and qwords (PCI 3.0, 6.8.2). */
static void msix_bar_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	struct pci_msix *x = opaque;
	uint64_t v = 0;

	if ((len != 4 && len != 8) || (off & (len - 1)))
		return;
	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < len / 4; i++) {
		uint64_t o = off + 4 * i;
		uint32_t dw = 0;

		if (o < (uint64_t)x->nr * 16)
			dw = x->table[o / 16][(o % 16) / 4];
		else if (o >= x->pba_off && o - x->pba_off < (x->nr + 63) / 64 * 8)
			dw = (uint32_t)(x->pba[(o - x->pba_off) / 8] >> (32 * (((o - x->pba_off) / 4) & 1)));
		v |= (uint64_t)dw << (32 * i);
	}
	pthread_mutex_unlock(&x->lock);
	*data = v;
}

static void msix_bar_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	struct pci_msix *x = opaque;
	struct msix_outbox ob;

	if ((len != 4 && len != 8) || (off & (len - 1)))
		return;
	ob.n = 0;
	pthread_mutex_lock(&x->lock);
	for (unsigned i = 0; i < len / 4; i++) {
		uint64_t o = off + 4 * i;
		uint32_t dw = (uint32_t)(data >> (32 * i));

		if (o >= (uint64_t)x->nr * 16)
			continue;	/* the PBA is read-only */
		if ((o % 16) / 4 == 3)
			dw &= MSIX_ENTRY_MASKED;   /* other control bits are reserved */
		x->table[o / 16][(o % 16) / 4] = dw;
	}
	/* Unmasking an entry with its pending bit set sends the message now. */
	msix_flush_pending(x, &ob);
	pthread_mutex_unlock(&x->lock);
	msix_send(x, &ob);
	msix_changed(x);
}

/* Message control was written (bus lock held). */
static void msix_ctrl_written(struct pci_msix *x)
{
	uint16_t ctrl = pci_cfg_get16(x->dev, x->cap + 2);
	struct msix_outbox ob;

	ob.n = 0;
	pthread_mutex_lock(&x->lock);
	x->enabled = ctrl & MSIX_CTRL_ENABLE;
	x->func_masked = ctrl & MSIX_CTRL_MASKALL;
	msix_flush_pending(x, &ob);
	pthread_mutex_unlock(&x->lock);
	msix_send(x, &ob);
	msix_changed(x);
}

int pci_msix_init(struct pci_msix *x, struct pci_device *d, unsigned nr, unsigned bar)
{
	int cap, rc;

	if (!nr || nr > PCI_MSIX_MAX_VECTORS)
		return -EINVAL;
	memset(x, 0, sizeof(*x));
	x->dev = d;
	x->nr = nr;
	x->bar = (uint8_t)bar;
	x->pba_off = MSIX_PBA_OFF;
	for (unsigned v = 0; v < nr; v++)
		x->table[v][3] = MSIX_ENTRY_MASKED;
	rc = pci_device_set_bar(d, bar, MSIX_BAR_SIZE, PCI_BAR_MEM32, msix_bar_read,
				msix_bar_write, x);
	if (rc)
		return rc;
	cap = pci_device_add_cap(d, PCI_CAP_ID_MSIX, MSIX_CAP_LEN);
	if (cap < 0)
		return cap;
	x->cap = (uint8_t)cap;
	pci_cfg_set16(d, cap + 2, (uint16_t)(nr - 1));
	pci_cfg_set32(d, cap + 4, 0 | bar);
	pci_cfg_set32(d, cap + 8, MSIX_PBA_OFF | bar);
	d->wmask[cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL) >> 8;
	pthread_mutex_init(&x->lock, NULL);
	d->msix = x;
	return 0;
}

void pci_msix_destroy(struct pci_msix *x)
{
	if (x->dev)
		pthread_mutex_destroy(&x->lock);
	x->dev = NULL;
}

/* ---- config space ---- */

static bool touches(unsigned off, unsigned len, unsigned start, unsigned size)
{
	return off < start + size && start < off + len;
}

static uint32_t cfg_read(struct pci_device *d, unsigned off, unsigned len)
{
	uint32_t v = 0;
	bool intx;

	if (d->ops && d->ops->cfg_read)
		d->ops->cfg_read(d, off, len);
	/* Status bit 3 mirrors the device's INTx level. */
	pthread_mutex_lock(&d->bus->irq_lock);
	intx = d->intx;
	pthread_mutex_unlock(&d->bus->irq_lock);
	if (intx)
		d->cfg[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
	else
		d->cfg[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)d->cfg[off + i] << (8 * i);
	return v;
}

static void cfg_write(struct pci_device *d, unsigned off, unsigned len, uint32_t val)
{
	uint16_t old_cmd = pci_cfg_get16(d, PCI_COMMAND);

	for (unsigned i = 0; i < len; i++) {
		unsigned o = off + i;
		uint8_t b = (uint8_t)(val >> (8 * i));

		if (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * PCI_NR_BARS)
			continue;
		d->cfg[o] = (uint8_t)((d->cfg[o] & ~d->wmask[o]) | (b & d->wmask[o]));
		d->cfg[o] &= (uint8_t)~(b & d->w1cmask[o]);
	}
	/* BARs: whole registers, with the written bytes merged in. */
	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		unsigned reg = PCI_BAR0 + 4 * n;
		uint32_t cur;

		if (!touches(off, len, reg, 4))
			continue;
		cur = pci_cfg_get32(d, reg);
		for (unsigned i = 0; i < len; i++) {
			unsigned o = off + i;

			if (o >= reg && o < reg + 4) {
				cur &= ~(0xffu << (8 * (o - reg)));
				cur |= ((val >> (8 * i)) & 0xffu) << (8 * (o - reg));
			}
		}
		bar_write(d, n, cur);
	}
	if (touches(off, len, PCI_COMMAND, 2) &&
	    ((old_cmd ^ pci_cfg_get16(d, PCI_COMMAND)) & PCI_COMMAND_INTX_DISABLE)) {
		pthread_mutex_lock(&d->bus->irq_lock);
		d->intx_disabled = pci_cfg_get16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;
		intx_update_locked(d);
		pthread_mutex_unlock(&d->bus->irq_lock);
	}
	if (d->msix && touches(off, len, d->msix->cap + 2, 2))
		msix_ctrl_written(d->msix);
	if (d->ops && d->ops->cfg_write)
		d->ops->cfg_write(d, off, len, val);
}

/* The device CONFIG_ADDRESS selects, and the register offset; NULL if none. */
static struct pci_device *selected(struct pci_bus *bus, unsigned port_off, unsigned *reg)
{
	uint32_t a = bus->config_address;
	unsigned busnr = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	/* Bits 27:24 (AMD's extended register number) select offsets >= 256. */
	if (!(a & CFG_ADDR_ENABLE) || busnr || fn || (a & 0x0f000000u))
		return NULL;
	*reg = (a & 0xfc) + port_off;
	return bus->slot[slot];
}

static void config_address_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	struct pci_bus *bus = opaque;

	/* Only a dword access is CONFIG_ADDRESS; 0xCF9 belongs to the reset register. */
	if (len != 4)
		return;
	pthread_mutex_lock(&bus->lock);
	*data = bus->config_address;
	pthread_mutex_unlock(&bus->lock);
}

static void config_address_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	struct pci_bus *bus = opaque;

	if (len != 4)
		return;
	pthread_mutex_lock(&bus->lock);
	bus->config_address = (uint32_t)data & 0x8ffffffcu;
	pthread_mutex_unlock(&bus->lock);
}

static void config_data_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	struct pci_bus *bus = opaque;
	struct pci_device *d;
	unsigned reg;

	pthread_mutex_lock(&bus->lock);
	d = selected(bus, (unsigned)off, &reg);
	if (d && reg + len <= PCI_CFG_SIZE)
		*data = cfg_read(d, reg, len);
	pthread_mutex_unlock(&bus->lock);
}

static void config_data_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	struct pci_bus *bus = opaque;
	struct pci_device *d;
	unsigned reg;

	pthread_mutex_lock(&bus->lock);
	d = selected(bus, (unsigned)off, &reg);
	if (d && reg + len <= PCI_CFG_SIZE)
		cfg_write(d, reg, len, (uint32_t)data);
	pthread_mutex_unlock(&bus->lock);
}

/* ---- windows: forward to the BAR that decodes the address ---- */

struct bar_hit {
	io_read_fn read;
	io_write_fn write;
	void *opaque;
	uint64_t off;
};

static bool find_bar(struct pci_bus *bus, bool io, uint64_t addr, struct bar_hit *hit)
{
	bool found = false;

	pthread_mutex_lock(&bus->lock);
	for (unsigned s = 0; s < PCI_MAX_SLOTS && !found; s++) {
		struct pci_device *d = bus->slot[s];
		uint16_t cmd;

		if (!d)
			continue;
		cmd = pci_cfg_get16(d, PCI_COMMAND);
		if (!(cmd & (io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)))
			continue;
		for (unsigned n = 0; n < PCI_NR_BARS; n++) {
			struct pci_bar *b = &d->bar[n];

			if (!b->size || !(b->kind & PCI_BAR_IO) != !io || bar_is_upper(d, n))
				continue;
			if (addr >= b->addr && addr - b->addr < b->size) {
				*hit = (struct bar_hit){ b->read, b->write, b->opaque, addr - b->addr };
				found = true;
				break;
			}
		}
	}
	pthread_mutex_unlock(&bus->lock);
	return found;
}

static void window_read(struct pci_bus *bus, bool io, uint64_t addr, unsigned len, uint64_t *data)
{
	struct bar_hit h;

	if (find_bar(bus, io, addr, &h) && h.read)
		h.read(h.opaque, h.off, len, data);
}

static void window_write(struct pci_bus *bus, bool io, uint64_t addr, unsigned len, uint64_t data)
{
	struct bar_hit h;

	if (find_bar(bus, io, addr, &h) && h.write)
		h.write(h.opaque, h.off, len, data);
}

static void mmio_window_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	window_read(opaque, false, PCI_MMIO_BASE + off, len, data);
}

static void mmio_window_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	window_write(opaque, false, PCI_MMIO_BASE + off, len, data);
}

static void io_window_read(void *opaque, uint64_t off, unsigned len, uint64_t *data)
{
	window_read(opaque, true, PCI_IO_BASE + off, len, data);
}

static void io_window_write(void *opaque, uint64_t off, unsigned len, uint64_t data)
{
	window_write(opaque, true, PCI_IO_BASE + off, len, data);
}

bool pci_bar_access(struct pci_device *d, unsigned bar, uint64_t off, unsigned len,
		    bool is_write, uint64_t *data)
{
	struct pci_bar *b;

	if (bar >= PCI_NR_BARS || bar_is_upper(d, bar))
		return false;
	b = &d->bar[bar];
	if (!b->size || off >= b->size || len > b->size - off)
		return false;
	if (is_write) {
		if (b->write)
			b->write(b->opaque, off, len, *data);
	} else {
		*data = ~0ULL;
		if (b->read)
			b->read(b->opaque, off, len, data);
		if (len < 8)
			*data &= (1ULL << (8 * len)) - 1;
	}
	return true;
}

/* ---- the bus ---- */

void pci_bus_init(struct pci_bus *bus, const struct irq_sink *irq, const struct apic_bus *apic)
{
	memset(bus, 0, sizeof(*bus));
	pthread_mutex_init(&bus->lock, NULL);
	pthread_mutex_init(&bus->irq_lock, NULL);
	bus->irq = irq;
	bus->apic = apic;
	bus->mmio_next = PCI_MMIO_BASE;
	bus->io_next = 0x1000;   /* 0xd00-0xfff stays free for legacy-minded guests */
	/* Class 06/00/00: host bridge, which is also what Linux's probe of mechanism #1 looks for. */
	pci_device_init(&bus->host, "host-bridge", PCI_HOST_VENDOR, PCI_HOST_DEVICE, 0x060000, 0,
			PCI_HOST_VENDOR, 0);
	bus->host.wmask[PCI_INTERRUPT_LINE] = 0;
	bus->host.bus = bus;
	bus->slot[0] = &bus->host;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	pthread_mutex_destroy(&bus->irq_lock);
	pthread_mutex_destroy(&bus->lock);
}

int pci_bus_register(struct pci_bus *bus, struct io_bus *io)
{
	const struct io_range r[] = {
		{ IO_SPACE_PIO, PCI_CONFIG_ADDRESS, 1, config_address_read, config_address_write,
		  bus, "pci-config-address" },
		{ IO_SPACE_PIO, PCI_CONFIG_DATA, 4, config_data_read, config_data_write, bus,
		  "pci-config-data" },
		{ IO_SPACE_MMIO, PCI_MMIO_BASE, PCI_MMIO_END - PCI_MMIO_BASE, mmio_window_read,
		  mmio_window_write, bus, "pci-mmio-window" },
		{ IO_SPACE_PIO, PCI_IO_BASE, PCI_IO_END - PCI_IO_BASE, io_window_read,
		  io_window_write, bus, "pci-io-window" },
	};

	for (unsigned i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		int rc = io_bus_register(io, &r[i]);

		if (rc)
			return rc;
	}
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int pci_bus_add(struct pci_bus *bus, struct pci_device *d, unsigned slot)
{
	uint64_t mmio;
	uint32_t io;
	uint16_t cmd = 0;

	pthread_mutex_lock(&bus->lock);
	if (!slot)
		for (slot = 1; slot < PCI_MAX_SLOTS && bus->slot[slot]; slot++)
			;
	if (slot >= PCI_MAX_SLOTS || bus->slot[slot]) {
		pthread_mutex_unlock(&bus->lock);
		return -ENOSPC;
	}
	/* Naturally aligned BARs, as firmware would assign them. */
	mmio = bus->mmio_next;
	io = bus->io_next;
	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		struct pci_bar *b = &d->bar[n];

		if (!b->size || bar_is_upper(d, n))
			continue;
		if (b->kind & PCI_BAR_IO) {
			uint64_t at = align_up(io, b->size);

			if (at + b->size > PCI_IO_END)
				goto full;
			b->addr = at;
			io = (uint32_t)(at + b->size);
			cmd |= PCI_COMMAND_IO;
		} else {
			uint64_t at = align_up(mmio, b->size);

			if (at + b->size > PCI_MMIO_END)
				goto full;
			b->addr = at;
			mmio = at + b->size;
			cmd |= PCI_COMMAND_MEMORY;
		}
	}
	for (unsigned n = 0; n < PCI_NR_BARS; n++) {
		struct pci_bar *b = &d->bar[n];

		if (!b->size || bar_is_upper(d, n))
			continue;
		pci_cfg_set32(d, PCI_BAR0 + 4 * n, (uint32_t)b->addr | b->kind);
		if (!(b->kind & PCI_BAR_IO) && (b->kind & PCI_BAR_MEM64))
			pci_cfg_set32(d, PCI_BAR0 + 4 * (n + 1), (uint32_t)(b->addr >> 32));
	}
	bus->mmio_next = mmio;
	bus->io_next = io;
	d->bus = bus;
	d->slot = slot;
	d->gsi = PCI_INTX_GSI_BASE + slot % PCI_INTX_NR_GSI;
	d->cfg[PCI_INTERRUPT_PIN] = 1;            /* INTA# */
	d->cfg[PCI_INTERRUPT_LINE] = (uint8_t)d->gsi;
	/* Decoding on, as firmware leaves it; the guest may turn it off and on. */
	pci_cfg_set16(d, PCI_COMMAND, cmd);
	bus->slot[slot] = d;
	pthread_mutex_unlock(&bus->lock);
	return (int)slot;
full:
	pthread_mutex_unlock(&bus->lock);
	return -ENOSPC;
}
