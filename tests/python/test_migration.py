"""Migration between two cimvirt hosts (DSP1081), driven through pywbem: two real cimvirtd
servers on loopback, each with its own data directory and HTTPS port, moving VMs that run
the built-in test guest. The servers share one certificate, so each trusts the other by
default, and each has the other's admin account in its [migration] section. Disk images are
at the same path for both, as shared storage would have them."""

import asyncio
import os
import re

import pytest
import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16

import test_console as console
from conftest import ADMIN, OPERATOR, READER, Server, cimvirtd, free_port
from test_virt import (change, define, enabled_state, heartbeats, send_console, service,
                       wait_advancing, wait_console, wait_job)

if not os.path.exists("/dev/kvm"):
    if os.environ.get("CI"):
        raise RuntimeError("/dev/kvm is missing on a CI machine")
    pytest.skip("NOT RUN: this host has no /dev/kvm", allow_module_level=True)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    base = tmp_path_factory.mktemp("migration")
    password = base / "migration-password"
    password.write_text(ADMIN[1] + "\n")
    migration = f'[migration]\nuser = "{ADMIN[0]}"\npassword_file = "{password}"\n'
    (base / "a.toml").write_text(migration)
    a = Server(base / "a", extra_args=["--config", str(base / "a.toml")])
    tls = a.data_dir / "tls"
    (base / "b.toml").write_text(
        f'[tls]\ncert = "{tls / "cert.pem"}"\nkey = "{tls / "key.pem"}"\n\n' + migration)
    try:
        b = Server(base / "b", extra_args=["--config", str(base / "b.toml")])
    except Exception:
        a.stop()
        raise
    yield a, b
    for server in (a, b):
        code, log = server.stop()
        assert code == 0, log
        assert "panicked" not in log, log


def migration_service(conn):
    (path,) = conn.EnumerateInstanceNames("KVM_VirtualSystemMigrationService")
    return path


def settings(migration_type):
    return CIMInstance("KVM_VirtualSystemMigrationSettingData",
                       properties={"MigrationType": Uint16(migration_type)})


def destination(server):
    return f"127.0.0.1:{server.https_port}"


def names(conn):
    return {p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")}


def system_of(conn, name):
    (path,) = [p for p in conn.EnumerateInstanceNames("KVM_ComputerSystem") if p["Name"] == name]
    return path


def migrate(conn, system, to, migration_type=None):
    """MigrateVirtualSystemToHost, followed to the job's end; returns the job."""
    extra = {} if migration_type is None else {"MigrationSettingData": settings(migration_type)}
    rv, out = conn.InvokeMethod("MigrateVirtualSystemToHost", migration_service(conn),
                                ComputerSystem=system, DestinationHost=destination(to), **extra)
    assert rv == 4096, rv
    return wait_job(conn, out["Job"])


def is_migratable(conn, system, host):
    """CheckVirtualSystemIsMigratableToHost's answer, read from the CIM-XML reply: pywbem
    1.9.1 turns every boolean output parameter into True (it applies bool() to the text)."""
    conn.debug = True
    rv, out = conn.InvokeMethod("CheckVirtualSystemIsMigratableToHost", migration_service(conn),
                                ComputerSystem=system, DestinationHost=host)
    assert rv == 0 and "IsMigratable" in out
    match = re.search(rb'<PARAMVALUE NAME="IsMigratable" PARAMTYPE="boolean"><VALUE>(\w+)</VALUE>',
                      conn.last_raw_reply)
    assert match, conn.last_raw_reply
    return match.group(1).lower() == b"true"


def test_the_migration_service_its_capabilities_and_profile_are_there(hosts):
    a, _ = hosts
    conn = a.conn()
    svc = migration_service(conn)
    assert svc["Name"] == "MigrationService"
    (host,) = conn.AssociatorNames(svc, AssocClass="KVM_HostedService")
    assert host.classname == "KVM_HostSystem"
    (caps,) = conn.Associators(svc, AssocClass="KVM_ElementCapabilities")
    assert caps["InstanceID"] == "MigrationCapabilities"
    assert (caps["SynchronousMethodsSupported"], caps["AsynchronousMethodsSupported"],
            caps["DestinationHostFormatsSupported"]) == ([4, 5], [2, 3], [2, 3, 4])
    offered = {i["MigrationType"]: i for i in conn.Associators(
        caps.path, AssocClass="KVM_SettingsDefineCapabilities")}
    assert sorted(offered) == [1, 2, 3, 4], "Other (offline), Live, Resume, Restart"
    roles = {r["PartComponent"]["InstanceID"]: r["ValueRole"] for r in conn.References(
        caps.path, ResultClass="KVM_SettingsDefineCapabilities")}
    assert roles["MigrationSettingData/Live"] == 0, "Live is the default, as in libvirt-cim"
    assert roles["MigrationSettingData/Resume"] == 3
    server = pywbem.WBEMServer(a.conn(namespace="interop"))
    (profile,) = server.get_selected_profiles("DMTF", "Virtual System Migration")
    assert profile["InstanceID"] == "CIM:DSP1081-VirtualSystemMigration-0.8.1"
    (central,) = a.conn(namespace="interop").AssociatorNames(
        profile.path, AssocClass="KVM_ElementConformsToProfile")
    assert central["Name"] == "MigrationService"


def test_a_running_vm_moves_live_with_its_memory_and_disk_comes_back_paused_and_resumes(hosts, tmp_path):
    a, b = hosts
    conn_a, conn_b = a.conn(), b.conn()
    image = tmp_path / "shared.img"
    cimvirtd("storage", "--pool", str(tmp_path), "create", "shared.img", "8M")
    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "mover"})
    proc = CIMInstance("KVM_ProcResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(3), "VirtualQuantity": pywbem.Uint64(2)})
    disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(17), "Address": str(image)})
    rv, out = conn_a.InvokeMethod("DefineSystem", service(conn_a), SystemSettings=vssd,
                                  ResourceSettings=[proc, disk])
    assert rv == 0
    system = out["ResultingSystem"]
    settings_a = {i["InstanceID"]: i for i in conn_a.EnumerateInstances("KVM_VirtualSystemSettingData")}
    uuid = settings_a["KVM:mover"]["UUID"]
    assert change(conn_a, system, 2) == 0
    wait_console(a, "mover", "vCPUs online")
    before = wait_advancing(a, "mover")

    assert is_migratable(conn_a, system, destination(b))
    assert "mover" in names(conn_a), "a check moves nothing"

    # A console client on the source is told where the VM went, and closed.
    (console_url,) = [p["AccessInfo"] for p in conn_a.EnumerateInstances("CIM_RemoteServiceAccessPoint")
                      if p["AccessInfo"].startswith("ws:") and p["AccessInfo"].endswith("/mover")]

    async def watch_the_move():
        async with console.connect(a, console_url) as ws:
            await console.read_until(ws, b"vCPUs online")
            job = await asyncio.to_thread(migrate, conn_a, system, b)  # Live (pre-copy)
            notice = await console.read_notice(ws)
            await asyncio.wait_for(ws.wait_closed(), 10)
            return job, notice, ws.close_reason

    job, notice, close_reason = asyncio.run(watch_the_move())
    assert f"migrated to {destination(b)}" in notice, notice
    assert "migrated to" in close_reason
    assert job["JobState"] == 7, job["ErrorDescription"]
    assert "pre-copy done" in a.log_path.read_text()
    assert "mover" not in names(conn_a)
    left = [p.name for d in (a.data_dir / "vms", a.run_dir) for p in d.iterdir()
            if p.name.startswith(uuid.lower())]
    assert left == [], f"the VM left {left} behind on the source"
    moved = system_of(conn_b, "mover")
    assert enabled_state(conn_b, moved) == 2
    # The guest goes on from where it was: its counters continue, they do not restart.
    after = wait_advancing(b, "mover")
    assert all(n > p for n, p in zip(after, before)), (before, after)
    settings_b = {i["InstanceID"]: i for i in conn_b.EnumerateInstances("KVM_VirtualSystemSettingData")}
    assert settings_b["KVM:mover"]["UUID"] == uuid
    # Its disk came along (the image lock passed from one VM process to the other).
    send_console(b, "mover", b"d")
    log = wait_console(b, "mover", "flush status")
    assert "disk: read back status 0, same data\n" in log, log

    # Back to the first host, paused, through MigrateVirtualSystemToSystem.
    assert change(conn_b, moved, 9) == 0
    (frozen_at,) = {tuple(heartbeats(b, "mover"))}
    host_a = conn_a.EnumerateInstanceNames("KVM_HostSystem")[0]
    target = CIMInstanceName("KVM_HostSystem", keybindings=dict(host_a.keybindings),
                             namespace="root/virt", host=destination(a))
    rv, out = conn_b.InvokeMethod("MigrateVirtualSystemToSystem", migration_service(conn_b),
                                  ComputerSystem=moved, DestinationSystem=target)
    assert rv == 4096
    assert out["NewComputerSystem"]["Name"] == "mover"
    assert out["NewComputerSystem"].host == destination(a)
    assert wait_job(conn_b, out["Job"])["JobState"] == 7
    back = system_of(conn_a, "mover")
    assert enabled_state(conn_a, back) == 9, "it arrives paused, as it left"
    assert tuple(heartbeats(a, "mover")) == frozen_at
    assert change(conn_a, back, 2) == 0
    before = wait_advancing(a, "mover")

    # Resume (3): paused, snapshotted and moved in one piece.
    assert migrate(conn_a, back, b, 3)["JobState"] == 7
    moved = system_of(conn_b, "mover")
    assert enabled_state(conn_b, moved) == 2
    after = wait_advancing(b, "mover")
    assert all(n > p for n, p in zip(after, before)), (before, after)
    assert conn_b.InvokeMethod("DestroySystem", service(conn_b), AffectedSystem=moved)[0] == 0


def test_offline_and_restart_migrations(hosts):
    a, b = hosts
    conn_a, conn_b = a.conn(), b.conn()
    system = define(conn_a, "traveller", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    # Offline (MigrationType 1, "Other"): a stopped VM's definition moves.
    assert migrate(conn_a, system, b, 1)["JobState"] == 7
    moved = system_of(conn_b, "traveller")
    assert enabled_state(conn_b, moved) == 3
    assert "traveller" not in names(conn_a)
    # Restart (4): shut down here, booted there.
    assert change(conn_b, moved, 2) == 0
    wait_console(b, "traveller", "vCPUs online")
    assert migrate(conn_b, moved, a, 4)["JobState"] == 7
    back = system_of(conn_a, "traveller")
    assert enabled_state(conn_a, back) == 2
    wait_console(a, "traveller", "vCPUs online")
    wait_advancing(a, "traveller")
    assert "traveller" not in names(conn_b)
    assert conn_a.InvokeMethod("DestroySystem", service(conn_a), AffectedSystem=back)[0] == 0


def test_migrations_that_cannot_be_done_say_why_and_leave_the_vm_where_it_was(hosts):
    a, b = hosts
    conn_a, conn_b = a.conn(), b.conn()
    svc = migration_service(conn_a)
    system = define(conn_a, "homebody", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    clash = define(conn_b, "homebody", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    try:
        assert change(conn_a, system, 2) == 0
        # A migration type DSP1081 does not define, a transport other than TLS.
        with pytest.raises(pywbem.CIMError) as err:
            conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=system,
                                DestinationHost=destination(b), MigrationSettingData=settings(7))
        assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
        ssh = CIMInstance("KVM_VirtualSystemMigrationSettingData",
                          properties={"MigrationType": Uint16(2), "TransportType": Uint16(2)})
        with pytest.raises(pywbem.CIMError) as err:
            conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=system,
                                DestinationHost=destination(b), MigrationSettingData=ssh)
        assert "HTTPS" in err.value.status_description
        # A running VM is not moved offline (5: Invalid State).
        rv, _ = conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=system,
                                    DestinationHost=destination(b), MigrationSettingData=settings(1))
        assert rv == 5
        # No such VM; no destination.
        ghost = CIMInstanceName("KVM_ComputerSystem", namespace="root/virt",
                                keybindings={"CreationClassName": "KVM_ComputerSystem", "Name": "ghost"})
        with pytest.raises(pywbem.CIMError) as err:
            conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=ghost,
                                DestinationHost=destination(b))
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
        with pytest.raises(pywbem.CIMError) as err:
            conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=system,
                                DestinationHost="kvm2:http")
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        # Nobody listens there: not migratable.
        assert not is_migratable(conn_a, system, f"127.0.0.1:{free_port()}")
        # The destination has a VM of that name: the check says no, the job fails with the
        # reason, and the VM runs on here.
        assert not is_migratable(conn_a, system, destination(b))
        job = migrate(conn_a, system, b)
        assert job["JobState"] == 10
        assert "already defined" in job["ErrorDescription"], job["ErrorDescription"]
        assert enabled_state(conn_a, system) == 2
        wait_advancing(a, "homebody")
        # A VM with snapshots stays (its snapshots cannot follow it).
        (snapshots,) = conn_a.EnumerateInstanceNames("KVM_VirtualSystemSnapshotService")
        assert conn_a.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system,
                                   SnapshotType=Uint16(2))[0] == 0
        assert conn_b.InvokeMethod("DestroySystem", service(conn_b), AffectedSystem=clash)[0] == 0
        rv, _ = conn_a.InvokeMethod("MigrateVirtualSystemToHost", svc, ComputerSystem=system,
                                    DestinationHost=destination(b))
        assert rv == 5
        assert "homebody" not in names(conn_b)
    finally:
        conn_a.InvokeMethod("DestroySystem", service(conn_a), AffectedSystem=system)
        if "homebody" in names(conn_b):
            conn_b.InvokeMethod("DestroySystem", service(conn_b), AffectedSystem=clash)
    assert not list((b.data_dir / "vms").glob("*.incoming")), "nothing is left at the destination"


def test_only_an_administrator_may_migrate_vms_in(tmp_path):
    """The migration endpoint defines VMs with whatever host files they name: a user with
    write access to root/virt alone is refused (403), and a reader too."""
    import base64
    import http.client
    srv = Server(tmp_path / "data", operator=True)
    try:
        for creds in (OPERATOR, READER):
            conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
            auth = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            conn.request("POST", "/cimvirt/migration/v1/incoming", body=b"{}",
                         headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"})
            reply = conn.getresponse()
            assert reply.status == 403, creds
            assert b"administrator" in reply.read()
            conn.close()
    finally:
        code, log = srv.stop()
    assert code == 0, log
