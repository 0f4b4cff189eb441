"""Helpers for system tests: paths, KVM checks, running a guest, parsing it.

System tests that boot a guest run inside the lab (ci/lab), where /dev/kvm
is real nested SVM; `make system-check` does
    ci/lab --timeout 1500 -- python3 -m pytest -q -x tests/
A missing or unusable /dev/kvm is a test failure with a message saying what
to do, never a skip: a suite that silently boots nothing proves nothing.
"""

import fcntl
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import bootlib  # noqa: E402  (the QEMU reference command and the output reader)

BUILD = REPO / "build"
GUEST_DIR = BUILD / "guest"
GUEST_KERNEL = bootlib.GUEST_KERNEL
GUEST_INITRD = bootlib.GUEST_INITRD
RESULTS = Path(os.environ.get("LAB_RESULTS", str(BUILD / "lab-results")))
GUEST_PREFIX = "GRAPPE-GUEST: "
KVM_GET_API_VERSION = 0xAE00       # _IO(KVMIO, 0x00); the API version is 12

qemu_kvm_cmd = bootlib.qemu_kvm_cmd


def in_lab():
    """True inside ci/lab (it sets GRAPPE_LAB=1)."""
    return os.environ.get("GRAPPE_LAB") == "1"


def kvm_problem(dev="/dev/kvm"):
    """None if dev is a KVM that boots stock guests, else what is wrong."""
    hint = ("run the system tests in the lab: ci/lab -- python3 -m pytest tests/ "
            "(make system-check)")
    if not os.path.exists(dev):
        return f"{dev} does not exist; {hint}"
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"cannot open {dev}: {e}; {hint}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return f"{dev} does not answer KVM_GET_API_VERSION: {e}"
    finally:
        os.close(fd)
    if version != 12:
        return f"{dev} reports KVM API version {version}, expected 12"
    # kvm-pvm (our development machines) answers the API but cannot boot a
    # stock kernel, and the CPU shows neither svm nor vmx: refuse it here
    # rather than hang in a guest that never prints anything.
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    if not re.search(r"\b(svm|vmx)\b", flags):
        return (f"{dev} is not hardware virtualisation (no svm/vmx in /proc/cpuinfo: "
                f"kvm-pvm?); stock guests do not boot on it; {hint}")
    return None


def guest_image_problem():
    """None if the test guest is built, else what to do."""
    missing = [str(p) for p in (GUEST_KERNEL, GUEST_INITRD) if not p.exists()]
    if missing:
        return f"missing {', '.join(missing)}: run ci/build-guest (make guest)"
    return None


def results_dir(name):
    """A directory for one test's logs, under $LAB_RESULTS (written back to the host)."""
    d = RESULTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class RunResult:
    returncode: object        # int, or None if it was killed
    output: str               # stdout+stderr, "\n" line ends
    elapsed: float            # seconds
    timed_out: bool
    marker_times: dict = field(default_factory=dict)

    def tail(self, n=60):
        return "\n".join(self.output.splitlines()[-n:])


def run_capture(cmd, timeout, markers=(), log_path=None, env=None, cwd=None):
    """Run cmd to its end (or kill it after timeout s), capturing the console."""
    rc, out, seen, timed_out, elapsed = bootlib.run_until(
        cmd, markers=markers, timeout=timeout, env=env, cwd=cwd, log_path=log_path)
    return RunResult(rc, out, elapsed, timed_out, seen)


@dataclass
class GuestReport:
    lines: list               # the GRAPPE-GUEST lines, prefix removed
    cpus: object = None       # from "cpus=N nodes=M"
    nodes: object = None
    results: dict = field(default_factory=dict)   # test name -> "PASS" / "FAIL ..."

    def saw(self, text):
        return text in self.lines


def parse_guest(output):
    """Pick the guest's own report out of a console log.

    Lines look like "GRAPPE-GUEST: cpus=2 nodes=2" or "GRAPPE-GUEST: smp PASS".
    Kernel messages can be interleaved on the same console, so the prefix is
    searched anywhere on a line.
    """
    rep = GuestReport(lines=[])
    for raw in output.splitlines():
        i = raw.find(GUEST_PREFIX)
        if i < 0:
            continue
        line = raw[i + len(GUEST_PREFIX):].strip()
        rep.lines.append(line)
        m = re.fullmatch(r"cpus=(\d+) nodes=(\d+)", line)
        if m:
            rep.cpus, rep.nodes = int(m.group(1)), int(m.group(2))
        m = re.fullmatch(r"(\w+) (PASS|FAIL)\b(.*)", line)
        if m and m.group(1) != "check":
            rep.results[m.group(1)] = (m.group(2) + m.group(3)).strip()
    return rep


def wait_for_text(path, text, timeout, proc=None):
    """Wait until the file at path contains text; False on timeout or if proc exits first."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if text in Path(path).read_text(errors="replace"):
                return True
        except FileNotFoundError:
            pass
        if proc is not None and proc.poll() is not None:
            return text in Path(path).read_text(errors="replace")
        time.sleep(0.1)
    return False


def qmp(sock_path, command, arguments=None, timeout=30):
    """Send one QMP command to a QEMU-style monitor socket and return its answer.

    Asynchronous events that arrive first are skipped. Works for any server
    that speaks QMP (QEMU, and grappe's control socket).
    """
    import json
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        f = s.makefile("rw")
        json.loads(f.readline())                       # the greeting
        for cmd in ({"execute": "qmp_capabilities"},
                    {"execute": command, **({"arguments": arguments} if arguments else {})}):
            f.write(json.dumps(cmd) + "\n")
            f.flush()
            while True:
                msg = json.loads(f.readline())
                if "event" not in msg:
                    break
        return msg
