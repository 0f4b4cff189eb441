"""The node's control socket against a running guest, in the lab."""
import json
import os
import subprocess
import time

from grappe_helpers import GRAPPE, domain_xml, write_xml


def wait_for(p, marker, timeout):
    """Reads p's stdout until marker; returns what was read."""
    out = b""
    t0 = time.monotonic()
    os.set_blocking(p.stdout.fileno(), False)
    while marker.encode() not in out:
        assert time.monotonic() - t0 < timeout, out[-2000:]
        assert p.poll() is None, out[-2000:]
        chunk = p.stdout.read()
        if chunk:
            out += chunk
        time.sleep(0.2)
    return out


def qmp(name, cmd):
    r = subprocess.run([GRAPPE, "qmp", f"{name}:0", cmd], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["return"]


def test_status_stats_and_power_button(tmp_path, kvm, guest_image, monkeypatch):
    monkeypatch.setenv("GRAPPE_RUN_DIR", str(tmp_path / "run"))
    name = f"ctl{os.getpid()}"
    xml = domain_xml(name=name, vcpus=2, cmdline="grappe.test=info grappe.nopoweroff=1")
    p = subprocess.Popen([GRAPPE, "run", write_xml(tmp_path, xml)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(p, "GRAPPE-GUEST: halt", 600)
        st = qmp(name, "query-status")
        assert st["status"] == "running" and st["vm-name"] == name
        cpus = qmp(name, "query-cpus-fast")
        assert [c["cpu-index"] for c in cpus] == [0, 1]
        stats = qmp(name, "query-grappe-stats")
        assert sum(v["exits"] for v in stats["vcpus"]) > 0
        assert qmp(name, "stop") == {}
        assert qmp(name, "query-status")["status"] == "paused"
        assert qmp(name, "cont") == {}
        # The ACPI power button: the guest's acpid powers it off.
        assert qmp(name, "system_powerdown") == {}
        p.wait(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, p.stderr.read()
