"""A VM's network port end to end over CIM-XML, inside a network namespace this test makes:
cimvirtd runs there with a bridge made by `cimvirtd bridge`; a pywbem client in the same
namespace defines a VM whose port names the bridge, sees the bridge as a network pool, starts
the VM, and exchanges Ethernet frames with the test guest through the bridge."""

import os
import subprocess
import sys
import uuid

import pytest

from conftest import ADMIN, BINARY, Server

if not os.path.exists("/dev/kvm") or os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
    if os.environ.get("CI"):
        raise RuntimeError("CI machines need /dev/kvm, root and /dev/net/tun for this test")
    pytest.skip("NOT RUN: needs /dev/kvm, root and /dev/net/tun", allow_module_level=True)

# Runs inside the namespace: argv = URL, data directory, user, password.
CLIENT = r'''
import json, socket, struct, sys, time
import pywbem
from pywbem import CIMInstance, Uint16

url, data_dir, run_dir, user, password = sys.argv[1:6]
conn = pywbem.WBEMConnection(url, (user, password), default_namespace="root/virt", timeout=60)
(service,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")

pools = {p["InstanceID"]: p for p in conn.EnumerateInstances("KVM_NetworkPool")}
assert set(pools) == {"NetworkPool/cvbr0"}, pools
caps = conn.Associators(pools["NetworkPool/cvbr0"].path, AssocClass="KVM_ElementCapabilities")
templates = {t["InstanceID"]: t for t in conn.Associators(caps[0].path, AssocClass="KVM_SettingsDefineCapabilities")}
default = templates["NetworkPool/cvbr0/Default"]
assert (default["NetworkName"], default["ResourceType"]) == ("cvbr0", 10), default

# The Default template, as Hyper-V-style scripts use it, plus a MAC.
nic = CIMInstance("KVM_NetResourceAllocationSettingData", properties={
    "ResourceType": Uint16(10), "PoolID": "NetworkPool/cvbr0", "Address": "02:43:00:00:00:2a"})
vssd = CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "netvm"})
rv, out = conn.InvokeMethod("DefineSystem", service, SystemSettings=vssd, ResourceSettings=[nic])
assert rv == 0
system = out["ResultingSystem"]
rasd = conn.GetInstance(pywbem.CIMInstanceName(
    "KVM_NetResourceAllocationSettingData", {"InstanceID": "netvm/02:43:00:00:00:2a"}, namespace="root/virt"))
assert (rasd["NetworkName"], rasd["PoolID"]) == ("cvbr0", "NetworkPool/cvbr0"), rasd
assert [p["InstanceID"] for p in conn.AssociatorNames(
    rasd.path, AssocClass="KVM_ResourceAllocationFromPool")] == ["NetworkPool/cvbr0"]
assert conn.GetInstance(pools["NetworkPool/cvbr0"].path)["Reserved"] == 1

rv, out = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(2))
assert rv == 0, rv
# The VM's files go by its UUID.
uuid = conn.GetInstance(pywbem.CIMInstanceName(
    "KVM_VirtualSystemSettingData", {"InstanceID": "KVM:netvm"}, namespace="root/virt"))["UUID"].lower()
console = f"{data_dir}/vms/{uuid}.console.log"
def wait(text, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            log = open(console).read()
        except FileNotFoundError:
            log = ""
        if text in log:
            return log
        assert time.monotonic() < deadline, f"{text!r} not on the console:\n{log}"
        time.sleep(0.01)
wait("vCPUs online")

peer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
peer.bind(("cvbr0", 0))
peer.settimeout(30)
vm = socket.socket(socket.AF_UNIX)
vm.connect(f"{run_dir}/{uuid}.sock")
def request(message):
    body = json.dumps(message).encode()
    vm.sendall(struct.pack("<I", len(body)) + body)
    (n,) = struct.unpack("<I", vm.recv(4, socket.MSG_WAITALL))
    return json.loads(vm.recv(n, socket.MSG_WAITALL))
assert request({"request": "hello", "version": 1})["response"] == "hello"
assert request({"request": "send_console", "bytes": list(b"n")})["response"] == "ok"
frame = peer.recv(2048)
assert frame[:14] == b"\xff" * 6 + bytes.fromhex("02430000002a") + b"\x88\xb5", frame.hex()
assert frame[14:].startswith(b"cimvirt test guest frame"), frame
peer.send(b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x88\xb5" + b"hello over CIM".ljust(46, b"\0"))
wait("net: received 60 bytes: hello over CIM\n")

rv, _ = conn.InvokeMethod("RequestStateChange", system, RequestedState=Uint16(3))
assert rv == 0

# Network pools made and deleted through CIM (libvirt-cim's CreateChildResourcePool): a
# bridge, in this namespace. A bridge a VM is defined on stays.
(rpcs,) = conn.EnumerateInstanceNames("KVM_ResourcePoolConfigurationService")
def error_of(call):
    try:
        call()
    except pywbem.CIMError as e:
        return e.status_code, e.status_description
    raise AssertionError("no error")
bare = CIMInstance("KVM_NetPoolResourceAllocationSettingData", properties={"ForwardMode": Uint16(0)})
rv, out = conn.InvokeMethod("CreateChildResourcePool", rpcs, ElementName="cvbr1", Settings=[bare])
assert rv == 0 and out["Pool"]["InstanceID"] == "NetworkPool/cvbr1", out
assert "NetworkPool/cvbr1" in {p["InstanceID"] for p in conn.EnumerateInstances("KVM_NetworkPool")}
assert "cvbr1" in open("/proc/net/dev").read()
code, why = error_of(lambda: conn.InvokeMethod("CreateChildResourcePool", rpcs, ElementName="cvbr1",
                                               Settings=[bare]))
assert code == pywbem.CIM_ERR_ALREADY_EXISTS, why
nat = CIMInstance("KVM_NetPoolResourceAllocationSettingData", properties={
    "Netmask": "255.255.255.0", "IPRangeStart": "192.168.122.2", "ForwardMode": Uint16(1)})
code, why = error_of(lambda: conn.InvokeMethod("CreateChildResourcePool", rpcs, ElementName="cvbr2",
                                               Settings=[nat]))
assert code == pywbem.CIM_ERR_NOT_SUPPORTED and "DHCP" in why, why
code, why = error_of(lambda: conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=pools["NetworkPool/cvbr0"].path))
assert code == pywbem.CIM_ERR_FAILED and "netvm" in why, why
assert conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=out["Pool"])[0] == 0
assert "cvbr1" not in open("/proc/net/dev").read()
code, why = error_of(lambda: conn.InvokeMethod("DeleteResourcePool", rpcs, Pool=out["Pool"]))
assert code == pywbem.CIM_ERR_NOT_FOUND, why

assert conn.InvokeMethod("DestroySystem", service, AffectedSystem=system)[0] == 0
print("network scenario passed")
'''


def test_a_vm_port_on_a_bridge_through_cim_xml(tmp_path):
    ns = f"cvtest-cim-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        in_ns = ["ip", "netns", "exec", ns]
        subprocess.run(in_ns + ["ip", "link", "set", "lo", "up"], check=True)
        for key in ("all", "default"):
            subprocess.run(in_ns + ["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
        made = subprocess.run(in_ns + [str(BINARY), "bridge", "create", "cvbr0"],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        server = Server(tmp_path / "data", prefix=in_ns)
        client = subprocess.run(in_ns + [sys.executable, "-c", CLIENT, server.url("http"),
                                         str(server.data_dir), str(server.run_dir), *ADMIN],
                                capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stdout + client.stderr
        assert "network scenario passed" in client.stdout
        listed = subprocess.run(in_ns + [str(BINARY), "bridge", "list"],
                                capture_output=True, text=True, check=True).stdout
        assert '"cvbr0"' in listed and '"ports": []' in listed, "the VM's tap went with it"
    finally:
        if server is not None:
            code, log = server.stop()
            assert code == 0, log
        subprocess.run(["ip", "netns", "del", ns], check=False)
