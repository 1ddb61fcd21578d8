"""VM processes in their sandbox, seen from outside as an operator would: /proc of a running
VM's process (its own unprivileged user, an empty root, no capabilities, a seccomp filter,
namespaces of its own), the users handed out from the configured range and taken back after
a server restart, and a VM whose process makes a forbidden system call while the server and
the other VMs go on."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16, Uint32, Uint64

from conftest import BINARY, REPO, Server
from test_virt import VmSocket, change, define, heartbeats, service, vm_path, wait_job

if not os.path.exists("/dev/kvm"):
    if os.environ.get("CI"):
        raise RuntimeError("/dev/kvm is missing on a CI machine")
    pytest.skip("NOT RUN: this host has no /dev/kvm", allow_module_level=True)

RUNNING, DISABLED, CRASHED_ENABLED_STATE, ERROR = 2, 3, 3, 6


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # VM processes inherit the server's environment: this one lets them take the request
    # that makes a forbidden system call.
    os.environ["CIMVIRT_VMM_TEST_REQUESTS"] = "1"
    try:
        server = Server(tmp_path_factory.mktemp("sandbox"))
    finally:
        del os.environ["CIMVIRT_VMM_TEST_REQUESTS"]
    yield server
    code, log = server.stop()
    assert code == 0, log


def running_vm(srv, name):
    conn = srv.conn()
    rv, out = define(conn, name, vcpus=1, memory_mib=16)
    assert rv == 0
    system = out["ResultingSystem"]
    assert change(conn, system, RUNNING) == 0
    vm = VmSocket(vm_path(srv, name, "sock"))
    try:
        pid = vm.request({"request": "status"})["pid"]
    finally:
        vm.sock.close()
    return system, pid


def proc_status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def user_of(pid):
    """The (uid, gid) a process runs as, after checking that its real, effective, saved and
    filesystem ids agree."""
    status = proc_status(pid)
    uids, gids = set(status["Uid"].split()), set(status["Gid"].split())
    assert len(uids) == 1 and len(gids) == 1, status
    return int(uids.pop()), int(gids.pop())


def test_a_vm_process_runs_confined(srv):
    _, pid = running_vm(srv, "confined")
    assert os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "cimvirt-vmm"
    status = proc_status(pid)
    uid, gid = user_of(pid)
    assert uid != 0 and gid != 0, status
    assert status["Groups"] == "", status
    # Its root is an empty, read-only file system of its own: nothing of the host's.
    root = Path(f"/proc/{pid}/root")
    assert not (root / "etc" / "shadow").exists()
    assert list(root.iterdir()) == []
    assert os.stat(root).st_dev != os.stat("/").st_dev
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000", status
    assert status["NoNewPrivs"] == "1", status
    assert status["Seccomp"] == "2", status  # a filter
    for ns in ("mnt", "net", "ipc", "uts"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/{srv.proc.pid}/ns/{ns}"), ns
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert any(line.startswith("Max core file size") and line.split()[4:6] == ["0", "0"]
               for line in limits.splitlines()), limits
    # Every thread of the VM runs under a filter, not only the main one (a control
    # connection's thread may end while they are read).
    threads = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seccomp = proc_status(f"{pid}/task/{task.name}")["Seccomp"]
        except FileNotFoundError:
            continue
        assert seccomp == "2", task
        threads += 1
    assert threads >= 3

    # README's command shows the same for the newest VM process, which is this one.
    (command,) = [line for line in (REPO / "README.md").read_text().splitlines()
                  if line.startswith("grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):'")]
    shown = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    assert shown.stdout.splitlines() == [f"Uid:\t{status['Uid']}", "CapEff:\t0000000000000000",
                                         "NoNewPrivs:\t1", "Seccomp:\t2"], shown.stdout


def start_fails(server, system):
    """Starts a VM that must not start; returns why: its job's error, or the server's log
    line for a start refused at once (return code 4, Failed)."""
    conn = server.conn()
    rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(RUNNING))
    if rv == 4096:
        job = wait_job(conn, out["Job"])
        assert job["JobState"] != 7, job.tomof()
        return job["ErrorDescription"]
    assert rv == 4, rv
    (line,) = [line for line in server.log_path.read_text().splitlines()
               if "RequestStateChange(2) not done" in line][-1:]
    return line


def test_each_vm_runs_as_its_own_user_from_the_range_and_a_restarted_server_knows_them(tmp_path):
    config = tmp_path / "cimvirtd.toml"
    config.write_text('[vmm]\nusers = "1950000000-1950000001"\n')
    args = ["--config", str(config)]
    server = Server(tmp_path / "data", extra_args=args)
    systems = []
    try:
        first, first_pid = running_vm(server, "first")
        second, second_pid = running_vm(server, "second")
        first_user = user_of(first_pid)
        assert {user_of(first_pid), user_of(second_pid)} == \
            {(1950000000, 1950000000), (1950000001, 1950000001)}
        conn = server.conn()
        rv, out = define(conn, "third", vcpus=1, memory_mib=16)
        assert rv == 0
        third = out["ResultingSystem"]
        systems = [first, second, third]
        why = start_fails(server, third)
        assert "every id of the VM users' range 1950000000-1950000001 is taken" in why, why

        # A new server adopts the running VMs and their users with them.
        code, log = server.stop()
        assert code == 0, log
        server = Server(tmp_path / "data", extra_args=args, users=False)
        conn = server.conn()
        assert conn.GetInstance(first)["EnabledState"] == RUNNING
        why = start_fails(server, third)
        assert "is taken" in why, why
        # Once a VM stops, its user goes to the next.
        assert change(conn, first, DISABLED) == 0
        assert change(conn, third, RUNNING) == 0
        vm = VmSocket(vm_path(server, "third", "sock"))
        try:
            third_pid = vm.request({"request": "status"})["pid"]
        finally:
            vm.sock.close()
        assert user_of(third_pid) == first_user
    finally:
        for system in systems:
            change(server.conn(), system, DISABLED)
        code, log = server.stop()
    assert code == 0, log


def test_a_forbidden_system_call_ends_that_vm_alone_and_says_which(srv):
    conn = srv.conn()
    bystander, _ = running_vm(srv, "bystander")
    victim, pid = running_vm(srv, "victim")
    before = sum(heartbeats(srv, "bystander"))

    vm = VmSocket(vm_path(srv, "victim", "sock"))
    try:
        vm.request({"request": "test_forbidden_syscall"})
        raise AssertionError("the VM process answered a forbidden system call")
    except AssertionError as e:
        assert "closed its socket" in str(e), e
    finally:
        vm.sock.close()

    expected = "thread main (vmm filter) made the forbidden system call ptrace (101)"
    deadline = time.monotonic() + 15
    while True:
        system = conn.GetInstance(victim)
        if list(system["OperationalStatus"]) == [ERROR]:
            break
        assert time.monotonic() < deadline, system.tomof()
        time.sleep(0.05)
    assert system["EnabledState"] == CRASHED_ENABLED_STATE
    (description,) = system["StatusDescriptions"]
    assert description == f"the sandbox stopped the VM: {expected}", description
    assert not Path(f"/proc/{pid}").exists() or proc_status(pid)["State"].startswith("Z")

    console = vm_path(srv, "victim", "console.log").read_text(errors="replace")
    assert f"[cimvirt] the sandbox stopped the VM: {expected}" in console, console[-500:]
    log = srv.log_path.read_text()
    assert "VM process crashed" in log and expected in log, log[-2000:]

    # The server and the other VM went on.
    assert conn.GetInstance(bystander)["EnabledState"] == RUNNING
    deadline = time.monotonic() + 10
    while sum(heartbeats(srv, "bystander")) <= before:
        assert time.monotonic() < deadline, "the other VM stopped running"
        time.sleep(0.05)
    # A crashed VM starts again, confined as before.
    assert change(conn, victim, RUNNING) == 0
    assert conn.GetInstance(victim)["EnabledState"] == RUNNING
    assert "StatusDescriptions" not in conn.GetInstance(victim) or \
        not conn.GetInstance(victim)["StatusDescriptions"]


def test_the_request_for_tests_is_refused_without_its_variable(server):
    """The session server runs without CIMVIRT_VMM_TEST_REQUESTS: its VMs refuse it."""
    running_vm(server, "strict")
    vm = VmSocket(vm_path(server, "strict", "sock"))
    try:
        answer = vm.request({"request": "test_forbidden_syscall"})
        assert answer == {"response": "error", "kind": "bad_request",
                          "message": "requests for tests are off"}, answer
        assert vm.request({"request": "status"})["state"] == "running"
    finally:
        vm.sock.close()


def test_sandbox_false_runs_vms_unconfined_and_says_so_at_start(tmp_path):
    config = tmp_path / "cimvirtd.toml"
    config.write_text("[vmm]\nsandbox = false\n")
    server = Server(tmp_path / "data", extra_args=["--config", str(config)])
    try:
        _, pid = running_vm(server, "unconfined")
        status = proc_status(pid)
        assert status["Seccomp"] == "0" and status["NoNewPrivs"] == "0", status
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink(f"/proc/{server.proc.pid}/ns/net")
        assert "[vmm] sandbox = false: VM processes run with the server's privileges" in \
            server.log_path.read_text()
    finally:
        code, log = server.stop()
    assert code == 0, log


def test_the_benchmark_measures_the_sandbox_on_and_off():
    """README's `scripts/bench-virt --sandbox-only`, at two runs: both servers start, save
    and restore VMs, and each row has a figure for each."""
    env = dict(os.environ, RUNS="2", CIMVIRT_PYTHON=sys.executable)
    r = subprocess.run([str(REPO / "scripts" / "bench-virt"), "--sandbox-only"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Measurement (sandbox on vs off) |"), r.stdout
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "RequestStateChange(2) to the guest running",
        "RequestStateChange(2) of a saved VM to the guest running (restore)",
        "VM process RSS beside guest memory (16 MiB idle guest)"], r.stdout
    for row in rows[1:]:
        on, off = (float(cell.split("/")[0]) for cell in row.split("|")[3:5])
        assert on > 0 and off > 0, row


def test_a_vms_cgroup_gets_its_rasd_weight_and_limit_and_a_memory_limit(tmp_path):
    """This host has no cgroup v2, so the server is pointed (`[vmm] cgroup_root`) at a
    directory laid out as a cgroup v2 mount offering cpu and memory: what the server writes
    there is what a kernel would enforce. The kernel's side is not tested here."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpu memory\n")
    config = tmp_path / "cimvirtd.toml"
    config.write_text(f'[vmm]\ncgroup_root = "{cgroup}"\n')
    host = json.loads(subprocess.run([str(BINARY), "host", "--cgroup-root", str(cgroup)],
                                     capture_output=True, text=True, check=True).stdout)
    assert host["kvm"]["cgroup_cpu_unsupported"] is None
    assert host["kvm"]["cgroup_memory_unsupported"] is None
    server = Server(tmp_path / "data", extra_args=["--config", str(config)])
    system = None
    try:
        conn = server.conn()
        svc = service(conn)
        proc = CIMInstance("KVM_ProcResourceAllocationSettingData", properties={
            "ResourceType": Uint16(3), "VirtualQuantity": Uint64(2), "Weight": Uint32(2048),
            "Limit": Uint64(1)})
        mem = CIMInstance("KVM_MemResourceAllocationSettingData", properties={
            "ResourceType": Uint16(4), "VirtualQuantity": Uint64(16),
            "AllocationUnits": "byte*2^20"})
        vssd = CIMInstance("KVM_VirtualSystemSettingData",
                           properties={"VirtualSystemIdentifier": "weighted"})
        rv, out = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd,
                                    ResourceSettings=[proc, mem])
        assert rv == 0
        system = out["ResultingSystem"]
        rasd = conn.GetInstance(CIMInstanceName("KVM_ProcResourceAllocationSettingData",
                                                {"InstanceID": "weighted/proc"},
                                                namespace="root/virt"))
        assert (rasd["Weight"], rasd["Limit"]) == (2048, 1), rasd.tomof()

        assert change(conn, system, RUNNING) == 0
        uuid = conn.GetInstance(CIMInstanceName(
            "KVM_VirtualSystemSettingData", {"InstanceID": "KVM:weighted"},
            namespace="root/virt"))["UUID"].lower()
        vm_cgroup = cgroup / "cimvirt" / uuid
        vm = VmSocket(vm_path(server, "weighted", "sock"))
        try:
            pid = vm.request({"request": "status"})["pid"]
        finally:
            vm.sock.close()
        assert (vm_cgroup / "cgroup.procs").read_text() == str(pid)
        # 2048 of libvirt's cpu.shares is twice the default: cgroup v2's 200. One processor
        # of the two is 100% of one CPU in each 100 ms period.
        assert (vm_cgroup / "cpu.weight").read_text() == "200"
        assert (vm_cgroup / "cpu.max").read_text() == "100000 100000"
        # Guest memory, 64 MiB for the VMM, and 1/64 of guest memory for KVM's tables.
        assert int((vm_cgroup / "memory.max").read_text()) == (16 << 20) + (64 << 20) + (16 << 14)

        # Stopped, its Weight goes back to the default; the next start's cgroup says so.
        assert change(conn, system, DISABLED) == 0
        default = CIMInstance("KVM_ProcResourceAllocationSettingData",
                              properties={"InstanceID": "weighted/proc", "Weight": Uint32(1024)})
        rv, _ = conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[default])
        assert rv == 0
        rasd = conn.GetInstance(rasd.path)
        assert (rasd["Weight"], rasd["Limit"]) == (None, 1), rasd.tomof()
        assert change(conn, system, RUNNING) == 0
        assert (vm_cgroup / "cpu.weight").read_text() == "100"
        # A Weight outside cpu.shares' range is refused with it.
        wild = CIMInstance("KVM_ProcResourceAllocationSettingData",
                           properties={"InstanceID": "weighted/proc", "Weight": Uint32(1)})
        assert change(conn, system, DISABLED) == 0
        with pytest.raises(pywbem.CIMError) as err:
            conn.InvokeMethod("ModifyResourceSettings", svc, ResourceSettings=[wild])
        assert err.value.status_code == pywbem.CIM_ERR_INVALID_PARAMETER
        assert "outside 2-262144" in err.value.status_description
    finally:
        if system is not None:
            change(server.conn(), system, DISABLED)
        code, log = server.stop()
    assert code == 0, log
