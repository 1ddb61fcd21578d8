"""The VM lifecycle through pywbem: DefineSystem, RequestStateChange, DestroySystem on a
real cimvirtd whose VMs run the built-in test guest on /dev/kvm. The guest's heartbeat
counters are read from the VM process's own control socket, as the server reads them."""

import json
import os
import socket
import struct
import subprocess
import sys
import time

import pytest
import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16, Uint32, Uint64

from conftest import BINARY, OPERATOR, REPO, Server, cimvirtd

if not os.path.exists("/dev/kvm"):
    if os.environ.get("CI"):
        raise RuntimeError("/dev/kvm is missing on a CI machine")
    pytest.skip("NOT RUN: this host has no /dev/kvm", allow_module_level=True)


class VmSocket:
    """The VM process's control protocol: length-prefixed JSON."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        assert self.request({"request": "hello", "version": 1})["response"] == "hello"

    def request(self, message):
        body = json.dumps(message).encode()
        self.sock.sendall(struct.pack("<I", len(body)) + body)
        header = self._read(4)
        return json.loads(self._read(struct.unpack("<I", header)[0]))

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the VM process closed its socket"
            data += chunk
        return data

    def heartbeats(self):
        return self.request({"request": "status"})["heartbeats"]


def vm_path(server, name, suffix):
    """A file of VM `name`: its control socket (`sock`, in the run directory) or one in the
    VM directory (`console.log` ...). They go by the VM's UUID, not its name."""
    settings = pywbem.CIMInstanceName("KVM_VirtualSystemSettingData",
                                      {"InstanceID": f"KVM:{name}"}, namespace="root/virt")
    uuid = server.conn().GetInstance(settings)["UUID"].lower()
    return (server.run_dir if suffix == "sock" else server.data_dir / "vms") / f"{uuid}.{suffix}"


def heartbeats(server, name, socket_path=None):
    vm = VmSocket(socket_path or vm_path(server, name, "sock"))
    try:
        return vm.heartbeats()
    finally:
        vm.sock.close()


def wait_advancing(server, name, socket_path=None):
    socket_path = socket_path or vm_path(server, name, "sock")
    before = heartbeats(server, name, socket_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = heartbeats(server, name, socket_path)
        if all(n > b for n, b in zip(now, before)):
            return now
        time.sleep(0.02)
    raise AssertionError(f"{name}'s heartbeats stopped at {before}")


def service(conn):
    (path,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    return path


def define(conn, name, vcpus=2, memory_mib=64, **extra):
    vssd = CIMInstance("KVM_VirtualSystemSettingData",
                       properties={"VirtualSystemIdentifier": name, "ElementName": name, **extra})
    proc = CIMInstance("KVM_ProcResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(3), "VirtualQuantity": Uint64(vcpus)})
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(memory_mib),
                                  "AllocationUnits": "byte*2^20"})
    return conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                             ResourceSettings=[proc, mem])


def spin(server, name):
    """Makes the test guest spin with interrupts off: it stops answering its keyboard."""
    vm = VmSocket(vm_path(server, name, "sock"))
    try:
        assert vm.request({"request": "send_console", "bytes": list(b"s")})["response"] == "ok"
        pid = vm.request({"request": "status"})["pid"]
    finally:
        vm.sock.close()
    console = vm_path(server, name, "console.log")
    deadline = time.monotonic() + 10
    while console.read_text().count("spinning with interrupts disabled") < spin.count.get(name, 0) + 1:
        assert time.monotonic() < deadline, "the guest did not start spinning"
        time.sleep(0.01)
    spin.count[name] = spin.count.get(name, 0) + 1
    return pid


spin.count = {}


def wait_job(conn, job, timeout=60):
    """Follows a job to its end; returns the instance."""
    deadline = time.monotonic() + timeout
    while True:
        instance = conn.GetInstance(job)
        if instance["JobState"] in (7, 8, 10):  # Completed, Terminated, Exception
            return instance
        assert time.monotonic() < deadline, f"job {job} still {instance['JobState']}"
        time.sleep(0.02)


def change(conn, system, state, **kw):
    """RequestStateChange; a job (4096) is followed to its end, and its code returned."""
    rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(state), **kw)
    if rv == 4096:
        job = wait_job(conn, out["Job"])
        return 0 if job["JobState"] == 7 else job["ErrorCode"]
    return rv


def enabled_state(conn, system):
    return conn.GetInstance(system)["EnabledState"]


@pytest.fixture(scope="module")
def virt(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("virt"))
    yield srv
    code, log = srv.stop()
    assert code == 0, log
    assert "panicked" not in log, log


def test_the_host_and_the_management_service_are_there(virt):
    conn = virt.conn()
    (host,) = conn.EnumerateInstances("KVM_HostSystem")
    assert host["Name"] == socket.gethostname() and host["EnabledState"] == 2
    (svc,) = conn.EnumerateInstances("CIM_VirtualSystemManagementService")
    assert svc.classname == "KVM_VirtualSystemManagementService"
    assert svc["Name"] == "Management Service" and svc["SystemName"] == host["Name"]
    # Its CPUs (DSP1022) and memory (DSP1026), from the host's inventory, through
    # KVM_SystemDevice; its capabilities offer no state changes (DSP1052).
    cpus = conn.Associators(host.path, AssocClass="KVM_SystemDevice", ResultClass="KVM_HostProcessor")
    assert sorted(c["DeviceID"] for c in cpus) == sorted(f"CPU{i}" for i in range(os.cpu_count()))
    assert all(c["Family"] == 1 and c["OtherFamilyDescription"] for c in cpus)
    (memory,) = conn.Associators(host.path, AssocClass="KVM_SystemDevice", ResultClass="KVM_HostMemory")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(memory["BlockSize"] * memory["NumberOfBlocks"] - total) < 64 << 20
    (caps,) = conn.Associators(host.path, AssocClass="KVM_ElementCapabilities")
    assert caps["RequestedStatesSupported"] == []
    server = pywbem.WBEMServer(virt.conn(namespace="interop"))
    interop = virt.conn(namespace="interop")
    for name, central in [("Computer System", {host["Name"]}),
                          ("CPU", {c["DeviceID"] for c in cpus}),
                          ("System Memory", {"memory"})]:
        (profile,) = server.get_selected_profiles("DMTF", name)
        found = interop.AssociatorNames(profile.path, AssocClass="KVM_ElementConformsToProfile")
        assert {p["Name"] if name == "Computer System" else p["DeviceID"] for p in found} == central, name


def test_a_vm_goes_through_its_whole_life(virt):
    conn = virt.conn()
    rv, out = define(conn, "life", vcpus=2, memory_mib=64)
    assert rv == 0
    system = out["ResultingSystem"]
    assert system.keybindings == {"CreationClassName": "KVM_ComputerSystem", "Name": "life"}
    cs = conn.GetInstance(system)
    assert (cs["EnabledState"], cs["RequestedState"], cs["OperationalStatus"]) == (3, 5, [15])
    assert len(cs["UUID"]) == 36
    (vssd,) = [i for i in conn.EnumerateInstances("KVM_VirtualSystemSettingData")
               if i["InstanceID"] == "KVM:life"]
    assert vssd["UUID"] == cs["UUID"] and vssd["VirtualSystemType"] == "KVM"
    rasds = {i["InstanceID"]: i for i in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")}
    assert rasds["life/proc"]["VirtualQuantity"] == 2
    assert rasds["life/mem"]["VirtualQuantity"] == 64 * 1024
    assert rasds["life/mem"]["AllocationUnits"] == "KiloBytes"

    assert change(conn, system, 2) == 0  # start
    assert enabled_state(conn, system) == 2
    assert conn.GetInstance(system)["RequestedState"] == 2
    wait_advancing(virt, "life")

    assert change(conn, system, 9) == 0  # pause
    assert enabled_state(conn, system) == 9
    frozen = heartbeats(virt, "life")
    time.sleep(0.3)
    assert heartbeats(virt, "life") == frozen
    assert change(conn, system, 9) == 4097, "pausing a paused VM is an invalid transition"
    assert change(conn, system, 2) == 0  # resume
    wait_advancing(virt, "life")

    assert change(conn, system, 6) == 0  # save to disk
    assert enabled_state(conn, system) == 6
    assert not vm_path(virt, "life", "sock").exists(), "the process is gone"
    assert change(conn, system, 2) == 0  # restore
    restored = heartbeats(virt, "life")
    assert all(r >= f for r, f in zip(restored, frozen)), "continued, not rebooted"
    wait_advancing(virt, "life")

    assert change(conn, system, 10) == 0  # reboot
    assert change(conn, system, 11) == 0  # reset
    assert enabled_state(conn, system) == 2
    wait_advancing(virt, "life")

    interval = pywbem.CIMDateTime("00000000000010.000000:000")
    assert change(conn, system, 4, TimeoutPeriod=interval) == 0  # graceful shutdown
    assert enabled_state(conn, system) == 3
    assert change(conn, system, 4) == 4097, "an off VM cannot shut down"
    assert change(conn, system, 2) == 0
    assert change(conn, system, 3) == 0  # hard off
    assert enabled_state(conn, system) == 3
    for refused in (9, 10, 11, 6):
        assert change(conn, system, refused) == 4097, f"an off VM cannot make {refused}"
        assert conn.GetInstance(system)["RequestedState"] == 3, "a refused request changes nothing"
    assert change(conn, system, 12) == 1, "Deferred is not supported"

    assert vm_path(virt, "life", "console.log").exists()
    uuid = conn.GetInstance(system)["UUID"].lower()
    assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0
    assert "life" not in [p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")]
    left = [p.name for d in (virt.data_dir / "vms", virt.run_dir) for p in d.iterdir()
            if p.name.startswith(uuid)]
    assert left == [], f"DestroySystem left {left}"


def settings_of(conn, name):
    (settings,) = [p for p in conn.EnumerateInstanceNames("KVM_VirtualSystemSettingData")
                   if p["InstanceID"] == f"KVM:{name}"]
    return settings


def send_console(server, name, text):
    vm = VmSocket(vm_path(server, name, "sock"))
    try:
        assert vm.request({"request": "send_console", "bytes": list(text)})["response"] == "ok"
    finally:
        vm.sock.close()


def wait_console(server, name, text, timeout=30):
    console = vm_path(server, name, "console.log")
    deadline = time.monotonic() + timeout
    while text not in (log := console.read_text() if console.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not on {name}'s console:\n{log}"
        time.sleep(0.01)
    return log


def test_disks_and_network_ports_are_defined_added_changed_removed_and_used(virt, tmp_path):
    conn = virt.conn()
    pool = tmp_path / "images"
    # A volume from a storage pool, as `cimvirtd storage` makes them.
    made = json.loads(cimvirtd("storage", "--pool", str(pool), "create", "disk0.img", "8M").stdout)
    image = pool / "disk0.img"
    assert made["path"] == str(image) and made["capacity"] == 8 << 20
    with open(image, "r+b") as f:
        f.write(b"cimvirt!")
    cimvirtd("storage", "--pool", str(pool), "create", "disk1.img", "1M")

    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "disky"})
    disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(17), "Address": str(image),
                                   "VirtualDevice": "vda"})
    nic = CIMInstance("KVM_NetResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(10), "NetworkName": "cvbr0"})
    rv, out = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                ResourceSettings=[disk, nic])
    assert rv == 0
    system = out["ResultingSystem"]
    rasds = {i["InstanceID"]: i for i in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")}
    disk_rasd = rasds["disky/vda"]
    assert (disk_rasd.classname, disk_rasd["Address"], disk_rasd["VirtualQuantity"],
            disk_rasd["AllocationUnits"], disk_rasd["readonly"]) == (
        "KVM_DiskResourceAllocationSettingData", str(image), 8 << 20, "Bytes", False)
    (net_id,) = [i for i in rasds if i.startswith("disky/") and i.count(":") == 5]
    mac = net_id.split("/", 1)[1]
    net_rasd = rasds[net_id]
    assert (net_rasd["Address"], net_rasd["NetworkName"], net_rasd["NetworkType"]) == (
        mac, "cvbr0", "bridge")
    assert int(mac[:2], 16) & 3 == 2, "a generated MAC is locally administered"

    # The VM's devices and settings are joined to it.
    devices = {(p.classname, p["DeviceID"]) for p in conn.AssociatorNames(
        system, AssocClass="KVM_SystemDevice")}
    assert ("KVM_LogicalDisk", "disky/vda") in devices
    assert ("KVM_NetworkPort", f"disky/{mac}") in devices
    (port,) = [i for i in conn.EnumerateInstances("KVM_NetworkPort") if i["SystemName"] == "disky"]
    assert port["PermanentAddress"] == mac.replace(":", "").upper()
    (settings,) = [p for p in conn.EnumerateInstanceNames("KVM_VirtualSystemSettingData")
                   if p["InstanceID"] == "KVM:disky"]
    parts = {p["InstanceID"] for p in conn.AssociatorNames(
        settings, AssocClass="KVM_VirtualSystemSettingDataComponent")}
    assert parts == {"disky/proc", "disky/mem", "disky/vda", net_id, "disky/charconsole:0"}
    logical = [p for p in conn.AssociatorNames(disk_rasd.path, AssocClass="KVM_SettingsDefineState")]
    assert [p["DeviceID"] for p in logical] == ["disky/vda"]
    # DSP1047's second level: the image under the drive.
    (sasd,) = [i for i in conn.EnumerateInstances("KVM_StorageAllocationSettingData")
               if i["InstanceID"] == "disky/vda"]
    assert (sasd["ResourceType"], sasd["HostResource"], sasd["Access"], sasd["VirtualQuantity"],
            sasd["VirtualResourceBlockSize"]) == (31, [str(image)], 3, (8 << 20) // 512, 512)
    assert sasd["Parent"].endswith('KVM_DiskResourceAllocationSettingData.InstanceID="disky/vda"')
    assert ("KVM_StorageAllocationSettingData", "disky/vda") in {
        (p.classname, p["InstanceID"]) for p in conn.AssociatorNames(
            settings_of(conn, "disky"), AssocClass="KVM_VirtualSystemSettingDataComponent")}

    # The network port goes (this test makes no bridge or tap on the host); a second,
    # read-only disk comes, and is made writable.
    assert conn.InvokeMethod("RemoveResourceSettings", service(conn),
                             ResourceSettings=[net_rasd.path])[0] == 0
    second = CIMInstance("KVM_DiskResourceAllocationSettingData",
                         properties={"ResourceType": Uint16(17), "Address": str(pool / "disk1.img"),
                                     "readonly": True})
    rv, out = conn.InvokeMethod("AddResourceSettings", service(conn), AffectedConfiguration=settings,
                                ResourceSettings=[second])
    assert rv == 0
    (added,) = out["ResultingResourceSettings"]
    assert added["InstanceID"] == "disky/vdb"
    assert conn.GetInstance(added)["readonly"] is True
    change_ro = CIMInstance("KVM_DiskResourceAllocationSettingData",
                            properties={"InstanceID": "disky/vdb", "readonly": False})
    assert conn.InvokeMethod("ModifyResourceSettings", service(conn),
                             ResourceSettings=[change_ro])[0] == 0
    assert conn.GetInstance(added)["readonly"] is False
    ids = {i["InstanceID"] for i in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")
           if i["InstanceID"].startswith("disky/")}
    assert ids == {"disky/proc", "disky/mem", "disky/vda", "disky/vdb", "disky/charconsole:0"}

    # The guest uses its first disk: it reads the image's bytes and writes its pattern. The
    # second, writable but unused, is left untouched: not even its modification time moves.
    os.utime(pool / "disk1.img", (1_000_000_000, 1_000_000_000))
    assert change(conn, system, 2) == 0
    wait_console(virt, "disky", "vCPUs online")
    send_console(virt, "disky", b"d")
    log = wait_console(virt, "disky", "flush status")
    for line in ["disk: 16384 sectors, ID disk0.img\n",
                 "disk: read status 0, first bytes 63696d7669727421\n",
                 "disk: write status 0\n",
                 "disk: read back status 0, same data\n",
                 "disk: flush status 0\n"]:
        assert line in log, log
    assert image.read_bytes()[:4096] == bytes((i * 7 + 0x31) & 0xff for i in range(4096))

    # Devices change only while the VM is stopped; an image in use cannot be deleted.
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("RemoveResourceSettings", service(conn), ResourceSettings=[added])
    assert "while it is stopped" in refused.value.status_description
    deleted = cimvirtd("storage", "--pool", str(pool), "delete", "disk0.img", check=False)
    assert deleted.returncode != 0 and "in use by a running VM" in deleted.stderr
    assert change(conn, system, 3) == 0
    assert (pool / "disk1.img").stat().st_mtime == 1_000_000_000, "an unused disk was written"
    assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0

    # Bad devices are refused with the reason.
    for props, why in [
        ({"Address": str(pool / "missing.img")}, "missing.img"),
        ({"Address": "images/relative.img"}, "absolute"),
        ({"Address": str(image), "VirtualDevice": "sda"}, "vda, vdb"),
    ]:
        bad = CIMInstance("KVM_DiskResourceAllocationSettingData",
                          properties={"ResourceType": Uint16(17), **props})
        with pytest.raises(pywbem.CIMError) as refused:
            conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                              ResourceSettings=[bad])
        assert refused.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert why in refused.value.status_description
    bad_mac = CIMInstance("KVM_NetResourceAllocationSettingData",
                          properties={"ResourceType": Uint16(10), "Address": "01:00:5e:00:00:01"})
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd, ResourceSettings=[bad_mac])
    assert "multicast" in refused.value.status_description


def test_a_graceful_shutdown_job_is_cancelled_and_the_vm_runs_on(virt):
    conn = virt.conn()
    system = define(conn, "cancel", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    try:
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "cancel")
        spin(virt, "cancel")  # the guest stops answering Ctrl-Alt-Del
        rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(4),
                                    TimeoutPeriod=pywbem.CIMDateTime("00000000000100.000000:000"))
        assert rv == 4096
        job = out["Job"]
        assert conn.GetInstance(job)["JobState"] == 4
        rv, _ = conn.InvokeMethod("RequestStateChange", job, RequestedState=Uint16(2))
        assert rv == 1, "only Terminate and Kill are offered"
        rv, _ = conn.InvokeMethod("RequestStateChange", job, RequestedState=Uint16(4))
        assert rv == 0
        ended = wait_job(conn, job)
        assert (ended["JobState"], ended["ErrorDescription"]) == (8, "cancelled by a client")
        cs = conn.GetInstance(system)
        assert (cs["EnabledState"], cs["RequestedState"]) == (2, 2), "it runs on"
        rv, _ = conn.InvokeMethod("RequestStateChange", job, RequestedState=Uint16(5))
        assert rv == 4097, "an ended job cannot be cancelled"
        assert conn.InvokeMethod("KillJob", job, DeleteOnKill=False)[0] == 4, "nor killed"
        # KillJob, the older way, cancels a job too, and DeleteOnKill deletes it.
        rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(4),
                                    TimeoutPeriod=pywbem.CIMDateTime("00000000000100.000000:000"))
        assert rv == 4096
        assert conn.InvokeMethod("KillJob", out["Job"], DeleteOnKill=True)[0] == 0
        with pytest.raises(pywbem.CIMError) as err:
            conn.GetInstance(out["Job"])
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
        assert enabled_state(conn, system) == 2, "it runs on"
        # SetPowerState, the older RequestStateChange: off, on, cycle; power saving is not offered.
        assert conn.InvokeMethod("SetPowerState", system, PowerState=Uint32(6))[0] == 0
        assert enabled_state(conn, system) == 3
        assert conn.InvokeMethod("SetPowerState", system, PowerState=Uint32(1))[0] == 0
        wait_advancing(virt, "cancel")
        assert conn.InvokeMethod("SetPowerState", system, PowerState=Uint32(5))[0] == 0
        assert conn.InvokeMethod("SetPowerState", system, PowerState=Uint32(3))[0] == 1
        assert conn.GetInstance(system)["RequestedState"] == 11
        assert change(conn, system, 3) == 0
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_modify_system_settings_changes_the_kernel_of_a_stopped_vm(virt, tmp_path):
    conn = virt.conn()
    system = define(conn, "modsys", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"not booted here")
    (settings,) = [p for p in conn.EnumerateInstanceNames("KVM_VirtualSystemSettingData")
                   if p["InstanceID"] == "KVM:modsys"]
    try:
        vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={
            "InstanceID": "KVM:modsys", "Kernel": str(kernel), "CommandLine": "quiet"})
        assert conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=vssd)[0] == 0
        shown = conn.GetInstance(settings)
        assert (shown["Kernel"], shown["CommandLine"]) == (str(kernel), "quiet")
        # A property left out stays; one given as NULL goes (without a kernel, with its
        # arguments: the VM boots the test guest again).
        only_args = CIMInstance("KVM_VirtualSystemSettingData", properties={
            "InstanceID": "KVM:modsys", "CommandLine": "loglevel=3"})
        assert conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=only_args)[0] == 0
        shown = conn.GetInstance(settings)
        assert (shown["Kernel"], shown["CommandLine"]) == (str(kernel), "loglevel=3")
        no_kernel = CIMInstance("KVM_VirtualSystemSettingData", properties={"InstanceID": "KVM:modsys"})
        no_kernel["Kernel"] = pywbem.CIMProperty("Kernel", None, type="string")
        assert conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=no_kernel)[0] == 0
        shown = conn.GetInstance(settings)
        assert shown["Kernel"] is None and shown["CommandLine"] is None

        for props, why in [({"VirtualSystemIdentifier": "renamed"}, "keeps its"),
                           ({"Kernel": "/nonexistent/vmlinux"}, "/nonexistent/vmlinux"),
                           ({"InstanceID": "KVM:ghost"}, "ghost")]:
            bad = CIMInstance("KVM_VirtualSystemSettingData", properties={"InstanceID": "KVM:modsys", **props})
            with pytest.raises(pywbem.CIMError) as refused:
                conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=bad)
            assert why in refused.value.status_description
        assert change(conn, system, 2) == 0
        with pytest.raises(pywbem.CIMError) as refused:
            conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=vssd)
        assert "while it is stopped" in refused.value.status_description
        assert change(conn, system, 3) == 0
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_modify_instance_renames_a_running_vm_and_changes_its_settings(virt, tmp_path):
    """ModifyInstance (WS-Management's Put) of the system changes its ElementName, at any
    time; of the settings, what ModifySystemSettings changes, by its rules."""
    conn = virt.conn()
    system = define(conn, "putvm", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    settings = CIMInstanceName("KVM_VirtualSystemSettingData", {"InstanceID": "KVM:putvm"},
                               namespace="root/virt")
    try:
        assert change(conn, system, 2) == 0
        running = conn.GetInstance(system)
        running["ElementName"] = "Web server"
        conn.ModifyInstance(running)
        assert conn.GetInstance(system)["ElementName"] == "Web server"
        assert conn.GetInstance(settings)["ElementName"] == "Web server"
        assert conn.GetInstance(system)["Name"] == "putvm"
        # Only the listed properties change.
        vssd = conn.GetInstance(settings)
        vssd["ElementName"] = "ignored"
        vssd["Description"] = "front end"
        conn.ModifyInstance(vssd, PropertyList=["Description"])
        shown = conn.GetInstance(settings)
        assert (shown["ElementName"], shown["Description"]) == ("Web server", "front end")
        # What the VM runs with changes only while it is stopped; its state never by Put.
        kernel = tmp_path / "vmlinux"
        kernel.write_bytes(b"not booted here")
        vssd["Kernel"] = str(kernel)
        with pytest.raises(pywbem.CIMError) as refused:
            conn.ModifyInstance(vssd)
        assert "while it is stopped" in refused.value.status_description
        running = conn.GetInstance(system)
        running["RequestedState"] = Uint16(3)
        with pytest.raises(pywbem.CIMError) as refused:
            conn.ModifyInstance(running)
        assert refused.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
        assert "RequestStateChange" in refused.value.status_description
        running = conn.GetInstance(system)
        running["ElementName"] = "bad\nname"
        with pytest.raises(pywbem.CIMError) as refused:
            conn.ModifyInstance(running)
        assert refused.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert change(conn, system, 3) == 0
        conn.ModifyInstance(vssd)
        assert conn.GetInstance(settings)["Kernel"] == str(kernel)
        # A NULL ElementName gives the VM its name back.
        named = conn.GetInstance(system)
        named["ElementName"] = pywbem.CIMProperty("ElementName", None, type="string")
        conn.ModifyInstance(named)
        assert conn.GetInstance(system)["ElementName"] == "putvm"
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_define_system_takes_mof_text_as_libvirt_cim_clients_send_it(virt):
    conn = virt.conn()
    vssd = CIMInstance("KVM_VirtualSystemSettingData",
                       properties={"VirtualSystemIdentifier": "mofvm"}).tomof()
    mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                      properties={"ResourceType": Uint16(4), "VirtualQuantity": Uint64(32768),
                                  "AllocationUnits": "KiloBytes"}).tomof()
    assert vssd.startswith("instance of KVM_VirtualSystemSettingData")
    rv, out = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                ResourceSettings=[mem])
    assert rv == 0 and out["ResultingSystem"]["Name"] == "mofvm"
    rasds = {i["InstanceID"]: i for i in conn.EnumerateInstances("KVM_MemResourceAllocationSettingData")}
    assert rasds["mofvm/mem"]["VirtualQuantity"] == 32768
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("DefineSystem", service(conn),
                          SystemSettings="instance of KVM_VirtualSystemSettingData {\n  Nope = 1;\n};")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "line 2" in err.value.status_description
    conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=out["ResultingSystem"])


def test_a_vm_is_joined_to_its_host_settings_devices_and_capabilities(virt):
    conn = virt.conn()
    system = define(conn, "linked", vcpus=2, memory_mib=32)[1]["ResultingSystem"]
    try:
        def names(role_class, **kw):
            return sorted(p.classname for p in conn.AssociatorNames(system, AssocClass=role_class, **kw))

        assert names("KVM_HostedDependency") == ["KVM_HostSystem"]
        assert names("CIM_SettingsDefineState") == ["KVM_VirtualSystemSettingData"]
        assert names("KVM_ElementSettingData") == ["KVM_VirtualSystemSettingData"]
        assert names("KVM_SystemDevice") == ["KVM_Memory", "KVM_Processor", "KVM_Processor"]
        (elec,) = conn.Associators(system, AssocClass="KVM_ElementCapabilities",
                                   ResultClass="CIM_EnabledLogicalElementCapabilities")
        assert elec["RequestedStatesSupported"] == [2, 3, 4, 6, 9, 10, 11]
        (snapshot_caps,) = conn.Associators(system, AssocClass="KVM_ElementCapabilities",
                                            ResultClass="CIM_VirtualSystemSnapshotCapabilities")
        assert snapshot_caps["SnapshotTypesEnabled"] == [], "an off VM has no state to snapshot"

        (vssd,) = conn.Associators(system, ResultClass="CIM_VirtualSystemSettingData",
                                   AssocClass="KVM_SettingsDefineState")
        rasds = conn.Associators(vssd.path, AssocClass="CIM_VirtualSystemSettingDataComponent")
        assert sorted(r["InstanceID"] for r in rasds) == [
            "linked/charconsole:0", "linked/mem", "linked/proc"]

        processors = conn.Associators(system, ResultClass="CIM_Processor")
        assert sorted(p["DeviceID"] for p in processors) == ["linked/0", "linked/1"]
        (memory,) = conn.Associators(system, ResultClass="CIM_Memory")
        assert memory["NumberOfBlocks"] * memory["BlockSize"] == 32 << 20
        (mem_rasd,) = conn.Associators(memory.path, AssocClass="KVM_SettingsDefineState")
        assert mem_rasd["InstanceID"] == "linked/mem"

        (host,) = conn.EnumerateInstanceNames("KVM_HostSystem")
        hosted = conn.AssociatorNames(host, AssocClass="CIM_HostedDependency")
        assert "linked" in [p["Name"] for p in hosted]
        services = conn.AssociatorNames(host, AssocClass="KVM_HostedService")
        assert sorted(p.classname for p in services) == [
            "KVM_ResourcePoolConfigurationService", "KVM_TextRedirectionService",
            "KVM_VirtualSystemManagementService", "KVM_VirtualSystemMigrationService",
            "KVM_VirtualSystemSnapshotService"]
        (svc,) = conn.AssociatorNames(host, AssocClass="KVM_HostedService",
                                      ResultClass="CIM_VirtualSystemManagementService")
        (caps,) = conn.Associators(svc, AssocClass="KVM_ElementCapabilities")
        assert caps["VirtualSystemTypesSupported"] == ["KVM"]
        refs = conn.References(system, ResultClass="CIM_SystemDevice")
        assert len(refs) == 3 and all(r["GroupComponent"] == system for r in refs)
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
    assert not [p for p in conn.EnumerateInstanceNames("KVM_Processor") if p["SystemName"] == "linked"]


def test_processors_and_memory_change_while_the_vm_is_stopped(virt):
    conn = virt.conn()
    system = define(conn, "grow", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    svc = service(conn)
    try:
        proc = CIMInstance("KVM_ProcResourceAllocationSettingData",
                           properties={"InstanceID": "grow/proc", "VirtualQuantity": Uint64(2)})
        mem = CIMInstance("KVM_MemResourceAllocationSettingData",
                          properties={"InstanceID": "grow/mem", "VirtualQuantity": Uint64(48),
                                      "AllocationUnits": "byte*2^20"})
        rv, out = conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[proc, mem])
        assert rv == 0
        assert sorted(p["InstanceID"] for p in out["ResultingResourceSettings"]) == ["grow/mem", "grow/proc"]
        processors = conn.Associators(system, ResultClass="CIM_Processor")
        assert len(processors) == 2
        assert change(conn, system, 2) == 0
        assert len(wait_advancing(virt, "grow")) == 2, "the guest runs with 2 vCPUs"
        (caps,) = conn.EnumerateInstances("KVM_VirtualSystemManagementCapabilities")
        assert caps["SynchronousMethodsSupported"] == [2, 3, 5, 6, 7, 10]

        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[proc])
        assert err.value.status_code == pywbem.CIM_ERR_FAILED
        assert "while it is stopped" in err.value.status_description
        assert change(conn, system, 3) == 0
        too_many = CIMInstance("KVM_ProcResourceAllocationSettingData",
                               properties={"InstanceID": "grow/proc", "VirtualQuantity": Uint64(4096)})
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[mem, too_many])
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        missing = CIMInstance("KVM_ProcResourceAllocationSettingData",
                              properties={"InstanceID": "nobody/proc", "VirtualQuantity": Uint64(1)})
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[missing])
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
        rasds = {i["InstanceID"]: i for i in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")}
        assert rasds["grow/proc"]["VirtualQuantity"] == 2, "a refused change changed nothing"

        # What this host does not enforce is refused, never accepted and dropped.
        for props, refused in (({"Weight": Uint32(512)}, "Weight 512"),
                               ({"Limit": Uint64(1)}, "Limit 1"),
                               ({"Reservation": Uint64(1)}, "Reservation 1")):
            capped = CIMInstance("KVM_ProcResourceAllocationSettingData",
                                 properties={"InstanceID": "grow/proc", **props})
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[capped])
            assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
            assert refused in err.value.status_description
        ballooned = CIMInstance("KVM_MemResourceAllocationSettingData",
                                properties={"InstanceID": "grow/mem", "Limit": Uint64(16),
                                            "AllocationUnits": "byte*2^20"})
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[ballooned])
        assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod(
                "DefineSystem", svc, SystemSettings=CIMInstance(
                    "KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "weighted"}),
                ResourceSettings=[CIMInstance("KVM_ProcResourceAllocationSettingData", properties={
                    "ResourceType": Uint16(3), "VirtualQuantity": Uint64(1), "Weight": Uint32(100)})])
        assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
        # Values that ask for nothing more are taken, as read back (get, modify, put).
        proc_rasd = rasds["grow/proc"]
        assert proc_rasd["Limit"] is None and proc_rasd["Weight"] is None and proc_rasd["Reservation"] is None
        mem_rasd = rasds["grow/mem"]
        mem_rasd["VirtualQuantity"] = mem_rasd["Limit"] = Uint64(64 * 1024)
        same = CIMInstance("KVM_ProcResourceAllocationSettingData",
                           properties={"InstanceID": "grow/proc", "Limit": Uint64(0), "Reservation": Uint64(0)})
        assert conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[mem_rasd, same])[0] == 0
        rasds = {i["InstanceID"]: i for i in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")}
        assert rasds["grow/mem"]["VirtualQuantity"] == 64 * 1024
        assert rasds["grow/mem"]["Limit"] == rasds["grow/mem"]["Reservation"] == 64 * 1024
    finally:
        conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)


def test_a_guest_that_ignores_shutdown_is_powered_off_by_a_job_and_a_busy_vm_says_so(virt):
    conn = virt.conn()
    system = define(conn, "stubborn", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    try:
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "stubborn")
        spin(virt, "stubborn")
        timeout = pywbem.CIMDateTime("00000000000002.000000:000")
        started = time.monotonic()
        rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(4),
                                    TimeoutPeriod=timeout)
        assert rv == 4096, "a shutdown runs as a job"
        assert time.monotonic() - started < 1, "and answers at once"
        job = conn.GetInstance(out["Job"])
        assert job["JobState"] == 4 and job["Name"] == "RequestStateChange(4) of stubborn"
        assert job["TimeSubmitted"] is not None and job["DeleteOnCompletion"] is False
        (affected,) = conn.AssociatorNames(out["Job"], AssocClass="KVM_AffectedJobElement")
        assert affected["Name"] == "stubborn"
        owned = conn.AssociatorNames(system, AssocClass="KVM_OwningJobElement")
        assert out["Job"]["InstanceID"] in [j["InstanceID"] for j in owned]
        assert change(conn, system, 9) == 4099, "busy with the shutdown"
        job = wait_job(conn, out["Job"])
        assert job["JobState"] == 7 and job["PercentComplete"] == 100
        assert time.monotonic() - started >= 2, "it waited for the guest first"
        assert enabled_state(conn, system) == 3
        rv, err = conn.InvokeMethod("GetError", out["Job"])
        assert rv == 0 and err.get("Error") is None, "a completed job has no error"
        rv, errs = conn.InvokeMethod("GetErrors", out["Job"])
        assert rv == 0 and not errs.get("Errors"), "nor errors"
        rv, _ = conn.InvokeMethod("RequestStateChange", out["Job"], RequestedState=Uint16(4))
        assert rv == 4097, "a completed job cannot be cancelled"

        # A job whose VM process dies under it ends in an exception that GetError explains.
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "stubborn")  # booted: its serial port takes commands
        pid = spin(virt, "stubborn")
        rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(4),
                                    TimeoutPeriod=pywbem.CIMDateTime("00000000000030.000000:000"))
        assert rv == 4096
        time.sleep(0.3)
        os.kill(pid, 9)
        job = wait_job(conn, out["Job"])
        assert job["JobState"] == 10 and job["ErrorCode"] == 4, job
        rv, err = conn.InvokeMethod("GetError", out["Job"])
        assert rv == 0 and err["Error"]["Message"] == job["ErrorDescription"]
        rv, errs = conn.InvokeMethod("GetErrors", out["Job"])
        assert rv == 0 and [e["Message"] for e in errs["Errors"]] == [job["ErrorDescription"]]
        assert enabled_state(conn, system) == 3
        assert conn.GetInstance(system)["HealthState"] == 20, "the killed process counts as a crash"
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_snapshots_are_taken_applied_and_destroyed(virt):
    conn = virt.conn()
    system = define(conn, "snappy", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    snapshot_dir = vm_path(virt, "snappy", "snapshots")
    (snapshots,) = conn.EnumerateInstanceNames("KVM_VirtualSystemSnapshotService")
    try:
        rv, _ = conn.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system, SnapshotType=Uint16(2))
        assert rv == 4097, "an off VM has no state to snapshot"
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "snappy")
        (caps,) = conn.Associators(system, ResultClass="KVM_VirtualSystemSnapshotCapabilities")
        assert caps["SnapshotTypesEnabled"] == [2, 32768, 32769]
        assert change(conn, system, 9) == 0
        (at_snapshot,) = heartbeats(virt, "snappy")
        # Hyper-V's clients send SnapshotSettings as an empty string.
        rv, out = conn.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system,
                                    SnapshotSettings="", SnapshotType=Uint16(2))
        assert rv == 0
        snapshot = out["ResultingSnapshot"]
        assert snapshot["InstanceID"] == "KVM:snappy:snapshot:1"
        assert enabled_state(conn, system) == 9, "a snapshot leaves the VM as it was"
        vssd = conn.GetInstance(snapshot)
        assert vssd["VirtualSystemIdentifier"] == "snappy" and vssd["CreationTime"] is not None
        (taken,) = conn.AssociatorNames(system, AssocClass="KVM_SnapshotOfVirtualSystem")
        assert taken["InstanceID"] == snapshot["InstanceID"]
        # The snapshot is a VSSD with its RASDs: the settings it restores.
        held = {r["InstanceID"]: r for r in conn.Associators(
            snapshot, AssocClass="KVM_VirtualSystemSettingDataComponent")}
        assert set(held) == {"snappy:snapshot:1/proc", "snappy:snapshot:1/mem",
                             "snappy:snapshot:1/charconsole:0"}
        assert held["snappy:snapshot:1/proc"]["VirtualQuantity"] == 1
        assert held["snappy:snapshot:1/mem"]["VirtualQuantity"] == 16 << 10  # KiB

        assert change(conn, system, 2) == 0
        deadline = time.monotonic() + 10
        while heartbeats(virt, "snappy")[0] < at_snapshot + 30:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert conn.InvokeMethod("ApplySnapshot", snapshots, Snapshot=snapshot)[0] == 0
        (back,) = heartbeats(virt, "snappy")
        assert at_snapshot <= back < at_snapshot + 30, f"back to {back} from {at_snapshot}"
        assert enabled_state(conn, system) == 9, "the snapshot was taken paused"
        assert conn.GetInstance(system)["RequestedState"] == 9, "requested as it now is"
        (applied,) = conn.AssociatorNames(system, AssocClass="KVM_LastAppliedSnapshot")
        assert applied["InstanceID"] == snapshot["InstanceID"]

        assert change(conn, system, 2) == 0
        rv, out = conn.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system,
                                    SnapshotType=Uint16(32769))
        assert rv == 0 and enabled_state(conn, system) == 3, "32769 leaves the VM off"
        assert out["ResultingSnapshot"]["InstanceID"] == "KVM:snappy:snapshot:2"
        rv, _ = conn.InvokeMethod("CreateSnapshot", snapshots, AffectedSystem=system, SnapshotType=Uint16(3))
        assert rv == 1, "no disk snapshots without disks"

        assert conn.InvokeMethod("DestroySnapshot", snapshots, AffectedSnapshot=snapshot)[0] == 0
        remaining = [i["InstanceID"] for i in conn.EnumerateInstances("KVM_VirtualSystemSettingData")
                     if i["VirtualSystemIdentifier"] == "snappy"]
        assert sorted(remaining) == ["KVM:snappy", "KVM:snappy:snapshot:2"]
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("DestroySnapshot", snapshots, AffectedSnapshot=snapshot)
        assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
        (caps,) = conn.Associators(snapshots, AssocClass="KVM_ElementCapabilities")
        assert caps["SnapshotTypesSupported"] == [2, 32768, 32769]
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
    assert not snapshot_dir.exists()


def test_the_virtualization_profiles_are_registered_with_their_central_instances(virt):
    conn = virt.conn()
    system = define(conn, "profiled", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    try:
        server = pywbem.WBEMServer(virt.conn(namespace="interop"))
        (sv,) = server.get_selected_profiles("DMTF", "System Virtualization")
        assert sv["InstanceID"] == "CIM:DSP1042-SystemVirtualization-1.0.0"
        interop = virt.conn(namespace="interop")
        # Advertised as they are: nothing speaks SLP here.
        assert {tuple(p["AdvertiseTypes"]) for p in interop.EnumerateInstances("CIM_RegisteredProfile")} == {(2,)}
        (host,) = interop.AssociatorNames(sv.path, AssocClass="CIM_ElementConformsToProfile")
        assert host.classname == "KVM_HostSystem" and host.namespace == "root/virt"
        (vs,) = server.get_selected_profiles("DMTF", "Virtual System Profile")
        central = interop.AssociatorNames(vs.path, AssocClass="KVM_ElementConformsToProfile")
        assert "profiled" in [p["Name"] for p in central]
        (scoping,) = interop.Associators(vs.path, AssocClass="KVM_ReferencedProfile")
        assert scoping["InstanceID"] == sv["InstanceID"]

        # The resource profiles, each with its central instances and scoped by DSP1042.
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "profiled")
        assert change(conn, system, 4) == 0  # a graceful shutdown runs as a job
        def central(name, key="InstanceID"):
            profiles = server.get_selected_profiles("DMTF", name)
            assert profiles, f"{name} is not registered"
            for profile in profiles:
                (scope,) = interop.AssociatorNames(profile.path, AssocClass="KVM_ReferencedProfile")
                assert scope["InstanceID"] == sv["InstanceID"], name
            return {str(p[key]) for profile in profiles for p in interop.AssociatorNames(
                profile.path, AssocClass="KVM_ElementConformsToProfile")}
        pools = {"ProcessorPool/0", "MemoryPool/0", "DiskPool/default"}
        assert pools <= central("Resource Allocation")
        assert pools <= central("Allocation Capabilities")
        assert central("Processor Resource Virtualization") == {"ProcessorPool/0"}
        assert central("Memory Resource Virtualization") == {"MemoryPool/0"}
        assert central("Storage Resource Virtualization") == {"DiskPool/default"}
        assert all(p.startswith("NetworkPool/") for p in central("Ethernet Port Resource Virtualization"))
        jobs = {j["InstanceID"] for j in conn.EnumerateInstanceNames("KVM_ConcreteJob")}
        assert jobs and jobs == central("Job Control")
        assert central("Virtual System Snapshot", key="Name") == {"SnapshotService"}
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_a_storage_pool_is_a_disk_pool_with_its_volumes_allocated_from_it(virt):
    conn = virt.conn()
    images = virt.data_dir / "images"
    cimvirtd("storage", "--pool", str(images), "create", "pooled.img", "4M")
    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "pooled-disk"})
    disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(17), "Address": str(images / "pooled.img")})
    system = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                               ResourceSettings=[disk])[1]["ResultingSystem"]
    # The same kind of disk in DSP1047's two levels, as Hyper-V-style scripts write it: a
    # drive, and a storage allocation with the image.
    cimvirtd("storage", "--pool", str(images), "create", "two-level.img", "1M")
    drive = CIMInstance("CIM_ResourceAllocationSettingData", properties={"ResourceType": Uint16(17)})
    sasd = CIMInstance("CIM_StorageAllocationSettingData", properties={
        "ResourceType": Uint16(31), "HostResource": [str(images / "two-level.img")], "Access": Uint16(1)})
    two_level = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=CIMInstance(
        "KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "two-level"}),
        ResourceSettings=[drive, sasd])[1]["ResultingSystem"]
    try:
        shown = conn.GetInstance(pywbem.CIMInstanceName(
            "KVM_StorageAllocationSettingData", {"InstanceID": "two-level/vda"}, namespace="root/virt"))
        assert (shown["HostResource"], shown["Access"], shown["PoolID"]) == (
            [str(images / "two-level.img")], 1, "DiskPool/default")
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=two_level)
    try:
        (pool,) = [p for p in conn.EnumerateInstances("KVM_DiskPool") if p["InstanceID"] == "DiskPool/default"]
        assert (pool["PoolID"], pool["ResourceType"], pool["AllocationUnits"], pool["Primordial"]) == (
            "DiskPool/default", 17, "Bytes", False)
        assert 0 < pool["Reserved"] <= pool["Capacity"]
        rasd = conn.GetInstance(pywbem.CIMInstanceName(
            "KVM_DiskResourceAllocationSettingData", {"InstanceID": "pooled-disk/vda"}, namespace="root/virt"))
        assert rasd["PoolID"] == "DiskPool/default"
        assert [p["InstanceID"] for p in conn.AssociatorNames(
            rasd.path, AssocClass="KVM_ResourceAllocationFromPool")] == ["DiskPool/default"]
        assert [p["DeviceID"] for p in conn.AssociatorNames(
            pool.path, AssocClass="KVM_ElementAllocatedFromPool")] == ["pooled-disk/vda"]
        (caps,) = conn.Associators(pool.path, AssocClass="KVM_ElementCapabilities")
        assert caps["InstanceID"] == "DiskPool/default"
        templates = {t["InstanceID"]: t for t in conn.Associators(caps.path, AssocClass="KVM_SettingsDefineCapabilities")}
        assert set(templates) == {f"DiskPool/default/{r}" for r in ("Default", "Minimum", "Maximum", "Increment")}
        assert templates["DiskPool/default/Default"]["VirtualQuantity"] == 1 << 30
        assert templates["DiskPool/default/Maximum"]["VirtualQuantity"] <= pool["Capacity"]
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_volumes_are_created_and_deleted_in_a_storage_pool_through_cim(virt):
    conn = virt.conn()
    (rpcs,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
    (host,) = conn.EnumerateInstanceNames("KVM_HostSystem")
    assert ("KVM_ResourcePoolConfigurationService", "RPCS") in [
        (p.classname, p["Name"]) for p in conn.AssociatorNames(host, AssocClass="KVM_HostedService")]
    pool = pywbem.CIMInstanceName("KVM_DiskPool", {"InstanceID": "DiskPool/default"}, namespace="root/virt")
    settings = CIMInstance("KVM_StorageVolumeResourceAllocationSettingData", properties={
        "VolumeName": "made.img", "Capacity": Uint64(8), "AllocationUnits": "byte*2^20"})
    rv, out = conn.InvokeMethod("CreateResourceInPool", rpcs, Settings=settings, Pool=pool)
    assert rv == 0
    volume = conn.GetInstance(out["Resource"])
    assert (volume["InstanceID"], volume["Capacity"], volume["PoolID"], volume["Path"]) == (
        "DiskPool/default/made.img", 8 << 20, "DiskPool/default", str((virt.data_dir / "images" / "made.img").resolve()))
    assert volume["AllocationQuantity"] < 8 << 20, "sparse"
    assert "DiskPool/default/made.img" in [
        v["InstanceID"] for v in conn.EnumerateInstances("KVM_StorageVolumeResourceAllocationSettingData")]

    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("CreateResourceInPool", rpcs, Settings=settings, Pool=pool)
    assert refused.value.status_code == pywbem.CIM_ERR_ALREADY_EXISTS
    bad = CIMInstance("KVM_StorageVolumeResourceAllocationSettingData", properties={
        "VolumeName": "../escape", "Capacity": Uint64(4096)})
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("CreateResourceInPool", rpcs, Settings=bad, Pool=pool)
    assert refused.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    nowhere = pywbem.CIMInstanceName("KVM_DiskPool", {"InstanceID": "DiskPool/nowhere"}, namespace="root/virt")
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("CreateResourceInPool", rpcs, Settings=settings, Pool=nowhere)
    assert refused.value.status_code == pywbem.CIM_ERR_NOT_FOUND

    assert conn.InvokeMethod("DeleteResourceInPool", rpcs, Resource=out["Resource"], Pool=pool)[0] == 0
    assert not (virt.data_dir / "images" / "made.img").exists()
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("DeleteResourceInPool", rpcs, Resource=out["Resource"], Pool=pool)
    assert refused.value.status_code == pywbem.CIM_ERR_NOT_FOUND


def test_only_an_administrator_gives_vms_host_files_beyond_the_pools(tmp_path):
    """A user with read-write rights in root/virt only reaches the host's files through
    the storage pools' volumes: no other disk image, kernel or initramfs, no pool outside
    the pool roots, and no file in a pool that cimvirtd did not make. An administrator
    (read-write in every namespace) may name any file."""
    data = tmp_path / "data"
    srv = Server(data, operator=True)
    try:
        op = srv.conn(creds=OPERATOR)
        admin = srv.conn()
        (rpcs,) = op.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
        pool = pywbem.CIMInstanceName("KVM_DiskPool", {"InstanceID": "DiskPool/default"}, namespace="root/virt")
        settings = CIMInstance("KVM_StorageVolumeResourceAllocationSettingData", properties={
            "VolumeName": "ops.img", "Capacity": Uint64(1), "AllocationUnits": "byte*2^20"})
        volume = op.InvokeMethod("CreateResourceInPool", rpcs, Settings=settings, Pool=pool)[1]["Resource"]
        volume_path = str((data / "images" / "ops.img").resolve())
        outside = tmp_path / "outside.img"
        outside.write_bytes(b"\0" * 4096)
        vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "ops"})

        def disk(path):
            return CIMInstance("KVM_DiskResourceAllocationSettingData",
                               properties={"ResourceType": Uint16(17), "Address": path})

        for conn, path, allowed in ((op, "/etc/passwd", False), (op, str(outside), False),
                                    (op, volume_path, True), (admin, str(outside), True)):
            if allowed:
                rv, out = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                            ResourceSettings=[disk(path)])
                assert rv == 0
                assert conn.InvokeMethod("DestroySystem", service(conn),
                                         AffectedSystem=out["ResultingSystem"])[0] == 0
                continue
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                  ResourceSettings=[disk(path)])
            assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED, path
            assert "only an administrator" in err.value.status_description
        kernel = CIMInstance("KVM_VirtualSystemSettingData", properties={
            "VirtualSystemIdentifier": "tux", "Kernel": str(outside)})
        with pytest.raises(pywbem.CIMError) as err:
            op.InvokeMethod("DefineSystem", service(op), SystemSettings=kernel)
        assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
        # Adding or changing a disk to such a file is refused alike; the admin's VM keeps its
        # own files when the operator changes something else.
        system = op.InvokeMethod("DefineSystem", service(op), SystemSettings=vssd)[1]["ResultingSystem"]
        settings_path = settings_of(op, "ops")
        with pytest.raises(pywbem.CIMError) as err:
            op.InvokeMethod("AddResourceSettings", service(op), AffectedConfiguration=settings_path,
                            ResourceSettings=[disk(str(outside))])
        assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
        assert admin.InvokeMethod("AddResourceSettings", service(admin), AffectedConfiguration=settings_path,
                                  ResourceSettings=[disk(str(outside))])[0] == 0
        more = CIMInstance("KVM_ProcResourceAllocationSettingData",
                           properties={"InstanceID": "ops/proc", "VirtualQuantity": Uint64(1)})
        assert op.InvokeMethod("ModifyResourceSettings", service(op), ResourceSettings=[more])[0] == 0
        retarget = CIMInstance("KVM_DiskResourceAllocationSettingData",
                               properties={"InstanceID": "ops/vda", "Address": "/etc/shadow"})
        with pytest.raises(pywbem.CIMError) as err:
            op.InvokeMethod("ModifyResourceSettings", service(op), ResourceSettings=[retarget])
        assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED
        assert op.InvokeMethod("DestroySystem", service(op), AffectedSystem=system)[0] == 0

        # A file in a pool that cimvirtd did not make is no volume: not listed, not deleted.
        notes = data / "images" / "notes.txt"
        notes.write_text("not an image")
        listed = [v["VolumeName"] for v in op.EnumerateInstances("KVM_StorageVolumeResourceAllocationSettingData")]
        assert listed == ["ops.img"]
        foreign = pywbem.CIMInstanceName("KVM_StorageVolumeResourceAllocationSettingData",
                                         {"InstanceID": "DiskPool/default/notes.txt"}, namespace="root/virt")
        for conn in (op, admin):
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("DeleteResourceInPool", rpcs, Resource=foreign, Pool=pool)
            assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
        assert notes.read_text() == "not an image"
        assert op.InvokeMethod("DeleteResourceInPool", rpcs, Resource=volume, Pool=pool)[0] == 0
    finally:
        code, log = srv.stop()
    assert code == 0, log


def test_storage_pools_are_created_and_deleted_through_cim_and_persist(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        conn = srv.conn()
        (rpcs,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
        # Under the pool root, by default the data directory's images/.
        pool_dir = tmp_path / "data" / "images" / "fast"
        settings = CIMInstance("KVM_DiskPoolResourceAllocationSettingData",
                               properties={"Type": Uint16(1), "Path": str(pool_dir)})
        rv, out = conn.InvokeMethod("CreateChildResourcePool", rpcs, ElementName="fast", Settings=[settings])
        assert rv == 0 and out["Pool"]["InstanceID"] == "DiskPool/fast"
        assert pool_dir.is_dir()
        pool = conn.GetInstance(out["Pool"])
        assert pool["Capacity"] > 0 and pool["ResourceType"] == 17
        volume = CIMInstance("KVM_StorageVolumeResourceAllocationSettingData",
                             properties={"VolumeName": "v.img", "Capacity": Uint64(1 << 20)})
        assert conn.InvokeMethod("CreateResourceInPool", rpcs, Settings=volume, Pool=out["Pool"])[0] == 0
        assert (pool_dir / "v.img").stat().st_size == 1 << 20

        refusals = [
            ({"ElementName": "fast", "Settings": [settings]}, pywbem.CIM_ERR_ALREADY_EXISTS),
            ({"ElementName": "again", "Settings": [settings]}, pywbem.CIM_ERR_ALREADY_EXISTS),
            ({"ElementName": "bad/name", "Settings": [CIMInstance(
                "KVM_DiskPoolResourceAllocationSettingData", properties={"Path": str(tmp_path / "x")})]},
             pywbem.CIM_ERR_INVALID_PARAMETER),
            ({"ElementName": "lvm", "Settings": [CIMInstance(
                "KVM_DiskPoolResourceAllocationSettingData",
                properties={"Type": Uint16(6), "Path": "/dev/vg0"})]}, pywbem.CIM_ERR_NOT_SUPPORTED),
            ({"ElementName": "nopath", "Settings": [CIMInstance(
                "KVM_DiskPoolResourceAllocationSettingData", properties={"Type": Uint16(1)})]},
             pywbem.CIM_ERR_INVALID_PARAMETER),
            # Nowhere else on the host: not /etc, not beside the data directory.
            ({"ElementName": "etc", "Settings": [CIMInstance(
                "KVM_DiskPoolResourceAllocationSettingData",
                properties={"Type": Uint16(1), "Path": "/etc"})]}, pywbem.CIM_ERR_ACCESS_DENIED),
            ({"ElementName": "beside", "Settings": [CIMInstance(
                "KVM_DiskPoolResourceAllocationSettingData",
                properties={"Type": Uint16(1), "Path": str(tmp_path / "beside")})]}, pywbem.CIM_ERR_ACCESS_DENIED),
        ]
        for args, code in refusals:
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("CreateChildResourcePool", rpcs, **args)
            assert err.value.status_code == code, (args, err.value)

        # A pool a VM has a disk in stays; the configured pool stays.
        vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "pooled"})
        disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                           properties={"ResourceType": Uint16(17), "Address": str(pool_dir / "v.img")})
        system = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd,
                                   ResourceSettings=[disk])[1]["ResultingSystem"]
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=out["Pool"])
        assert "pooled" in err.value.status_description
        (default,) = [p.path for p in conn.EnumerateInstances("KVM_DiskPool") if p["InstanceID"] == "DiskPool/default"]
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=default)
        assert "configuration file" in err.value.status_description
        assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0
    finally:
        code, log = srv.stop()
        assert code == 0, log

    restarted = Server(tmp_path / "data", users=False)
    try:
        conn = restarted.conn()
        pools = {p["InstanceID"]: p for p in conn.EnumerateInstances("KVM_DiskPool")}
        assert set(pools) == {"DiskPool/default", "DiskPool/fast"}, "a created pool outlives a restart"
        (rpcs,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
        assert conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=pools["DiskPool/fast"].path)[0] == 0
        assert {p["InstanceID"] for p in conn.EnumerateInstances("KVM_DiskPool")} == {"DiskPool/default"}
        assert (pool_dir / "v.img").exists(), "the images stay"
    finally:
        code, log = restarted.stop()
        assert code == 0, log


def test_pools_and_their_allocation_templates(virt):
    conn = virt.conn()
    system = define(conn, "pooled", vcpus=2, memory_mib=32)[1]["ResultingSystem"]
    try:
        pools = {p["InstanceID"]: p for p in conn.EnumerateInstances("CIM_ResourcePool")}
        # A network pool per bridge the host has (none is made here), and the default
        # storage pool in the data directory.
        assert {i for i in pools if not i.startswith("NetworkPool/")} == {
            "ProcessorPool/0", "MemoryPool/0", "DiskPool/default"}
        mem = pools["MemoryPool/0"]
        assert mem["Primordial"] and mem["AllocationUnits"] == "KiloBytes"
        assert mem["Reserved"] >= 32 * 1024 and mem["Capacity"] > mem["Reserved"]
        assert pools["ProcessorPool/0"]["Reserved"] >= 2
        (host,) = conn.EnumerateInstanceNames("KVM_HostSystem")
        hosted = conn.AssociatorNames(host, AssocClass="KVM_HostedResourcePool")
        assert {p["InstanceID"] for p in hosted} == set(pools)

        (caps,) = conn.Associators(mem.path, AssocClass="KVM_ElementCapabilities")
        assert caps.classname == "KVM_AllocationCapabilities" and caps["InstanceID"] == "MemoryPool/0"
        # Hyper-V-style scripts pick the template whose InstanceID says "Default".
        sdcs = conn.References(caps.path, ResultClass="KVM_SettingsDefineCapabilities")
        roles = {r["PartComponent"]["InstanceID"]: (r["ValueRole"], r["ValueRange"]) for r in sdcs}
        assert roles == {"Default": (0, 0), "Minimum": (3, 1), "Maximum": (3, 2), "Increment": (3, 3)}
        templates = {t["InstanceID"]: t for t in conn.Associators(caps.path, AssocClass="KVM_SettingsDefineCapabilities")}
        assert templates["Default"]["VirtualQuantity"] == 64 * 1024
        assert templates["Minimum"]["VirtualQuantity"] == 8 * 1024
        assert templates["Increment"]["VirtualQuantity"] == 1024
        assert all(t["PoolID"] == "MemoryPool/0" for t in templates.values())
        # The templates are instances too: the usual Hyper-V script query finds each pool's.
        enumerated = [r["InstanceID"] for r in conn.EnumerateInstances("KVM_MemResourceAllocationSettingData")]
        assert {"Default", "Minimum", "Maximum", "Increment", "pooled/mem"} <= set(enumerated)
        defaults = conn.ExecQuery("WQL", "SELECT * FROM CIM_ResourceAllocationSettingData "
                                         "WHERE InstanceID LIKE '%Default%'")
        by_pool = {d["PoolID"]: d for d in defaults}
        assert {"ProcessorPool/0", "MemoryPool/0", "DiskPool/default"} <= set(by_pool)
        assert by_pool["MemoryPool/0"].classname == "KVM_MemResourceAllocationSettingData"
        assert by_pool["MemoryPool/0"]["VirtualQuantity"] == 64 * 1024
        assert all("Default" in d["InstanceID"] for d in defaults)

        drawn = conn.AssociatorNames(system, ResultClass="CIM_LogicalDevice")
        (pool,) = conn.AssociatorNames([d for d in drawn if d.classname == "KVM_Memory"][0],
                                       AssocClass="KVM_ElementAllocatedFromPool")
        assert pool["InstanceID"] == "MemoryPool/0"
        allocated = conn.AssociatorNames(pools["ProcessorPool/0"].path, AssocClass="KVM_ResourceAllocationFromPool")
        assert "pooled/proc" in [r["InstanceID"] for r in allocated]
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_destroying_a_running_vm_stops_it_first(virt):
    conn = virt.conn()
    system = define(conn, "doomed", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    assert change(conn, system, 2) == 0
    socket_path = vm_path(virt, "doomed", "sock")
    assert socket_path.exists()
    assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0
    assert not socket_path.exists()
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
    assert err.value.status_code == pywbem.CIM_ERR_NOT_FOUND
    assert "Referenced domain `doomed' does not exist" in err.value.status_description


def test_concurrent_definitions_of_one_name_acknowledge_exactly_one(virt):
    """8 callers define the same name at once: exactly one is told it succeeded, and the
    stored definition is that caller's (each asks for a different memory size)."""
    import threading

    for round_ in range(6):
        name = f"race{round_}"
        results = [None] * 8
        start = threading.Barrier(8)

        def caller(i):
            conn = virt.conn()
            start.wait()
            try:
                results[i] = define(conn, name, vcpus=1, memory_mib=32 + 2 * i)[0]
            except pywbem.CIMError as e:
                results[i] = e.status_code

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [i for i, r in enumerate(results) if r == 0]
        assert len(winners) == 1, results
        assert all(r == pywbem.CIM_ERR_ALREADY_EXISTS for i, r in enumerate(results) if i != winners[0]), results
        conn = virt.conn()
        (mem,) = [i for i in conn.EnumerateInstances("KVM_MemResourceAllocationSettingData")
                  if i["InstanceID"] == f"{name}/mem"]
        assert mem["VirtualQuantity"] == (32 + 2 * winners[0]) * 1024
        system = pywbem.CIMInstanceName("KVM_ComputerSystem", keybindings={
            "CreationClassName": "KVM_ComputerSystem", "Name": name})
        assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0


def test_every_vssd_property_is_kept_checked_or_refused(virt):
    """A VSSD's Description and Notes are kept; the properties every VM here has one value
    of (Arch, ClockOffset, EnableACPI ...) may state it; anything else asked for (boot
    devices, data directories, a machine type, a second name) is refused, not dropped."""
    conn = virt.conn()
    system = define(conn, "noted", vcpus=1, memory_mib=16, Description="the web tier",
                    Notes=["owner: ops"], Arch="x86_64", ClockOffset=Uint16(0),
                    EnableACPI=True)[1]["ResultingSystem"]
    try:
        vssd = conn.GetInstance(settings_of(conn, "noted"))
        assert (vssd["Description"], vssd["Notes"]) == ("the web tier", ["owner: ops"])
        # Read back, changed, sent again: everything in it is kept or fixed.
        vssd["Description"] = "the web tier, v2"
        assert conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=vssd)[0] == 0
        assert conn.GetInstance(settings_of(conn, "noted"))["Description"] == "the web tier, v2"
        for props, why in (({"BootDevices": ["hd"]}, "BootDevices is not a setting"),
                           ({"ClockOffset": Uint16(1)}, "every VM here has 0"),
                           ({"LogDataRoot": "/var/log/vm"}, "LogDataRoot is not a setting"),
                           ({"EnablePAE": False}, "every VM here has true")):
            with pytest.raises(pywbem.CIMError) as err:
                define(conn, "asked", **props)
            assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED, props
            assert why in err.value.status_description
            changed = CIMInstance("KVM_VirtualSystemSettingData",
                                  properties={"InstanceID": "KVM:noted", **props})
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=changed)
            assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED, props
        # An ElementName apart from the name is a display name, changeable later.
        twice = CIMInstance("KVM_VirtualSystemSettingData", properties={
            "VirtualSystemIdentifier": "one", "ElementName": "other"})
        _, out = conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=twice)
        try:
            one = conn.GetInstance(out["ResultingSystem"])
            assert (one["Name"], one["ElementName"]) == ("one", "other")
            vssd = conn.GetInstance(CIMInstanceName("KVM_VirtualSystemSettingData",
                                                    {"InstanceID": "KVM:one"}, namespace="root/virt"))
            assert (vssd["VirtualSystemIdentifier"], vssd["ElementName"]) == ("one", "other")
        finally:
            conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=out["ResultingSystem"])
        assert {p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")} >= {"noted"}
        assert "asked" not in {p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")}
    finally:
        conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)


def test_bad_definitions_are_refused_with_the_reason(virt):
    conn = virt.conn()
    assert define(conn, "twin", vcpus=1, memory_mib=16)[0] == 0
    with pytest.raises(pywbem.CIMError) as err:
        define(conn, "twin", vcpus=1, memory_mib=16)
    assert err.value.status_code == pywbem.CIM_ERR_ALREADY_EXISTS
    uuid = conn.GetInstance(conn.EnumerateInstanceNames("KVM_ComputerSystem")[0])["UUID"]
    with pytest.raises(pywbem.CIMError) as err:
        define(conn, "clone", UUID=uuid)
    assert err.value.status_code == pywbem.CIM_ERR_ALREADY_EXISTS and "UUID" in err.value.status_description
    with pytest.raises(pywbem.CIMError) as err:
        define(conn, "greedy", vcpus=4096)
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "4096 vCPUs: this host has" in err.value.status_description
    with pytest.raises(pywbem.CIMError) as err:
        define(conn, "huge", memory_mib=1 << 30)
    assert "MiB of memory: this host has" in err.value.status_description
    # Any name of up to 255 bytes but for control characters, '/' and ':': no file is named
    # after it (a VM's files go by its UUID), so even the longest runs.
    for name in ("Web server (prod) #1, [blue]", "w" * 255):
        system = define(conn, name, vcpus=1, memory_mib=16)[1]["ResultingSystem"]
        assert system["Name"] == name
        assert change(conn, system, 2) == 0 and enabled_state(conn, system) == 2
        uuid = conn.GetInstance(system)["UUID"]
        assert (virt.run_dir / f"{uuid.lower()}.sock").exists()
        assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0
    # Unicode too (defined and destroyed through the service: pywbem cannot send a
    # non-Latin-1 instance path in its CIMObject header).
    system = define(conn, "Wébserver — ünïcode", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    assert "Wébserver — ünïcode" in [p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")]
    assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0
    for name, why in (("n" * 256, "1 to 255 bytes"), ("n" * 4000, "1 to 255 bytes"),
                      ("../escape", "no control characters, '/' or ':'"),
                      ("a:b", "no control characters, '/' or ':'"),
                      ("tab\there", "no control characters, '/' or ':'")):
        with pytest.raises(pywbem.CIMError) as err:
            define(conn, name)
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert why in err.value.status_description
    with pytest.raises(pywbem.CIMError) as err:
        define(conn, "pathuuid", UUID="../../../etc/x")
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "is not a UUID" in err.value.status_description
    tape = CIMInstance("CIM_ResourceAllocationSettingData", properties={"ResourceType": Uint16(18)})
    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "taped"})
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=vssd, ResourceSettings=[tape])
    assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
    assert "ResourceType 18" in err.value.status_description
    # Settings must be of the classes the method takes, in every form clients send them.
    element = CIMInstance("CIM_ManagedElement", properties={"ElementName": "notavm"})
    proc = CIMInstance("KVM_ProcResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(3), "VirtualQuantity": Uint64(1)})
    for system, resources, wrong in ((element, [proc], "SystemSettings"), (vssd, [element], "ResourceSettings")):
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("DefineSystem", service(conn), SystemSettings=system, ResourceSettings=resources)
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert f"{wrong} is an instance of CIM_ManagedElement" in err.value.status_description
    with pytest.raises(pywbem.CIMError) as err:
        conn.InvokeMethod("DefineSystem", service(conn), SystemSettings='instance of CIM_ManagedElement {\n'
                          '    ElementName = "notavm";\n};\n')
    assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    assert "notavm" not in [p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")]
    reader = virt.conn(creds=("reader", "reader-pass-2"))
    with pytest.raises(pywbem.CIMError) as err:
        define(reader, "sneaky")
    assert err.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED


def linux_guest():
    """The Linux guest scripts/setup-linux-guest made (scripts/test runs it)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    guest = os.environ.get("CIMVIRT_LINUX_GUEST", os.path.join(root, "target", "linux-guest"))
    assert os.path.isfile(os.path.join(guest, "vmlinux")), \
        f"no Linux guest in {guest}: run scripts/setup-linux-guest"
    return guest


def test_a_linux_vm_is_defined_with_its_kernel_and_boots_it(virt):
    """Kernel, Ramdisk and CommandLine in the VSSD boot Linux. On this project's software
    KVM only the kernel's first lines can be awaited (tests in hypervisor-shim say more)."""
    conn = virt.conn()
    guest = linux_guest()
    kernel = os.path.join(guest, "vmlinux")
    ramdisk = os.path.join(guest, "initramfs.cpio.gz")
    rv, out = define(conn, "penguin", vcpus=2, memory_mib=256, Kernel=kernel, Ramdisk=ramdisk,
                     CommandLine="cimvirt.test=pywbem")
    assert rv == 0
    system = out["ResultingSystem"]
    (vssd,) = [i for i in conn.EnumerateInstances("KVM_VirtualSystemSettingData")
               if i["InstanceID"] == "KVM:penguin"]
    assert (vssd["Kernel"], vssd["Ramdisk"], vssd["CommandLine"]) == \
        (kernel, ramdisk, "cimvirt.test=pywbem")
    assert change(conn, system, 2) == 0
    assert enabled_state(conn, system) == 2
    console = vm_path(virt, "penguin", "console.log")
    deadline = time.monotonic() + 180
    while not ("Linux version" in (text := console.read_text() if console.exists() else "")
               and "cimvirt.test=pywbem" in text):
        assert time.monotonic() < deadline, f"no kernel banner on the console:\n{text}"
        time.sleep(0.1)
    assert change(conn, system, 3) == 0
    assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0

    for props, wanted in [({"Kernel": "/nonexistent/vmlinuz"}, "Kernel /nonexistent/vmlinuz"),
                          ({"Kernel": "vmlinuz"}, "absolute path"),
                          ({"Ramdisk": ramdisk}, "no Kernel")]:
        with pytest.raises(pywbem.CIMError) as err:
            define(conn, "nokernel", **props)
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert wanted in err.value.status_description


def test_many_vms_enumerate_as_each_is_got_and_show_their_states_at_once(tmp_path):
    """Past 64 VMs an enumeration builds the VMs' instances in batches: every instance comes
    once, the host's too, and each is the one GetInstance gives. A state a request changed
    shows at once, though states are read from what the VM processes reported."""
    srv = Server(tmp_path / "data")
    try:
        conn = srv.conn()
        names = [f"many{i:03}" for i in range(150)]
        systems = [define(conn, name, vcpus=1, memory_mib=16)[1]["ResultingSystem"] for name in names]
        got = {s["Name"]: s for s in conn.EnumerateInstances("KVM_ComputerSystem")}
        assert sorted(got) == names
        for system in systems[::37]:
            assert conn.GetInstance(system) == got[system["Name"]]
        caps = conn.EnumerateInstanceNames("KVM_EnabledLogicalElementCapabilities")
        ids = [c["InstanceID"] for c in caps]
        assert len(ids) == len(set(ids)) == len(names) + 1, "each VM's and the host's, once"
        hosted = conn.EnumerateInstanceNames("KVM_HostedDependency")
        assert sorted(h["Dependent"]["Name"] for h in hosted) == names
        rasds = conn.EnumerateInstances("KVM_ProcResourceAllocationSettingData")
        ids = [r["InstanceID"] for r in rasds]
        assert len(ids) == len(set(ids)) == len(names) + 4, "each VM's, and the pool's 4 templates"
        (pool,) = conn.EnumerateInstances("KVM_ProcessorPool")
        assert pool["Reserved"] == len(names), "the pool counts every VM's vCPU"

        system = systems[100]
        for requested, shown in [(2, 2), (9, 9), (2, 2), (9, 9), (3, 3)]:
            assert change(conn, system, requested) == 0
            states = {s["Name"]: s["EnabledState"] for s in conn.EnumerateInstances("KVM_ComputerSystem")}
            assert states[system["Name"]] == shown, (requested, states[system["Name"]])
            assert enabled_state(conn, system) == shown
    finally:
        code, log = srv.stop()
    assert code == 0, log


def test_the_scale_benchmark_measures_two_builds_side_by_side():
    """scripts/bench-virt's scale table (1,000 VMs by default) at a size for the suite, with
    this build as its own "before": every request answers with every VM's instance."""
    env = dict(os.environ, RUNS="2", CIMVIRT_PYTHON=sys.executable)
    r = subprocess.run([str(REPO / "scripts" / "bench-virt"), "--scale-only", "--vms", "70",
                        "--running", "2", "--before", str(BINARY)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Request | before median | before p99 | this build median"), r.stdout
    labels = [row.split("|")[1].strip() for row in rows[1:]]
    assert labels == ["EnumerateInstances KVM_ComputerSystem", "EnumerateInstanceNames KVM_ComputerSystem",
                      "EnumerateInstances KVM_VirtualSystemSettingData", "GetInstance of a running VM",
                      "GetInstance of a stopped VM", "cimvirtd RSS"], r.stdout
    for row in rows[1:]:
        cells = [c.strip() for c in row.split("|")[2:-2]]
        assert float(cells[0]) > 0 and float(cells[2]) > 0, row


def test_definitions_survive_a_kill_and_running_vms_are_readopted(tmp_path):
    srv = Server(tmp_path / "data")
    conn = srv.conn()
    system = define(conn, "survivor", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
    define(conn, "sleeper", vcpus=1, memory_mib=16)
    assert change(conn, system, 2) == 0
    socket_path = vm_path(srv, "survivor", "sock")
    srv.proc.kill()  # kill -9: no clean shutdown
    srv.proc.wait()
    srv.log.close()
    wait_advancing(srv, "survivor", socket_path)  # the VM did not notice

    again = Server(tmp_path / "data", users=False)
    try:
        conn = again.conn()
        states = {i["Name"]: i["EnabledState"] for i in conn.EnumerateInstances("KVM_ComputerSystem")}
        assert states == {"survivor": 2, "sleeper": 3}
        assert "re-adopted running VMs" in again.log_path.read_text()
        assert change(conn, system, 3) == 0
        assert enabled_state(conn, system) == 3
    finally:
        code, log = again.stop()
    assert code == 0, log


def test_vms_start_with_the_server_as_their_automatic_start_says(tmp_path):
    """AutomaticStartupAction 4 (and libvirt-cim's AutoStart 1) start a VM that is off when
    cimvirtd starts, after its delay; 3 restarts one that was running when it stopped
    unasked (its process killed while the server was down, as a host crash does); the
    default (2) leaves a VM off; a running VM is re-adopted, not started again."""
    import signal
    srv = Server(tmp_path / "data")
    conn = srv.conn()
    delay = pywbem.CIMDateTime("00000000000001.000000:000")
    define(conn, "always", vcpus=1, memory_mib=16, AutomaticStartupAction=Uint16(4),
           AutomaticStartupActionDelay=delay, AutomaticStartupActionSequenceNumber=Uint16(2))
    define(conn, "libvirt", vcpus=1, memory_mib=16, AutoStart=Uint16(1))
    active = define(conn, "active", vcpus=1, memory_mib=16,
                    AutomaticStartupAction=Uint16(3))[1]["ResultingSystem"]
    inactive = define(conn, "inactive", vcpus=1, memory_mib=16,
                      AutomaticStartupAction=Uint16(3))[1]["ResultingSystem"]
    define(conn, "manual", vcpus=1, memory_mib=16)
    vssds = {i["VirtualSystemIdentifier"]: i for i in conn.EnumerateInstances("KVM_VirtualSystemSettingData")}
    assert (vssds["always"]["AutomaticStartupAction"], vssds["always"]["AutoStart"]) == (4, 1)
    assert str(vssds["always"]["AutomaticStartupActionDelay"]) == str(delay)
    assert vssds["always"]["AutomaticStartupActionSequenceNumber"] == 2
    assert (vssds["libvirt"]["AutomaticStartupAction"], vssds["manual"]["AutomaticStartupAction"]) == (4, 2)
    assert change(conn, active, 2) == 0
    wait_advancing(srv, "active")  # booted: its serial port takes commands
    pid = spin(srv, "active")
    assert change(conn, inactive, 2) == 0 and change(conn, inactive, 3) == 0
    code, log = srv.stop()
    assert code == 0, log
    os.kill(pid, signal.SIGKILL)  # the host goes down under the running VM

    again = Server(tmp_path / "data", users=False)
    try:
        conn = again.conn()
        deadline = time.monotonic() + 30
        want = {"always": 2, "libvirt": 2, "active": 2, "inactive": 3, "manual": 3}
        while True:
            states = {i["Name"]: i["EnabledState"] for i in conn.EnumerateInstances("KVM_ComputerSystem")}
            if states == want:
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.1)
        for name in ("always", "libvirt", "active"):
            wait_advancing(again, name)
        log = again.log_path.read_text()
        assert log.count("started automatically") == 3, log
    finally:
        code, log = again.stop()
    assert code == 0, log
    # Modified through ModifySystemSettings, and what cannot be honoured is refused.
    srv = Server(tmp_path / "data", users=False)
    try:
        conn = srv.conn()
        for name in ("always", "libvirt", "active"):
            system = pywbem.CIMInstanceName("KVM_ComputerSystem", keybindings={
                "CreationClassName": "KVM_ComputerSystem", "Name": name})
            assert change(conn, system, 3) == 0
        settings = CIMInstance("KVM_VirtualSystemSettingData",
                               properties={"InstanceID": "KVM:always", "AutoStart": Uint16(0)})
        assert conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=settings)[0] == 0
        (vssd,) = [i for i in conn.EnumerateInstances("KVM_VirtualSystemSettingData")
                   if i["InstanceID"] == "KVM:always"]
        assert vssd["AutomaticStartupAction"] == 2
        for prop, value in (("AutomaticShutdownAction", 3), ("AutomaticRecoveryAction", 3)):
            settings = CIMInstance("KVM_VirtualSystemSettingData",
                                   properties={"InstanceID": "KVM:always", prop: Uint16(value)})
            with pytest.raises(pywbem.CIMError) as err:
                conn.InvokeMethod("ModifySystemSettings", service(conn), SystemSettings=settings)
            assert err.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
            assert prop in err.value.status_description
    finally:
        code, log = srv.stop()
    assert code == 0, log


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_vm_lifecycle_indications_reach_a_pywbem_listener(virt, scheme):
    from conftest import free_port
    received = []
    port = free_port()
    if scheme == "http":
        listener = pywbem.WBEMListener("127.0.0.1", http_port=port)
    else:
        # The listener presents the server's own certificate, which the server trusts when
        # [tls] trusted names none: the delivery verifies it and the name 127.0.0.1.
        tls = virt.data_dir / "tls"
        listener = pywbem.WBEMListener("127.0.0.1", https_port=port, certfile=str(tls / "cert.pem"),
                                       keyfile=str(tls / "key.pem"))
    listener.add_callback(lambda indication, host: received.append(indication))
    listener.start()
    # DSP1054: the indication service says how delivery behaves, and is the profile's
    # central instance.
    interop = virt.conn(namespace="interop")
    (service_,) = interop.EnumerateInstances("CIM_IndicationService")
    assert (service_["DeliveryRetryAttempts"], service_["DeliveryRetryInterval"],
            service_["SubscriptionRemovalAction"]) == (30, 10, 3)
    (profile,) = pywbem.WBEMServer(interop).get_selected_profiles("DMTF", "Indications")
    assert [p.classname for p in interop.AssociatorNames(
        profile.path, AssocClass="CIM_ElementConformsToProfile")] == ["CIM_IndicationService"]
    manager = pywbem.WBEMSubscriptionManager(subscription_manager_id=f"cimvirt-test-{scheme}")
    server_id = manager.add_server(pywbem.WBEMServer(virt.conn(namespace="interop")))
    try:
        destination = manager.add_destination(server_id, f"{scheme}://127.0.0.1:{port}",
                                              destination_id="listener", persistence_type="transient")
        lifecycle = manager.add_filter(server_id, "root/virt",
                                       "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA KVM_ComputerSystem",
                                       query_language="WQL", filter_id="lifecycle")
        alerts = manager.add_filter(server_id, "root/virt", "SELECT * FROM CIM_AlertIndication",
                                    query_language="WQL", filter_id="alerts")
        manager.add_subscriptions(server_id, lifecycle.path, [destination.path])
        manager.add_subscriptions(server_id, alerts.path, [destination.path])

        conn = virt.conn()
        system = define(conn, "indicated", vcpus=1, memory_mib=16)[1]["ResultingSystem"]
        assert change(conn, system, 2) == 0
        wait_advancing(virt, "indicated")
        assert change(conn, system, 3) == 0
        assert conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)[0] == 0

        def of(classname):
            return [i for i in received if i.classname == classname
                    and i["SourceInstance"]["Name"] == "indicated"]
        deadline = time.monotonic() + 20
        while not (of("KVM_ComputerSystemDeletedIndication")
                   and len(of("KVM_ComputerSystemModifiedIndication")) >= 2):
            assert time.monotonic() < deadline, f"indications so far: {[i.classname for i in received]}"
            time.sleep(0.05)
        (created,) = of("KVM_ComputerSystemCreatedIndication")
        assert created["SourceInstance"]["EnabledState"] == 3
        assert created["SourceInstanceModelPath"].endswith('KVM_ComputerSystem.CreationClassName="KVM_ComputerSystem",Name="indicated"')
        states = [(i["PreviousInstance"]["EnabledState"], i["SourceInstance"]["EnabledState"])
                  for i in of("KVM_ComputerSystemModifiedIndication")]
        # Off to running (the process reports running at once), then running to off.
        assert states == [(3, 2), (2, 3)], states
        assert isinstance(created["IndicationTime"], pywbem.CIMDateTime)
        assert len(of("KVM_ComputerSystemDeletedIndication")) == 1
        assert not [i for i in received if i.classname.endswith("AlertIndication")]
    finally:
        manager.remove_server(server_id)
        listener.stop()
