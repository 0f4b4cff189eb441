"""Boot Debian's stock cloud kernel under grappe (one node) in the lab."""
import pytest

from grappe_helpers import domain_xml, run_grappe


@pytest.mark.parametrize("vcpus,cells", [(1, 1), (2, 2), (4, 2)])
def test_smp_guest(tmp_path, kvm, guest_image, vcpus, cells):
    r = run_grappe(tmp_path, domain_xml(vcpus=vcpus, cells=cells, cmdline="grappe.test=smp"))
    lines = r.guest_lines()
    assert f"GRAPPE-GUEST: cpus={vcpus} nodes={cells}" in lines, r
    assert "GRAPPE-GUEST: smp PASS" in lines, r
    # The guest powered itself off: grappe run exits 0.
    assert r.rc == 0, r


def test_guest_panic_exits_nonzero(tmp_path, kvm, guest_image):
    r = run_grappe(tmp_path, domain_xml(vcpus=1, cmdline="grappe.test=panic"))
    assert r.rc == 1, r
    assert "panic" in r.err, r
    assert "Kernel panic" in r.out, r


def test_malformed_xml_exits_2(tmp_path):
    r = run_grappe(tmp_path, "<domain type='kvm'><name>x</name><memory>12")
    assert r.rc == 2, r
    assert "vm.xml:1" in r.err, r
