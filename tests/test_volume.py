"""The replicated cluster volume (issue #4, docs/volume.md), in the lab.

A <disk type='volume'> over one store per node, each chunk on two of them:
the guest's ext4 + blkcheck checks (guest-tools/init.sh, as in
test_disk.py) run on it; afterwards the host rebuilds the volume from the
store files with the documented layout and checks that every chunk's
replicas are byte-identical and that the guest's stamp is where it said.
A store is made to fail under the guest (device-mapper's error target) and
comes back: no I/O error reaches the guest, the resync completes while it
runs. Damaged metadata stops the start with a clear error and writes
nothing.

Guest RAM of the multi-node runs uses GRAPPE_RAM=shared (docs/cluster.md):
these tests are about the disk path, not memory coherence; the one marked
`dsm` keeps guest RAM on the DSM, as on real hosts, with the cluster's
command line.
"""
import json
import os
import re
import subprocess
import time

import pytest

from grappe_helpers import GRAPPE, Run, cluster_cmdline, write_xml
from test_disk import (DISK_MIB, SEED, SERIAL, disk_domain, sha256, splitmix64, FS_MIB,
                       STAMP_MIB, MASK, served_here)
import volume_layout

CHUNK = 256 << 10


@pytest.fixture(autouse=True)
def cluster_ram(request, monkeypatch):
    if "GRAPPE_RAM" not in os.environ and not request.node.get_closest_marker("dsm"):
        monkeypatch.setenv("GRAPPE_RAM", "shared")


def volume_xml(stores, replicas=2, size_mib=DISK_MIB, chunk=CHUNK):
    rows = "".join(f"<grappe:store node='{n}' path='{p}'/>" for n, p in stores)
    return (f"<grappe:volume xmlns:grappe='urn:grappe:cluster:1' name='data' "
            f"size='{size_mib}MiB' chunk='{chunk}' replicas='{replicas}'>{rows}</grappe:volume>")


def volume_disk(cache=None):
    c = f" cache='{cache}'" if cache else ""
    return (f"<disk type='volume' device='disk'><driver name='grappe' type='raw'{c}/>"
            "<source pool='grappe' volume='data'/><target dev='vda' bus='virtio'/>"
            f"<serial>{SERIAL}</serial></disk>")


def domain(nodes, stores, test, extra_cmd="", cache=None, vcpus=None):
    cmd = f"grappe.test={test} grappe.diskserial={SERIAL} grappe.diskseed={SEED} {extra_cmd}"
    cells = max(nodes, 1)
    xml = disk_domain(vcpus=vcpus or max(nodes, 2), cells=cells, nodes=nodes, mem_mib=256 * max(cells, 2),
                      cmdline=cmd, extra=volume_disk(cache))
    meta = volume_xml(stores)
    if nodes:
        return xml.replace("</grappe:cluster>", "</grappe:cluster>" + meta)
    return xml.replace("</domain>", f"<metadata>{meta}</metadata></domain>")


def run(tmp_path, xml, timeout=900):
    path = write_xml(tmp_path, xml)
    t0 = time.monotonic()
    p = subprocess.run([GRAPPE, "run", path], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return Run(p.returncode, p.stdout.decode(errors="replace"),
               p.stderr.decode(errors="replace"), time.monotonic() - t0)


def stamp_mismatch_in(image):
    """The blkcheck stamp in a rebuilt volume image (bytes), or None."""
    off = FS_MIB << 20
    first_word = off // 8
    data = image[off:off + (STAMP_MIB << 20)]
    for k in range(0, len(data) // 8):
        word = int.from_bytes(data[8 * k:8 * k + 8], "little")
        if word != splitmix64(SEED + first_word + k) & MASK:
            return f"byte {off + 8 * k}: 0x{word:016x}"
    return None


def check_replicas(paths):
    """Every chunk's replicas are identical; returns the volume's bytes."""
    vol = volume_layout.Volume(paths)
    diffs = vol.replica_differences()
    assert not diffs, f"replicas differ in chunks {diffs[:10]}"
    return vol.image()


@pytest.mark.parametrize("nodes", [2, 3])
def test_volume_cluster(tmp_path, kvm, guest_image, nodes):
    stores = [(n, os.path.join(str(tmp_path), f"store{n}.img")) for n in range(nodes)]
    r = run(tmp_path, domain(nodes, stores, "disk"))
    lines = r.guest_lines()
    assert "GRAPPE-GUEST: disk PASS" in lines, r
    assert r.rc == 0, r
    assert f"sectors={DISK_MIB * 2048}" in next(l for l in lines if "disk vda " in l), r
    # The stores were created, formatted, and hold what the guest wrote,
    # every chunk twice.
    image = check_replicas([p for _, p in stores])
    assert stamp_mismatch_in(image) is None, stamp_mismatch_in(image)
    # A new start finds the files (clean volume: no resync needed).
    r = run(tmp_path, domain(nodes, stores, "disk-verify"))
    assert "GRAPPE-GUEST: disk-verify PASS" in r.guest_lines(), r
    assert r.rc == 0, r
    assert "resync" not in r.err.lower() or "0 chunks" in r.err, r


@pytest.mark.dsm
def test_volume_queue_served_by_its_node(tmp_path, kvm, guest_image):
    """2 nodes x 2 vCPUs over a 2-store volume, guest RAM on the DSM;
    blkcheck pinned to CPU 3 (node 1): node 1 serves that CPU's queue itself
    (docs/cluster.md, "Disk queues"), the volume stays on the I/O node
    (docs/volume.md, "Queues on several nodes"). Every chunk's replicas
    agree afterwards and the stamp is where the guest wrote it."""
    stores = [(n, os.path.join(str(tmp_path), f"store{n}.img")) for n in range(2)]
    r = run(tmp_path, domain(2, stores, "disk", vcpus=4,
                             extra_cmd=f"grappe.diskcpu=3 {cluster_cmdline(4, 2)}"))
    assert "GRAPPE-GUEST: disk PASS" in r.guest_lines(), r
    assert r.rc == 0, r
    served = served_here(r, 1)
    assert served and served[0] >= 16 and served[1] > 0, r
    # Node 1 holds store 1, a copy of every chunk (R=2 over 2 stores): under
    # read leases its reads come from there (docs/volume.md, "Read leases").
    local = re.findall(r"grappe-node 1: .*read leases: (\d+) reads \(\d+ KiB\) from this "
                       r"node's store, (\d+) through the I/O node", r.err)
    node1 = "\n".join(ln for ln in r.err.splitlines() if ln.startswith("grappe-node 1"))
    assert local and int(local[0][0]) > 0, node1
    image = check_replicas([p for _, p in stores])
    assert stamp_mismatch_in(image) is None, stamp_mismatch_in(image)


def dm(*args):
    p = subprocess.run(["dmsetup", *args], capture_output=True, text=True)
    assert p.returncode == 0, f"dmsetup {' '.join(args)}: {p.stderr}"
    return p.stdout


class FlakyStore:
    """A block device (dm over a loop device) that can start failing every
    I/O (the error target) and be healed (linear again), like a disk that
    drops off and comes back."""

    def __init__(self, tmp_path, name, mib):
        self.file = os.path.join(str(tmp_path), f"{name}.img")
        with open(self.file, "wb") as f:
            f.truncate(mib << 20)
        self.loop = subprocess.run(["losetup", "--find", "--show", self.file],
                                   capture_output=True, text=True, check=True).stdout.strip()
        self.name = f"grappe-test-{os.getpid()}-{name}"
        self.sectors = (mib << 20) // 512
        dm("create", self.name, "--table", self.linear())
        # Without udev there is no /dev/mapper/NAME; devtmpfs has /dev/dm-MINOR.
        minor = dm("info", "-c", "--noheadings", "-o", "minor", self.name).strip()
        self.dev = f"/dev/dm-{minor}"

    def linear(self):
        return f"0 {self.sectors} linear {self.loop} 0"

    def swap(self, table):
        dm("suspend", "--noflush", self.name)
        dm("load", self.name, "--table", table)
        dm("resume", self.name)

    def fail(self):
        self.swap(f"0 {self.sectors} error")

    def heal(self):
        self.swap(self.linear())

    def close(self):
        subprocess.run(["dmsetup", "remove", "--force", self.name], capture_output=True)
        subprocess.run(["losetup", "--detach", self.loop], capture_output=True)


def stats(vm):
    p = subprocess.run([GRAPPE, "stats", "--json", vm], capture_output=True, text=True,
                       timeout=30)
    if p.returncode:
        return None
    for node in json.loads(p.stdout):
        for v in (node.get("stats") or {}).get("volumes", []):
            return v
    return None


def test_store_fails_and_returns(tmp_path, kvm, guest_image, monkeypatch):
    """Node 1's store fails while the guest writes: the guest sees no error
    and its checks pass (degraded, on node 0's replica); healed, the store
    is resynchronised while the guest runs, and both replicas are equal."""
    run_dir = os.path.join(str(tmp_path), "run")
    monkeypatch.setenv("GRAPPE_RUN_DIR", run_dir)
    # cache='none': the stores are opened O_DIRECT, so a failing device fails
    # the write that hits it rather than a later writeback (and the lab's
    # /tmp is tmpfs, which has no O_DIRECT: both stores are block devices).
    steady = FlakyStore(tmp_path, "store0", DISK_MIB + 16)
    flaky = FlakyStore(tmp_path, "store1", DISK_MIB + 16)
    try:
        stores = [(0, steady.dev), (1, flaky.dev)]
        xml = domain(2, stores, "disk", "grappe.nopoweroff=1", cache="none")
        path = write_xml(tmp_path, xml)
        vm = re.search(r"<name>([^<]+)</name>", xml).group(1)
        p = subprocess.Popen([GRAPPE, "run", path], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = b""
        os.set_blocking(p.stdout.fileno(), False)

        def wait_for(marker, seconds):
            nonlocal out
            t0 = time.monotonic()
            while marker not in out:
                assert time.monotonic() - t0 < seconds, out[-3000:]
                if p.poll() is not None:
                    pytest.fail(f"grappe exited ({p.returncode}) waiting for {marker}:\n"
                                f"{out[-3000:].decode(errors='replace')}\n"
                                f"{p.stderr.read().decode(errors='replace')[-3000:]}")
                chunk = p.stdout.read()
                if chunk:
                    out += chunk
                time.sleep(0.2)

        try:
            wait_for(b"GRAPPE-GUEST: disk mkfs", 600)
            flaky.fail()
            wait_for(b"GRAPPE-GUEST: disk random I/O", 600)
            s = stats(vm)
            assert s and s["degraded"], s
            assert s["stores"][1]["state"] == "failed", s
            wait_for(b"GRAPPE-GUEST: halt", 900)
            assert b"disk PASS" in out, out[-3000:]
            assert b"FAIL" not in out, out[-3000:]
            flaky.heal()
            t0 = time.monotonic()
            while True:
                s = stats(vm)
                if s and not s["degraded"] and s["chunks_stale"] == 0:
                    break
                assert time.monotonic() - t0 < 300, s
                time.sleep(1)
            assert s["stores"][1]["chunks_resynced"] > 0, s
            subprocess.run([GRAPPE, "qmp", f"{vm}:0", "system_powerdown"], timeout=30)
            _, err = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        err = err.decode(errors="replace")
        assert p.returncode == 0, err[-3000:]
        assert re.search(r"store 1 .*failed", err), err[-3000:]
        image = check_replicas([steady.dev, flaky.dev])
        assert stamp_mismatch_in(image) is None
    finally:
        flaky.close()
        steady.close()


def test_bad_metadata_is_refused(tmp_path, kvm, guest_image):
    """A damaged header or a truncated store: a clear error naming the store
    at start, and not one byte of any store written."""
    stores = [(0, os.path.join(str(tmp_path), f"s{i}.img")) for i in range(2)]
    r = run(tmp_path, domain(0, stores, "info"))
    assert r.rc == 0, r
    # Both copies of store 1's header block, damaged.
    with open(stores[1][1], "r+b") as f:
        for off in (100, 4096 + 100):
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0xFF]))
    before = [sha256(p) for _, p in stores]
    r = run(tmp_path, domain(0, stores, "info"), timeout=120)
    assert r.rc != 0, r
    assert re.search(r"volume data: store 1 .*(checksum|header)", r.err), r.err
    assert [sha256(p) for _, p in stores] == before
    # Store 0 cut short.
    os.truncate(stores[0][1], 512 << 10)
    before = [sha256(p) for _, p in stores]
    r = run(tmp_path, domain(0, stores, "info"), timeout=120)
    assert r.rc != 0, r
    assert re.search(r"volume data: store 0 .*(truncated|too small|bytes)", r.err), r.err
    assert [sha256(p) for _, p in stores] == before
