"""OVF import and export (DSP0243) through KVM_VirtualSystemManagementService, with pywbem.

Every descriptor in ../shared/ovf (VMware, VirtualBox, XenCenter, vCloud Director, Cisco,
Canonical and DSP0243's own example) is imported with disk files qemu-img makes in the
format each names, and the VMs it gives are checked against ../shared/ovf/SOURCES.md. An
export is imported on a second server, started, and its disk read back.
"""

import hashlib
import os
import shutil
import subprocess
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16

from conftest import ADMIN, OPERATOR, REPO, Server
from test_virt import change, define, enabled_state, service, wait_console, wait_job

SHARED_OVF = REPO.parent / "shared" / "ovf"
OVF_NS = ("http://schemas.dmtf.org/ovf/envelope/1", "http://schemas.dmtf.org/ovf/envelope/2")
GIB = 1 << 30

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None and not os.environ.get("CI"),
                                reason="NOT RUN: qemu-img (qemu-utils) is not installed")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    a = Server(tmp_path_factory.mktemp("ovf-a"), operator=True)
    b = Server(tmp_path_factory.mktemp("ovf-b"))
    yield a, b
    for server in (a, b):
        conn = server.conn()
        for system in conn.EnumerateInstanceNames("KVM_ComputerSystem"):
            if enabled_state(conn, system) != 3:
                change(conn, system, 3)
            conn.InvokeMethod("DestroySystem", service(conn), AffectedSystem=system)
        server.stop()


def units_bytes(units):
    """A capacityAllocationUnits value ("byte * 2^30") as bytes."""
    if not units:
        return 1
    compact = units.replace(" ", "").lower()
    assert compact.startswith("byte"), units
    factor = 1
    for part in compact.split("*")[1:]:
        base, _, exponent = part.partition("^")
        factor *= int(base) ** int(exponent or 1)
    return factor


def attr(element, name):
    for ns in OVF_NS:
        if f"{{{ns}}}{name}" in element.attrib:
            return element.attrib[f"{{{ns}}}{name}"]
    return None


def make_package(descriptor, into):
    """Copies a descriptor into `into` and makes each disk file it references with qemu-img
    (the format its ovf:format names, the capacity its Disk gives), and other files (an ISO)
    as 360 KiB of bytes."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / descriptor
    shutil.copy(SHARED_OVF / descriptor, target)
    # XenCenter's descriptor says encoding="utf-16" over 8-bit text; the parser here is
    # told otherwise (cimvirt tolerates it on its own).
    root = ET.fromstring(target.read_bytes().replace(b'encoding="utf-16"', b""))
    files = {attr(f, "id"): attr(f, "href") for f in root.iter() if f.tag.endswith("}File")}
    disks = {attr(d, "fileRef"): d for d in root.iter() if d.tag.endswith("}Disk")
             and attr(d, "fileRef")}
    for file_id, href in files.items():
        path = into / href
        disk = disks.get(file_id)
        if disk is None:
            path.write_bytes(b"CD001" * ((360 << 10) // 5))
            continue
        capacity = int(attr(disk, "capacity")) * units_bytes(attr(disk, "capacityAllocationUnits"))
        fmt = (attr(disk, "format") or "").lower()
        if "streamoptimized" in fmt:
            args = ["-f", "vmdk", "-o", "subformat=streamOptimized"]
        elif "vhd" in fmt:
            args = ["-f", "vpc"]
        else:
            args = ["-f", "vmdk"]
        subprocess.run(["qemu-img", "create", "-q", *args, str(path), str(capacity)], check=True)
    return target


def import_package(conn, path, **settings):
    """ImportSystemDefinition; returns (job instance, the systems it names)."""
    args = {"SystemDefinitionFile": str(path)}
    if settings:
        args["ImportSettingData"] = CIMInstance("KVM_ImportSettingData", properties=settings)
    rv, out = conn.InvokeMethod("ImportSystemDefinition", service(conn), **args)
    assert rv == 4096, rv
    return wait_job(conn, out["Job"], timeout=120), out


def shape(conn, name):
    """(vCPUs, memory MiB, disk capacities, NIC count) of VM `name` from its RASDs."""
    rasds = [r for r in conn.EnumerateInstances("CIM_ResourceAllocationSettingData")
             if r["InstanceID"].startswith(f"{name}/")]
    by_id = {r["InstanceID"]: r for r in rasds}
    disks = sorted((r["InstanceID"], r["VirtualQuantity"]) for r in rasds
                   if r.classname == "KVM_DiskResourceAllocationSettingData")
    nics = [r for r in rasds if r.classname == "KVM_NetResourceAllocationSettingData"]
    memory = by_id[f"{name}/mem"]
    unit = {"kilobytes": 1 << 10, "megabytes": 1 << 20}.get(memory["AllocationUnits"].lower())
    return (by_id[f"{name}/proc"]["VirtualQuantity"], memory["VirtualQuantity"] * unit >> 20,
            [quantity for _, quantity in disks], len(nics))


def destroy(conn, name):
    conn.InvokeMethod("DestroySystem", service(conn),
                      AffectedSystem=CIMInstanceName("KVM_ComputerSystem", keybindings={
                          "Name": name, "CreationClassName": "KVM_ComputerSystem"}))


# From ../shared/ovf/SOURCES.md: (file, [(VM, vCPUs, memory MiB, disk bytes, NICs)], skipped).
IMPORTS = [
    ("vmware.ovf", [("vmw", 2, 1536, [GIB], 4)], ["Video card (ResourceType 24)",
                                                  "VMCI device (ResourceType 1)"]),
    ("test-i-ova.ovf", [("TestOva", 1, 2048, [32 * GIB], 1)], ["Floppy 1 (ResourceType 14)"]),
    ("esxvmovf-25262174.ovf", [("esxvm-sb-62272164-rZ0", 2, 8192, [32 * GIB], 1)], []),
    ("ubuntu-xenial-juju.ovf", [("ubuntu-xenial-16.04-cloudimg-20170815", 2, 1024, [10 * GIB], 0)],
     []),
    # The required CD-ROM 1 has the package's ISO (360 KiB here): a read-only second disk.
    ("csr1000v.ovf", [("Cisco CSR 1000V Cloud Services Router", 1, 4096, [GIB, 360 << 10], 3)],
     ["CD-ROM 2 (ResourceType 15)", "Serial 2 (ResourceType 21)"]),
    ("sun-vapp-multiVM.ovf", [("sun-xp-sp3", 2, 512, [1536 << 20], 1),
                              ("sun-test", 2, 512, [1536 << 20], 1)], []),
    ("sample_app.ovf", [("Web server", 1, 64, [10 << 20], 0)], []),
    # DSP0243's example: its StorageItems give sizes (1 GiB) and no disk file.
    ("virtualsystemcollection.ovf", [("Virtual Appliance One", 1, 1024, [GIB], 1),
                                     ("Virtual Appliance Two", 1, 1024, [GIB], 1)], []),
]


@pytest.mark.parametrize("descriptor,systems,skipped", IMPORTS, ids=[i[0] for i in IMPORTS])
def test_real_descriptors_import_as_their_sources_say(hosts, tmp_path, descriptor, systems, skipped):
    server, _ = hosts
    conn = server.conn()
    path = make_package(descriptor, tmp_path / "package")
    job, out = import_package(conn, path)
    assert job["JobState"] == 7, job["ErrorDescription"]
    assert job["PercentComplete"] == 100
    names = [s["Name"] for s in out["ResultingSystems"]]
    assert names == [s[0] for s in systems]
    assert out["ResultingSystem"]["Name"] == names[0]
    for name, vcpus, memory, disks, nics in systems:
        assert shape(conn, name) == (vcpus, memory, disks, nics), name
        assert conn.GetInstance(CIMInstanceName("KVM_ComputerSystem", keybindings={
            "Name": name, "CreationClassName": "KVM_ComputerSystem"}))["EnabledState"] == 3
    for item in skipped:
        assert item in job["JobStatus"], job["JobStatus"]
    for name in names:
        destroy(conn, name)


@pytest.mark.parametrize("descriptor,items", [
    ("vbox1.ovf", ["floppy0 (ResourceType 14)"]),
    ("win2k3_centos_vms.ovf", ["Floppy Drive 1 (ResourceType 14)"]),
])
def test_required_items_a_kvm_host_lacks_are_refused_by_name_unless_lax(
        hosts, tmp_path, descriptor, items):
    server, _ = hosts
    conn = server.conn()
    path = make_package(descriptor, tmp_path / "package")
    volumes_before = sorted(os.listdir(server.data_dir / "images"))
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("ImportSystemDefinition", service(conn), SystemDefinitionFile=str(path))
    assert refused.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
    for item in items:
        assert item in refused.value.status_description
    assert sorted(os.listdir(server.data_dir / "images")) == volumes_before
    # Lax: skipped and reported, as ovftool --lax does.
    job, out = import_package(conn, path, Lax=True)
    assert job["JobState"] == 7, job["ErrorDescription"]
    for item in items:
        assert f"skipped {item}" in job["JobStatus"]
    for system in out["ResultingSystems"]:
        destroy(conn, system["Name"])


def test_ovf_0_9_and_other_files_are_refused_with_the_reason(hosts, tmp_path):
    server, _ = hosts
    conn = server.conn()
    cases = [
        (SHARED_OVF / "v0.9.ovf", pywbem.CIM_ERR_NOT_SUPPORTED, "OVF 0.9"),
        (tmp_path / "missing.ovf", pywbem.CIM_ERR_NOT_FOUND, "missing.ovf"),
        (REPO / "README.md", pywbem.CIM_ERR_INVALID_PARAMETER, "not an OVF package"),
    ]
    for path, code, text in cases:
        with pytest.raises(pywbem.CIMError) as refused:
            conn.InvokeMethod("ImportSystemDefinition", service(conn), SystemDefinitionFile=str(path))
        assert refused.value.status_code == code, (path, refused.value)
        assert text in refused.value.status_description
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("ImportSystemDefinition", service(conn), SystemDefinitionFile="x.ovf")
    assert refused.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
    # A package's files stay inside it.
    evil = tmp_path / "evil"
    evil.mkdir()
    text = (SHARED_OVF / "vmware.ovf").read_text().replace('ovf:href="input.vmdk"',
                                                           'ovf:href="../../etc/passwd"')
    assert "../../etc/passwd" in text
    (evil / "evil.ovf").write_text(text)
    with pytest.raises(pywbem.CIMError) as refused:
        conn.InvokeMethod("ImportSystemDefinition", service(conn),
                          SystemDefinitionFile=str(evil / "evil.ovf"))
    assert "only files inside the package" in refused.value.status_description
    # A setting the method does not read is refused, not dropped.
    for settings in (CIMInstance("KVM_ImportSettingData", properties={"Laxx": True}),
                     CIMInstance("KVM_VirtualSystemSettingData",
                                 properties={"VirtualSystemIdentifier": "x", "Kernel": "/vmlinux"})):
        with pytest.raises(pywbem.CIMError) as refused:
            conn.InvokeMethod("ImportSystemDefinition", service(conn),
                              SystemDefinitionFile=str(SHARED_OVF / "vmware.ovf"),
                              ImportSettingData=settings)
        assert refused.value.status_code == pywbem.CIM_ERR_NOT_SUPPORTED
        assert "is not a setting this method reads" in refused.value.status_description
    # Only administrators read host files through it.
    operator = server.conn(creds=OPERATOR)
    with pytest.raises(pywbem.CIMError) as refused:
        operator.InvokeMethod("ImportSystemDefinition", service(operator),
                              SystemDefinitionFile=str(SHARED_OVF / "vmware.ovf"))
    assert refused.value.status_code == pywbem.CIM_ERR_ACCESS_DENIED


def test_a_manifest_mismatch_refuses_the_import_and_leaves_nothing(hosts, tmp_path):
    server, _ = hosts
    conn = server.conn()
    path = make_package("vmware.ovf", tmp_path / "package")
    disk = tmp_path / "package" / "input.vmdk"
    lines = [f"SHA1({p.name})= {hashlib.sha1(p.read_bytes()).hexdigest()}" for p in (path, disk)]
    manifest = tmp_path / "package" / "vmware.mf"
    manifest.write_text("\n".join(lines) + "\n")
    job, out = import_package(conn, path, VirtualSystemName="manifested")
    assert job["JobState"] == 7, job["ErrorDescription"]
    destroy(conn, "manifested")
    before = sorted(os.listdir(server.data_dir / "images"))
    with open(disk, "ab") as f:
        f.write(b"tampered")
    job, out = import_package(conn, path, VirtualSystemName="tampered")
    assert job["JobState"] == 10
    assert "input.vmdk does not match the manifest" in job["ErrorDescription"]
    assert "tampered" not in [s["Name"] for s in conn.EnumerateInstanceNames("KVM_ComputerSystem")]
    assert sorted(os.listdir(server.data_dir / "images")) == before


def test_an_ova_with_a_gzip_compressed_disk_is_read_in_place(hosts, tmp_path):
    server, _ = hosts
    conn = server.conn()
    package = tmp_path / "package"
    path = make_package("vmware.ovf", package)
    disk = package / "input.vmdk"
    subprocess.run(["gzip", "-k", str(disk)], check=True)
    text = path.read_text().replace('ovf:href="input.vmdk"',
                                    'ovf:href="input.vmdk.gz" ovf:compression="gzip"')
    path.write_text(text)
    ova = tmp_path / "vmw.ova"
    with tarfile.open(ova, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(path, arcname="vmware.ovf")
        tar.add(package / "input.vmdk.gz", arcname="input.vmdk.gz")
    job, out = import_package(conn, ova, VirtualSystemName="from-ova")
    assert job["JobState"] == 7, job["ErrorDescription"]
    assert shape(conn, "from-ova") == (2, 1536, [GIB], 4)
    leftovers = [n for n in os.listdir(server.data_dir / "images") if n.startswith(".")]
    assert leftovers == [".cimvirt-volumes"]
    destroy(conn, "from-ova")


def test_export_then_import_on_a_second_host_gives_the_same_vm_and_disk(hosts, tmp_path):
    a, b = hosts
    conn_a, conn_b = a.conn(), b.conn()
    rv, _ = define(conn_a, "porter", vcpus=2, memory_mib=48, Description="exported and back")
    assert rv == 0
    made = conn_a.InvokeMethod("CreateResourceInPool", pool_service(conn_a),
                               Settings=CIMInstance("KVM_StorageVolumeResourceAllocationSettingData",
                                                    properties={"VolumeName": "porter.img",
                                                                "Capacity": pywbem.Uint64(64 << 20)}),
                               Pool=default_pool(conn_a))
    assert made[0] == 0
    image = a.data_dir / "images" / "porter.img"
    pattern = os.urandom(1 << 20)
    with open(image, "r+b") as f:
        f.seek(5 << 20)
        f.write(pattern)
    disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(17), "Address": str(image)})
    nic = CIMInstance("KVM_NetResourceAllocationSettingData", properties={"ResourceType": Uint16(10)})
    settings = [p for p in conn_a.EnumerateInstanceNames("KVM_VirtualSystemSettingData")
                if p["InstanceID"] == "KVM:porter"][0]
    rv, _ = conn_a.InvokeMethod("AddResourceSettings", service(conn_a), AffectedConfiguration=settings,
                                ResourceSettings=[disk, nic])
    assert rv == 0
    system = CIMInstanceName("KVM_ComputerSystem", keybindings={
        "Name": "porter", "CreationClassName": "KVM_ComputerSystem"})
    # A running VM is not exported.
    assert change(conn_a, system, 2) == 0
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    rv, out = conn_a.InvokeMethod("ExportSystemDefinition", service(conn_a), ComputerSystem=system,
                                  ExportDirectory=str(out_dir))
    assert rv == 5, "Invalid State: a running VM is not exported"
    assert change(conn_a, system, 3) == 0
    for ova in (False, True):
        rv, out = conn_a.InvokeMethod(
            "ExportSystemDefinition", service(conn_a), ComputerSystem=system,
            ExportDirectory=str(out_dir),
            ExportSettingData=CIMInstance("KVM_ExportSettingData",
                                          properties={"CreateOva": ova}))
        assert rv == 4096
        job = wait_job(conn_a, out["Job"], timeout=120)
        assert job["JobState"] == 7, job["ErrorDescription"]
    assert sorted(os.listdir(out_dir)) == ["porter-disk1.vmdk", "porter.mf", "porter.ova",
                                           "porter.ovf"]
    # Nothing is overwritten.
    rv, out = conn_a.InvokeMethod("ExportSystemDefinition", service(conn_a), ComputerSystem=system,
                                  ExportDirectory=str(out_dir))
    job = wait_job(conn_a, out["Job"])
    assert job["JobState"] == 10 and "exists already" in job["ErrorDescription"]
    # The descriptor is DMTF's OVF envelope (DSP8023), by its schema.
    subprocess.run(["xmllint", "--noout", "--schema",
                    str(SHARED_OVF / "schema" / "ovf-envelope-1-local.xsd"), str(out_dir / "porter.ovf")],
                   check=True, capture_output=True)
    manifest = (out_dir / "porter.mf").read_text()
    for name in ("porter.ovf", "porter-disk1.vmdk"):
        digest = hashlib.sha256((out_dir / name).read_bytes()).hexdigest()
        assert f"SHA256({name})= {digest}\n" in manifest
    info = subprocess.run(["qemu-img", "info", str(out_dir / "porter-disk1.vmdk")],
                          capture_output=True, text=True, check=True).stdout
    assert "streamOptimized" in info
    with tarfile.open(out_dir / "porter.ova") as tar:
        assert tar.getnames() == ["porter.ovf", "porter.mf", "porter-disk1.vmdk"]

    nic_before = [r["Address"] for r in conn_a.EnumerateInstances("KVM_NetResourceAllocationSettingData")
                  if r["InstanceID"].startswith("porter/")]
    for package, keep in ((out_dir / "porter.ovf", True), (out_dir / "porter.ova", False)):
        name = "porter-" + package.suffix[1:]
        rv, out = conn_b.InvokeMethod(
            "ImportSystemDefinition", service(conn_b), SystemDefinitionFile=str(package),
            GenerateNewSystemIdentifier=not keep,
            ImportSettingData=CIMInstance("KVM_VirtualSystemSettingData",
                                          properties={"VirtualSystemIdentifier": name}))
        job = wait_job(conn_b, out["Job"], timeout=120)
        assert job["JobState"] == 7, job["ErrorDescription"]
        assert shape(conn_b, name) == shape(conn_a, "porter")
        macs = [r["Address"] for r in conn_b.EnumerateInstances("KVM_NetResourceAllocationSettingData")
                if r["InstanceID"].startswith(f"{name}/")]
        assert (macs == nic_before) == keep
        (vssd,) = [v for v in conn_b.EnumerateInstances("KVM_VirtualSystemSettingData")
                   if v["InstanceID"] == f"KVM:{name}"]
        assert vssd["Description"] == "exported and back"
        (disk_rasd,) = [r for r in conn_b.EnumerateInstances("KVM_DiskResourceAllocationSettingData")
                        if r["InstanceID"] == f"{name}/vda"]
        with open(disk_rasd["Address"], "rb") as f:
            f.seek(5 << 20)
            assert f.read(1 << 20) == pattern
        system_b = out["ResultingSystem"]
        assert change(conn_b, system_b, 2) == 0
        wait_console(b, name, "cimvirt test guest")
        assert change(conn_b, system_b, 3) == 0


def pool_service(conn):
    (path,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
    return path


def default_pool(conn):
    (pool,) = [p for p in conn.EnumerateInstanceNames("KVM_DiskPool")
               if p["InstanceID"] == "DiskPool/default"]
    return pool


def test_the_methods_are_in_the_management_capabilities(hosts):
    server, _ = hosts
    conn = server.conn()
    (caps,) = conn.EnumerateInstances("KVM_VirtualSystemManagementCapabilities")
    assert set(caps["AsynchronousMethodsSupported"]) == {32768, 32769}
    cls = conn.GetClass("KVM_VirtualSystemManagementService", LocalOnly=False)
    assert {"ImportSystemDefinition", "ExportSystemDefinition"} <= set(cls.methods)


def readme_ovf_commands():
    """The shell blocks of README.md's OVF section, each as one script."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Importing and exporting VMs (OVF)", 1)[1].split("\n### ", 1)[0]
    blocks = section.split("```sh\n")[1:]
    return [block.split("```", 1)[0] for block in blocks]


def test_the_readme_ovf_commands_work_as_shown(hosts, tmp_path):
    server, _ = hosts
    blocks = readme_ovf_commands()
    assert len(blocks) == 2, blocks
    ovf = tmp_path / "srv" / "ovf"
    ovf.mkdir(parents=True)
    appliance = make_package("vmware.ovf", tmp_path / "appliance")
    with tarfile.open(ovf / "appliance.ova", "w", format=tarfile.USTAR_FORMAT) as tar:
        tar.add(appliance, arcname="appliance.ovf")
        tar.add(appliance.parent / "input.vmdk", arcname="input.vmdk")
    make_package("vbox1.ovf", ovf)
    web = make_package("sample_app.ovf", ovf)
    web.rename(ovf / "web.ovf")
    export = tmp_path / "srv" / "export"
    export.mkdir()
    from test_wsmancli import WSMAN
    env = {**os.environ, "PW": ADMIN[1],
           "PATH": f"{Path(WSMAN).parent}:{Path(os.sys.executable).parent}:{os.environ['PATH']}"}

    def run(script):
        script = (("set -euo pipefail\n" + script)
                  .replace("127.0.0.1:5988", f"127.0.0.1:{server.http_port}")
                  .replace("-P 5985", f"-P {server.http_port}")
                  .replace("/srv/", f"{tmp_path}/srv/"))
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    # The imports run as jobs: as a person would, the export waits for its VM.
    pywbemcli_block, wsman_block = blocks
    before, export_command = pywbemcli_block.split(
        "$W instance invokemethod KVM_VirtualSystemManagementService.? ExportSystemDefinition")
    out = run(before + wsman_block)
    assert out.count("ReturnValue=4096") == 2 and "<p:ReturnValue>4096</p:ReturnValue>" in out
    conn = server.conn()
    names = {"vmw", "vbox", "Web server"}
    deadline = time.monotonic() + 60
    while not names <= {p["Name"] for p in conn.EnumerateInstanceNames("KVM_ComputerSystem")}:
        assert time.monotonic() < deadline, "the imported VMs were not defined"
        time.sleep(0.1)
    w_line = before.splitlines()[0]
    assert w_line.startswith("W=")
    out = run(w_line + "\n$W instance invokemethod KVM_VirtualSystemManagementService.? "
              "ExportSystemDefinition" + export_command)
    assert "ReturnValue=4096" in out
    deadline = time.monotonic() + 60
    while not (export / "vbox.ova").exists():
        assert time.monotonic() < deadline, "vbox.ova was not written"
        time.sleep(0.1)
    for name in names:
        destroy(conn, name)


def test_the_ovf_benchmark_runs_and_prints_its_table():
    """README's `scripts/bench-ovf`, at one small run: its table comes out."""
    result = subprocess.run([str(REPO / "scripts" / "bench-ovf")], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "RUNS": "1", "SIZE_MIB": "16",
                                              "CIMVIRT_PYTHON": os.sys.executable})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| sparse |" in out and "| fully written |" in out, out
    assert "PercentComplete values a client polling" in out, out


def test_an_imported_vm_exported_and_imported_again_keeps_its_settings_and_disks(hosts, tmp_path):
    """Cisco's appliance (a disk, the ISO on a required CD drive, three NICs) imported,
    exported as an OVA and imported again: the same shape, the same bytes on each disk."""
    server, _ = hosts
    conn = server.conn()
    path = make_package("csr1000v.ovf", tmp_path / "package")
    job, _ = import_package(conn, path, VirtualSystemName="csr")
    assert job["JobState"] == 7, job["ErrorDescription"]
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    system = CIMInstanceName("KVM_ComputerSystem", keybindings={
        "Name": "csr", "CreationClassName": "KVM_ComputerSystem"})
    rv, out = conn.InvokeMethod("ExportSystemDefinition", service(conn), ComputerSystem=system,
                                ExportDirectory=str(out_dir),
                                ExportSettingData=CIMInstance("KVM_ExportSettingData",
                                                              properties={"CreateOva": True}))
    assert rv == 4096
    assert wait_job(conn, out["Job"])["JobState"] == 7
    job, _ = import_package(conn, out_dir / "csr.ova", VirtualSystemName="csr-again")
    assert job["JobState"] == 7, job["ErrorDescription"]
    assert shape(conn, "csr-again") == shape(conn, "csr") == (1, 4096, [GIB, 360 << 10], 3)

    def disks(name):
        return sorted((r["InstanceID"].split("/")[1], r["Address"], r["readonly"])
                      for r in conn.EnumerateInstances("KVM_DiskResourceAllocationSettingData")
                      if r["InstanceID"].startswith(f"{name}/"))

    for (device, first, ro1), (_, second, ro2) in zip(disks("csr"), disks("csr-again")):
        assert ro1 == ro2, device
        assert subprocess.run(["cmp", "-s", first, second]).returncode == 0, device
    assert [ro for _, _, ro in disks("csr")] == [False, True]
    # The jobs are joined to their VMs: the import created it, the export read it.
    effects = {a["AffectingElement"]["InstanceID"]: a["ElementEffects"]
               for a in conn.EnumerateInstances("KVM_AffectedJobElement")
               if a["AffectedElement"]["Name"] in ("csr", "csr-again")}
    assert sorted(map(list, effects.values())) == [[1], [5], [5]], effects
    destroy(conn, "csr")
    destroy(conn, "csr-again")
