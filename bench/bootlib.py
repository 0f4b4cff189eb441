"""Boot timing helpers shared by benchmarks and system tests.

The test guest (ci/build-guest) prints "GRAPPE-GUEST: init" as the first
thing its /init does, so "time from process start to that line" is the time
to boot a stock kernel to user space, for QEMU/KVM and for grappe alike.

    from bootlib import time_to_marker, qemu_kvm_cmd
    secs, output = time_to_marker(qemu_kvm_cmd(vcpus=2, mem_mib=512), timeout=120)

Nothing here depends on pytest; tests/lab_helpers.py builds on it.
"""

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST_KERNEL = REPO / "build" / "guest" / "vmlinuz"
GUEST_INITRD = REPO / "build" / "guest" / "initramfs.gz"
INIT_MARKER = "GRAPPE-GUEST: init"


class BootTimeout(Exception):
    """The marker did not appear in time. .output holds what was printed."""

    def __init__(self, msg, output=""):
        super().__init__(msg)
        self.output = output


def qemu_kvm_cmd(vcpus=2, mem_mib=512, numa_nodes=1, test="info", append="", quiet=True,
                 kernel=GUEST_KERNEL, initrd=GUEST_INITRD, qemu="qemu-system-x86_64"):
    """The QEMU/KVM reference command for the test guest.

    numa_nodes > 1 splits vCPUs (contiguous blocks) and RAM evenly into that
    many NUMA nodes (ACPI SRAT), like grappe's cells. panic=-1 + -no-reboot
    make a guest panic end QEMU instead of hanging.

    quiet: a 16550 byte costs a few I/O exits, and in the lab (nested KVM
    under TCG) the kernel's ~40 KB boot log alone takes over 10 s; "quiet"
    keeps errors and panics. No VGA and no NIC: grappe's guest has neither,
    and the reference should not do extra work.
    """
    if numa_nodes < 1 or numa_nodes > vcpus:
        raise ValueError("need 1 <= numa_nodes <= vcpus")
    if mem_mib % numa_nodes:
        raise ValueError("mem_mib must divide evenly among numa_nodes")
    cmdline = f"console=ttyS0 grappe.test={test} panic=-1"
    if quiet:
        cmdline += " quiet"
    if append:
        cmdline += " " + append
    cmd = [qemu, "-enable-kvm", "-cpu", "host",
           "-smp", str(vcpus), "-m", str(mem_mib),
           "-nographic", "-no-reboot", "-vga", "none", "-nic", "none",
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", cmdline]
    if numa_nodes > 1:
        per_node = mem_mib // numa_nodes
        for n in range(numa_nodes):
            first = n * vcpus // numa_nodes
            last = (n + 1) * vcpus // numa_nodes - 1
            cmd += ["-object", f"memory-backend-ram,id=ram{n},size={per_node}M",
                    "-numa", f"node,nodeid={n},cpus={first}-{last},memdev=ram{n}"]
    return cmd


def _kill(proc):
    """Kill the process and everything it started (its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run_until(cmd, markers=(), timeout=60.0, stop_at_marker=False, env=None,
              cwd=None, log_path=None):
    """Run cmd, collect its stdout+stderr, note when each marker line shows up.

    Returns (returncode, output, marker_times, timed_out, elapsed) where
    marker_times maps each marker seen to seconds since the process started.
    If stop_at_marker, the process is killed once every marker was seen
    (returncode is then None). On timeout the process is killed and
    timed_out is True. Serial-console "\\r\\n" line ends become "\\n".
    """
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = bytearray()
    scanned = 0                      # buf[:scanned] holds complete lines already checked
    seen = {}
    timed_out = False
    stopped = False
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                timed_out = True
                break
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break                # EOF: the process closed its output
            now = time.monotonic() - start
            buf += chunk
            end = buf.rfind(b"\n") + 1
            if end > scanned:
                for line in bytes(buf[scanned:end]).decode(errors="replace").splitlines():
                    # Anywhere on the line: firmware escape sequences
                    # (SeaBIOS clears the screen) may precede it.
                    for m in markers:
                        if m not in seen and m in line:
                            seen[m] = now
                scanned = end
            if stop_at_marker and markers and len(seen) == len(markers):
                stopped = True
                break
    finally:
        sel.close()
        if timed_out or stopped:
            _kill(proc)
        else:
            try:
                proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill(proc)
        proc.stdout.close()
    elapsed = time.monotonic() - start
    output = bytes(buf).decode(errors="replace").replace("\r\n", "\n").replace("\r", "")
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text(output)
    rc = None if stopped else proc.returncode
    return rc, output, seen, timed_out, elapsed


def time_to_marker(cmd, marker=INIT_MARKER, timeout=120.0, kill=True, **kw):
    """Seconds from starting cmd to the first output line containing marker.

    The process is killed afterwards when kill is True (the default: a boot
    benchmark needs nothing more), else it runs to its end and is waited for.
    Raises BootTimeout (with the output so far) if the marker did not appear
    within timeout seconds; the process is killed then too.
    """
    rc, output, seen, timed_out, _ = run_until(cmd, markers=(marker,), timeout=timeout,
                                               stop_at_marker=kill, **kw)
    if marker not in seen:
        why = f"timed out after {timeout}s" if timed_out else f"process exited with {rc} first"
        raise BootTimeout(f"{cmd[0]}: no '{marker}' line: {why}", output)
    return seen[marker], output
