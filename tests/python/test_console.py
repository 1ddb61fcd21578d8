"""The VMs' serial consoles over the network (DSP1024): found through CIM with pywbem alone,
used with a real WebSocket client (the `websockets` package) over ws:// and wss://, and
with `cimvirtd console` in a pseudo-terminal."""

import asyncio
import base64
import os
import ssl
import sys
import time
from pathlib import Path

import pexpect
import pytest
import pywbem
import websockets
import websockets.exceptions
from pywbem import CIMInstance, Uint16, Uint64

from conftest import ADMIN, BINARY, READER, REPO, Server
from test_virt import change, define, service, wait_console

if not os.path.exists("/dev/kvm"):
    if os.environ.get("CI"):
        raise RuntimeError("/dev/kvm is missing on a CI machine")
    pytest.skip("NOT RUN: this host has no /dev/kvm", allow_module_level=True)

BANNER = b"cimvirt test guest: 1 vCPUs online\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("console"))
    yield s
    # VMs outlive their server by design: these are destroyed first.
    conn = s.conn()
    for system in conn.EnumerateInstanceNames("KVM_ComputerSystem"):
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
    code, log = s.stop()
    assert code == 0, log
    assert "panicked" not in log, log


def start_vm(conn, name):
    rv, out = define(conn, name, vcpus=1)
    assert rv == 0
    system = out["ResultingSystem"]
    assert change(conn, system, 2) == 0
    return system


def console_urls(conn, system):
    """The URLs of a VM's console, found as a client would: VM -> its text redirection SAP
    -> the remote access points available to it."""
    (sap,) = conn.AssociatorNames(system, AssocClass="CIM_SAPAvailableForElement",
                                  ResultClass="CIM_TextRedirectionSAP")
    points = conn.Associators(sap, AssocClass="CIM_RemoteAccessAvailableToElement",
                              ResultClass="CIM_RemoteServiceAccessPoint")
    assert all(p["InfoFormat"] == 200 for p in points)
    return sap, {p["AccessInfo"].split(":", 1)[0]: p["AccessInfo"] for p in points}


def auth(creds):
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def connect(srv, url, creds=ADMIN):
    context = None
    if url.startswith("wss:"):
        context = ssl.create_default_context(cafile=srv.cert)
    return websockets.connect(url, additional_headers=auth(creds), ssl=context,
                              max_size=None, open_timeout=10)


async def read_until(ws, wanted, timeout=20):
    """Binary output until `wanted` shows up; the text notices seen meanwhile."""
    data, notices = b"", []
    deadline = time.monotonic() + timeout
    while wanted not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{wanted!r} not seen; got {data[-500:]!r} and {notices}"
        message = await asyncio.wait_for(ws.recv(), left)
        if isinstance(message, bytes):
            data += message
        else:
            notices.append(message)
    return data, notices


async def read_notice(ws, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
        if isinstance(message, str):
            return message


def test_the_console_is_found_through_cim_and_used_over_ws_and_wss(srv):
    conn = srv.conn()
    system = start_vm(conn, "con-a")
    sap, urls = console_urls(conn, system)
    assert set(urls) == {"ws", "wss"}
    assert urls["ws"] == f"ws://127.0.0.1:{srv.http_port}/console/con-a"
    assert urls["wss"] == f"wss://127.0.0.1:{srv.https_port}/console/con-a"
    # Enumerating CIM_RemoteServiceAccessPoint finds them as well.
    everywhere = {p["AccessInfo"] for p in conn.EnumerateInstances("CIM_RemoteServiceAccessPoint")}
    assert set(urls.values()) <= everywhere
    assert conn.GetInstance(sap)["EnabledState"] == 6  # enabled, nobody connected
    (service_path,) = conn.AssociatorNames(sap, AssocClass="CIM_ServiceAccessBySAP")
    assert service_path.classname == "KVM_TextRedirectionService"
    assert conn.GetInstance(service_path)["RedirectionServiceType"] == [2]

    async def use(url):
        async with connect(srv, url) as ws:
            # The screen it joins: what the guest printed before.
            await read_until(ws, BANNER)
            assert conn.GetInstance(sap)["EnabledState"] == 2
            # A byte that is no command is echoed; 'f' fills memory and says so.
            await ws.send(b"XYZ")
            await read_until(ws, b"XYZ")
            await ws.send(b"f")
            await read_until(ws, b"cimvirt test guest: filled")
            # A reset: the banner again, on the same session.
            assert change(conn, system, 11) == 0
            await read_until(ws, b"cimvirt test guest: 1 vCPUs, 64 MiB\n" + BANNER)

    asyncio.run(use(urls["ws"]))
    asyncio.run(use(urls["wss"]))
    deadline = time.monotonic() + 5
    while conn.GetInstance(sap)["EnabledState"] != 6:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_watchers_cannot_type_and_strangers_are_refused_before_the_upgrade(srv):
    conn = srv.conn()
    system = start_vm(conn, "con-b")
    _, urls = console_urls(conn, system)

    async def scenario():
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(srv, urls["ws"], creds=("admin", "wrong-password")):
                pass
        assert refused.value.response.status_code == 401
        async with connect(srv, urls["ws"], creds=READER) as watcher, \
                connect(srv, urls["wss"]) as writer, \
                connect(srv, urls["ws"]) as second:
            for ws in (watcher, writer, second):
                await read_until(ws, BANNER)
            # The second writer is told who holds input; the watcher that it may only watch.
            told = await read_notice(second)
            assert "admin" in told and "holds" in told, told
            await watcher.send(b"Q")
            assert "may only watch" in await read_notice(watcher)
            await second.send(b"Q")
            assert "holds the console's input" in await read_notice(second)
            # Every client sees what the one who holds input typed.
            await writer.send(b"HELLO")
            for ws in (watcher, writer, second):
                await read_until(ws, b"HELLO")
            # When the writer leaves, input passes to the second.
            await writer.close()
            assert "now holds the console's input" in await read_notice(second)
            await second.send(b"WORLD")
            await read_until(watcher, b"WORLD")
        # Nothing the watcher or the waiting writer typed reached the guest.
        assert "Q" not in wait_console(srv, "con-b", "WORLD")

    asyncio.run(scenario())


def test_the_console_follows_pause_resume_save_restore_and_snapshots_and_can_be_disabled(srv):
    conn = srv.conn()
    system = start_vm(conn, "con-c")
    sap, urls = console_urls(conn, system)

    async def scenario():
        async with connect(srv, urls["ws"]) as ws:
            await read_until(ws, BANNER)
            assert change(conn, system, 9) == 0  # pause
            assert change(conn, system, 2) == 0  # resume
            await ws.send(b"PAUSED-AND-BACK")
            await read_until(ws, b"PAUSED-AND-BACK")
            assert change(conn, system, 6) == 0  # save to disk: the process ends
            await ws.send(b"LOST")
            assert "nothing reads its console" in await read_notice(ws)
            assert change(conn, system, 2) == 0  # restore in a new process
            await ws.send(b"RESTORED")
            await read_until(ws, b"RESTORED")
            # A snapshot taken and applied (the VM comes back in a new process again).
            (snapshots,) = conn.EnumerateInstanceNames("KVM_VirtualSystemSnapshotService")
            rv, out = conn.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system,
                                        SnapshotType=Uint16(2))
            assert rv == 0
            await ws.send(b"SNAPPED")
            await read_until(ws, b"SNAPPED")
            assert conn.InvokeMethod("ApplySnapshot", snapshots,
                                     Snapshot=out["ResultingSnapshot"])[0] == 0
            await ws.send(b"APPLIED")
            await read_until(ws, b"APPLIED")
            # Disabling the console closes its sessions with the reason, and refuses new ones.
            rv, _ = conn.InvokeMethod("RequestStateChange", sap, RequestedState=Uint16(3))
            assert rv == 0
            assert "disabled" in await read_notice(ws)
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert "disabled" in ws.close_reason
        assert conn.GetInstance(sap)["EnabledState"] == 3
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(srv, urls["ws"]):
                pass
        assert refused.value.response.status_code == 409
        rv, _ = conn.InvokeMethod("RequestStateChange", sap, RequestedState=Uint16(2))
        assert rv == 0
        async with connect(srv, urls["ws"]) as ws:
            await read_until(ws, b"RESTORED")

    asyncio.run(scenario())
    # A watcher (read-only) may not change the console's state.
    with pytest.raises(pywbem.CIMError) as denied:
        srv.conn(creds=READER).InvokeMethod("RequestStateChange", sap, RequestedState=Uint16(3))
    assert denied.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED


def test_destroying_a_vm_closes_its_console_and_unknown_vms_are_not_found(srv):
    conn = srv.conn()
    system = start_vm(conn, "con-d")
    _, urls = console_urls(conn, system)

    async def scenario():
        async with connect(srv, urls["ws"]) as ws:
            await read_until(ws, BANNER)
            rv, _ = conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
            assert rv == 0
            assert "destroyed" in await read_notice(ws)
            await asyncio.wait_for(ws.wait_closed(), 10)
        with pytest.raises(websockets.exceptions.InvalidStatus) as missing:
            async with connect(srv, urls["ws"]):
                pass
        assert missing.value.response.status_code == 404

    asyncio.run(scenario())


def test_the_console_rasd_is_shown_accepted_and_what_it_cannot_do_refused(srv):
    conn = srv.conn()
    console = CIMInstance("KVM_ConsoleResourceAllocationSettingData",
                          properties={"ResourceType": Uint16(32769), "SourceType": Uint16(2),
                                      "TargetType": "serial"})
    vssd = CIMInstance("KVM_VirtualSystemSettingData",
                       properties={"VirtualSystemIdentifier": "con-e"})
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(32),
                                  "AllocationUnits": "byte*2^20"})
    rv, out = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                ResourceSettings=[mem, console])
    assert rv == 0
    shown = [r for r in conn.EnumerateInstances("KVM_ConsoleResourceAllocationSettingData")
             if r["InstanceID"] == "con-e/charconsole:0"]
    assert shown and shown[0]["ResourceType"] == 32769 and shown[0]["TargetType"] == "serial"
    settings = pywbem.CIMInstanceName("KVM_VirtualSystemSettingData",
                                      {"InstanceID": "KVM:con-e"}, namespace="root/virt")
    assert "KVM_ConsoleResourceAllocationSettingData" in {
        p.classname for p in conn.AssociatorNames(settings,
                                                  AssocClass="KVM_VirtualSystemSettingDataComponent")}
    rv, out = conn.InvokeMethod("AddResourceSettings", service(conn),
                                AffectedConfiguration=settings, ResourceSettings=[console])
    assert rv == 0 and out["ResultingResourceSettings"][0]["InstanceID"] == "con-e/charconsole:0"
    telnet = console.copy()
    telnet["SourceType"] = Uint16(8)
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("AddResourceSettings", service(conn),
                          AffectedConfiguration=settings, ResourceSettings=[telnet])
    assert refused.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
    assert "SourceType 8" in refused.value.status_description
    with pytest.raises(pywbem.CIMError) as kept:
        conn.InvokeMethod("RemoveResourceSettings", service(conn),
                          ResourceSettings=[shown[0].path])
    assert kept.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED


def test_the_profile_is_registered_with_the_console_service(srv):
    interop = srv.conn(namespace="interop")
    (profile,) = [p for p in interop.EnumerateInstances("CIM_RegisteredProfile")
                  if p["RegisteredName"] == "Text Console Redirection"]
    central = interop.AssociatorNames(profile.path, AssocClass="CIM_ElementConformsToProfile")
    assert [p.classname for p in central] == ["KVM_TextRedirectionService"]
    scoping = interop.AssociatorNames(profile.path, AssocClass="CIM_ReferencedProfile")
    assert any(p["InstanceID"] == "CIM:DSP1042-SystemVirtualization-1.0.0" for p in scoping)


def test_the_console_is_a_websocket_and_nothing_else(srv):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    headers = auth(ADMIN)
    c.request("GET", "/console/con-a", headers=headers)
    r = c.getresponse()
    assert r.status == 426 and r.getheader("Upgrade") == "websocket"
    r.read()
    c.request("POST", "/console/con-a", body=b"", headers=headers)
    r = c.getresponse()
    assert r.status == 405
    r.read()
    c.request("GET", "/console/con-a", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert c.getresponse().status == 401


def test_cimvirtd_console_in_a_terminal(srv, tmp_path):
    conn = srv.conn()
    start_vm(conn, "con-f")
    password_file = tmp_path / "password"
    password_file.write_text(ADMIN[1] + "\n")
    child = pexpect.spawn(str(BINARY), ["console", "--server", f"127.0.0.1:{srv.https_port}",
                                        "--ca-cert", srv.cert, "--password-file",
                                        str(password_file), "con-f"],
                          timeout=20, encoding=None)
    try:
        child.expect(b"Ctrl-] leaves")
        child.expect(BANNER)
        child.send(b"TYPED")
        child.expect(b"TYPED")
        child.send(b"\x1d")
        child.expect(b"left the console")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    # The password asked for on the terminal, echo off; a wrong one is refused with 401.
    child = pexpect.spawn(str(BINARY), ["console", "--url",
                                        f"ws://127.0.0.1:{srv.http_port}/console/con-f"],
                          timeout=20, encoding=None)
    try:
        child.expect(b"password for admin: ")
        child.sendline(b"not-the-password")
        child.expect(b"401")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 1


def readme_console_commands():
    """The console commands README.md shows (in its Consoles section)."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Consoles", 1)[1].split("\n### ", 1)[0]
    return [line for line in section.splitlines()
            if line.startswith(("cimvirtd console ", "websocat ", "SSL_CERT_FILE="))]


def test_the_readme_console_commands_work_as_shown(srv):
    conn = srv.conn()
    start_vm(conn, "web1")
    commands = readme_console_commands()
    assert len(commands) == 3, commands
    env = {**os.environ,
           "PATH": f"{BINARY.parent}:{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def as_here(command):
        return (command.replace("127.0.0.1:5988", f"127.0.0.1:{srv.http_port}")
                .replace("127.0.0.1:5989", f"127.0.0.1:{srv.https_port}")
                .replace("/var/lib/cimvirt/tls/cert.pem", srv.cert)
                .replace("admin:PASSWORD", f"{ADMIN[0]}:{ADMIN[1]}"))

    for command in commands:
        child = pexpect.spawn("bash", ["-c", as_here(command)], env=env, timeout=20)
        try:
            if command.startswith("cimvirtd console"):
                child.expect(b"password for admin: ")
                child.sendline(ADMIN[1].encode())
            child.expect(rb"1 vCPUs online\r?\n")
            child.send(b"README\r")
            child.expect(b"README")
            if not command.startswith("cimvirtd console"):
                # websocat leaves the terminal as it is: the first was the terminal's echo,
                # this one the guest's.
                child.expect(b"README")
        finally:
            child.close(force=True)


def test_the_console_benchmark_runs_and_prints_its_tables():
    """README's `scripts/bench-console`, at one run: every table comes out."""
    import subprocess
    result = subprocess.run([str(REPO / "scripts" / "bench-console")], capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "RUNS": "1", "CIMVIRT_PYTHON": sys.executable})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for heading in ("Guest to client", "A keystroke's round trip", "What console sessions cost"):
        assert heading in out, out
    assert "A 17th session on one VM: HTTP 503" in out, out
