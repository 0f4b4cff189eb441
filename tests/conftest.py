"""Shared pytest fixtures for grappe's system tests (see tests/lab_helpers.py).

Fixtures:
  kvm           /dev/kvm, checked to be a KVM that boots stock guests; the test
                FAILS (not skips) otherwise, with a hint to use ci/lab
  guest_image   (kernel, initrd) of the test guest; fails if not built
  results_dir   a per-test directory under $LAB_RESULTS for console logs
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab_helpers  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: too slow for make check in the lab; run by make soak")
    config.addinivalue_line(
        "markers", "dsm: a multi-node disk test whose guest RAM is kept by the DSM, not "
        "GRAPPE_RAM=shared")


def pytest_report_header(config):
    where = "inside the lab (ci/lab)" if lab_helpers.in_lab() else "on the host"
    kvm = lab_helpers.kvm_problem() or "usable"
    return [f"grappe: running {where}; /dev/kvm: {kvm}",
            f"grappe: results in {lab_helpers.RESULTS}"]


@pytest.fixture
def kvm():
    problem = lab_helpers.kvm_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return "/dev/kvm"


@pytest.fixture
def guest_image():
    problem = lab_helpers.guest_image_problem()
    if problem:
        pytest.fail(problem, pytrace=False)
    return lab_helpers.GUEST_KERNEL, lab_helpers.GUEST_INITRD


@pytest.fixture
def results_dir(request):
    return lab_helpers.results_dir(request.node.name)
