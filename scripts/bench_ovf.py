"""OVF export and import through CIM, against qemu-img alone, in the same run: a release
cimvirtd, a VM with one raw disk of SIZE_MIB in the default storage pool, sparse (nothing
written) and fully written (random bytes, the worst case for streamOptimized's compression).

For each, RUNS times: ExportSystemDefinition to a directory (streamOptimized VMDK, SHA-256
manifest), then ImportSystemDefinition of that package under another name (manifest check,
conversion to raw), each timed from the call to the job's end as a client polling the job
every 20 ms sees it; beside them `qemu-img convert` of the same disk to streamOptimized VMDK
and of that VMDK back to raw, the conversion each method's job runs, with nothing else.
Also reports the distinct PercentComplete values the client saw while the jobs ran, and the
server's RSS and threads (from /proc) before, at their highest while the jobs ran (sampled
at each poll), and after.
Run through scripts/bench-ovf."""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16, Uint64

from bench_virt import PASSWORD, rss_kib, start_server, stop_server

SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
RUNS = int(os.environ.get("RUNS", "3"))


SERVER_PEAK = {"rss": 0, "threads": 0}


def sample(pid):
    """The server's RSS (KiB) and threads now; the peaks are kept in SERVER_PEAK."""
    now = {"rss": rss_kib(pid), "threads": rss_kib(pid, "Threads:")}
    for key, value in now.items():
        SERVER_PEAK[key] = max(SERVER_PEAK[key], value)
    return now


def wait_job(conn, job, percents, pid):
    while True:
        instance = conn.GetInstance(job)
        sample(pid)
        percents.add(int(instance["PercentComplete"]))
        if instance["JobState"] in (7, 8, 10):
            assert instance["JobState"] == 7, instance["ErrorDescription"]
            return
        time.sleep(0.02)


def timed(call):
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def system(name):
    return CIMInstanceName("KVM_ComputerSystem", keybindings={
        "Name": name, "CreationClassName": "KVM_ComputerSystem"}, namespace="root/virt")


def make_vm(conn, svc, data, name, written):
    """A VM whose one disk is a pool volume of SIZE_MIB, sparse or written through."""
    (pools,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
    (pool,) = [p for p in conn.EnumerateInstanceNames("KVM_DiskPool")
               if p["InstanceID"] == "DiskPool/default"]
    settings = CIMInstance("KVM_StorageVolumeResourceAllocationSettingData",
                           properties={"VolumeName": f"{name}.img",
                                       "Capacity": Uint64(SIZE_MIB << 20)})
    rv, _ = conn.InvokeMethod("CreateResourceInPool", pools, Settings=settings, Pool=pool)
    assert rv == 0, rv
    image = data / "images" / f"{name}.img"
    if written:
        with open(image, "r+b") as f:
            for _ in range(SIZE_MIB):
                f.write(os.urandom(1 << 20))
    vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": name})
    disk = CIMInstance("KVM_DiskResourceAllocationSettingData",
                       properties={"ResourceType": Uint16(17), "Address": str(image)})
    rv, _ = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd, ResourceSettings=[disk])
    assert rv == 0, rv
    return image


def destroy(conn, svc, name):
    conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system(name))


def main():
    binary = sys.argv[1]
    server, data, port = start_server(binary)
    conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", ("admin", PASSWORD),
                                 default_namespace="root/virt", timeout=600)
    (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    rows, percents = [], set()
    before = sample(server.pid)
    SERVER_PEAK.update(rss=0, threads=0)
    try:
        for kind, written in (("sparse", False), ("fully written", True)):
            name = f"bench-{'written' if written else 'sparse'}"
            image = make_vm(conn, svc, data, name, written)
            samples = {"export": [], "import": [], "to vmdk": [], "to raw": []}
            for run in range(RUNS):
                out_dir = Path(tempfile.mkdtemp(prefix="cimvirt-ovf-", dir=data))

                def export():
                    rv, out = conn.InvokeMethod("ExportSystemDefinition", svc,
                                                ComputerSystem=system(name),
                                                ExportDirectory=str(out_dir))
                    assert rv == 4096, rv
                    wait_job(conn, out["Job"], percents, server.pid)

                def import_():
                    rv, out = conn.InvokeMethod(
                        "ImportSystemDefinition", svc,
                        SystemDefinitionFile=str(out_dir / f"{name}.ovf"),
                        ImportSettingData=CIMInstance("KVM_ImportSettingData", properties={
                            "VirtualSystemName": f"{name}-{run}"}))
                    assert rv == 4096, rv
                    wait_job(conn, out["Job"], percents, server.pid)

                samples["export"].append(timed(export))
                samples["import"].append(timed(import_))
                destroy(conn, svc, f"{name}-{run}")
                peer_vmdk = out_dir / "peer.vmdk"
                samples["to vmdk"].append(timed(lambda: subprocess.run(
                    ["qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o",
                     "subformat=streamOptimized", str(image), str(peer_vmdk)], check=True)))
                samples["to raw"].append(timed(lambda: subprocess.run(
                    ["qemu-img", "convert", "-f", "vmdk", "-O", "raw", str(peer_vmdk),
                     str(out_dir / "peer.raw")], check=True)))
                vmdk_bytes = (out_dir / f"{name}-disk1.vmdk").stat().st_size
                subprocess.run(["rm", "-rf", str(out_dir)], check=True)
                for leftover in (data / "images").glob(f"{name}-{run}*"):
                    leftover.unlink()
            destroy(conn, svc, name)
            med = {k: statistics.median(v) for k, v in samples.items()}
            rows.append((kind, med, vmdk_bytes))
        after = sample(server.pid)
    finally:
        stop_server(server, data)
        subprocess.run(["rm", "-rf", str(data)])

    print(f"### OVF export and import of a VM with a {SIZE_MIB} MiB disk "
          f"(median of {RUNS}; qemu-img {qemu_version()})\n")
    print("| disk | VMDK written | ExportSystemDefinition | qemu-img raw to VMDK | ratio "
          "| ImportSystemDefinition | qemu-img VMDK to raw | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, med, vmdk_bytes in rows:
        def cell(ms):
            return f"{ms:.0f} ms ({SIZE_MIB / (ms / 1000):.0f} MiB/s)"
        print(f"| {kind} | {vmdk_bytes / (1 << 20):.1f} MiB | {cell(med['export'])} "
              f"| {cell(med['to vmdk'])} | {med['export'] / med['to vmdk']:.2f} "
              f"| {cell(med['import'])} | {cell(med['to raw'])} "
              f"| {med['import'] / med['to raw']:.2f} |")
    print(f"\nPercentComplete values a client polling every 20 ms saw: "
          f"{len(percents)} distinct ({min(percents)} to {max(percents)})")
    print("\n| cimvirtd | RSS | threads |\n|---|---:|---:|")
    print(f"| before | {before['rss'] / 1024:.1f} MiB | {before['threads']} |")
    print(f"| highest while the jobs ran | {SERVER_PEAK['rss'] / 1024:.1f} MiB "
          f"| {SERVER_PEAK['threads']} |")
    print(f"| after | {after['rss'] / 1024:.1f} MiB | {after['threads']} |")


def qemu_version():
    out = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if out else "?"


if __name__ == "__main__":
    main()
