"""sblim wbemcli (Debian package sblim-wbemcli) against cimvirtd, over HTTP and HTTPS."""

import shutil
import subprocess

import pytest

from conftest import ADMIN

# Not skipped when missing: scripts/test installs it, and a silent skip would hide a gap.
assert shutil.which("wbemcli"), "wbemcli is missing: apt-get install sblim-wbemcli"


def wbemcli(server, scheme, command, *args, check=True):
    """`wbemcli COMMAND [options] URL [extra]`: the object path is the first argument not
    starting with '-' (options come before it), and anything after it follows the URL."""
    port = server.http_port if scheme == "http" else server.https_port
    args = list(args)
    at = next(i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or not args[i - 1].startswith("-")))
    options, path, extra = args[:at], args[at], args[at + 1:]
    cmd = ["wbemcli", command, *options]
    if scheme == "https":
        cmd += ["-cacert", server.cert]
    cmd.append(f"{scheme}://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{port}/{path}")
    cmd += extra
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr + r.stdout
    return r


@pytest.fixture(params=["http", "https"])
def scheme(request):
    return request.param


def test_class_commands(server, scheme):
    out = wbemcli(server, scheme, "ecn", "root/virt:CIM_System").stdout
    assert "root/virt:CIM_ComputerSystem" in out
    out = wbemcli(server, scheme, "ec", "root/virt:CIM_ComputerSystem").stdout
    assert "KVM_ComputerSystem" in out
    out = wbemcli(server, scheme, "gc", "root/virt:KVM_ComputerSystem").stdout
    assert "EnabledState=" in out and "UUID=" in out  # wbemcli prints properties only


def test_instance_commands(server, scheme, model):
    base = "root/virt:Test_Person"
    out = wbemcli(server, scheme, "ein", base).stdout
    assert 'Test_Person.Name="alice"' in out and 'Test_Employee.Name="bob"' in out
    out = wbemcli(server, scheme, "ei", base).stdout
    assert 'Company="acme"' in out and "Age=30" in out
    out = wbemcli(server, scheme, "gi", base + '.Name="alice"').stdout
    assert "Age=30" in out
    name = f"wb-{scheme}"
    wbemcli(server, scheme, "ci", f'{base}.Name="{name}"', f'Name="{name}",Age=7')
    assert "Age=7" in wbemcli(server, scheme, "gi", f'{base}.Name="{name}"').stdout
    wbemcli(server, scheme, "mi", f'{base}.Name="{name}"', "Age=8")
    assert "Age=8" in wbemcli(server, scheme, "gi", f'{base}.Name="{name}"').stdout
    wbemcli(server, scheme, "sp", f'{base}.Name="{name}"', "Age=9")
    assert "9" in wbemcli(server, scheme, "gp", f'{base}.Name="{name}"', "Age").stdout
    wbemcli(server, scheme, "di", f'{base}.Name="{name}"')
    r = wbemcli(server, scheme, "gi", f'{base}.Name="{name}"', check=False)
    assert r.returncode != 0 and "CIM_ERR_NOT_FOUND" in r.stderr + r.stdout


def test_association_commands(server, scheme, model):
    alice = 'root/virt:Test_Person.Name="alice"'
    out = wbemcli(server, scheme, "ain", alice).stdout
    assert 'Test_Employee.Name="bob"' in out and 'Test_Person.Name="carol"' in out
    out = wbemcli(server, scheme, "ai", alice).stdout
    assert 'Company="acme"' in out
    out = wbemcli(server, scheme, "rin", alice).stdout
    assert out.count("Test_Knows.") == 2
    out = wbemcli(server, scheme, "ri", alice).stdout
    assert "Since=2020" in out and "Since=2021" in out
    out = wbemcli(server, scheme, "ain", "-ac", "Test_Knows", "-arc", "Test_Employee", alice).stdout
    assert "bob" in out and "carol" not in out


def test_bad_password(server, scheme):
    port = server.http_port if scheme == "http" else server.https_port
    cmd = ["wbemcli", "ecn"] + (["-cacert", server.cert] if scheme == "https" else [])
    cmd.append(f"{scheme}://admin:wrong@127.0.0.1:{port}/root/virt")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "Invalid username/password" in r.stderr
