"""OpenPegasus 2.14.4's clients against cimvirtd, as a user runs them: cimcli (every
operation it has, the pull operations too), TestPullop (each pull sequence compared with
the operation it replaces) and wbemexec (requests of our own, each with the answer
OpenPegasus's server gives). They speak HTTP only (built without SSL)."""

import base64
import os
import re
import subprocess

import pytest
import pywbem

from conftest import ADMIN, OPENPEGASUS_BIN, HttpSink, Server, client_program

CIMCLI = client_program(OPENPEGASUS_BIN / "cimcli")
TESTPULLOP = client_program(OPENPEGASUS_BIN / "TestPullop")
WBEMEXEC = client_program(OPENPEGASUS_BIN / "wbemexec")

VM = "pegvm"
VM_PATH = f'KVM_ComputerSystem.CreationClassName="KVM_ComputerSystem",Name="{VM}"'
PROFILE_PATH = 'CIM_RegisteredProfile.InstanceID="CIM:DSP1033-ProfileRegistration-1.0.0"'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("openpegasus"))
    conn = srv.conn()
    (service,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    vssd = pywbem.CIMInstance("KVM_VirtualSystemSettingData",
                              properties={"VirtualSystemIdentifier": VM})
    mem = pywbem.CIMInstance("KVM_MemResourceAllocationSettingData", properties={
        "ResourceType": pywbem.Uint16(4), "VirtualQuantity": pywbem.Uint64(16),
        "AllocationUnits": "byte*2^20"})
    assert conn.InvokeMethod("DefineSystem", service, SystemSettings=vssd,
                             ResourceSettings=[mem])[0] == 0
    yield srv
    code, log = srv.stop()
    assert code == 0 and "panicked" not in log, log


def run(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def cimcli(server, *args):
    code, out = run([CIMCLI, "-l", f"127.0.0.1:{server.http_port}", "-u", ADMIN[0],
                     "-p", ADMIN[1], *args])
    assert code == 0 and "Exception" not in out.replace("Info: CIMException", ""), out
    return out


def count(out):
    """The object count cimcli's --sum prints ("3 instances of class X returned.")."""
    m = re.search(r"^(\d+) [^\n]* returned\.$", out, re.M)
    assert m, out
    return int(m.group(1))


# cimcli names EnumerateClassNames `nc` (it has no `ecn`).
@pytest.mark.parametrize("args,expected", [
    (["nc", "-n", "root/virt", "CIM_System"], 1),
    (["ec", "-n", "root/virt", "CIM_System"], 1),
    (["ni", "-n", "root/virt", "KVM_ComputerSystem"], 1),
    (["ei", "-n", "root/virt", "KVM_ComputerSystem"], 1),
    (["a", "-n", "root/virt", VM_PATH], None),
    (["an", "-n", "root/virt", VM_PATH], None),
    (["r", "-n", "root/virt", VM_PATH], None),
    (["rn", "-n", "root/virt", VM_PATH], None),
    (["xq", "-n", "root/virt", "select * from KVM_ComputerSystem"], 1),
    (["pei", "-n", "root/virt", "KVM_ComputerSystem"], 1),
    (["pni", "-n", "root/virt", "KVM_ComputerSystem"], 1),
    (["pr", "-n", "root/virt", VM_PATH], None),
    (["prn", "-n", "root/virt", VM_PATH], None),
    (["pa", "-n", "root/virt", VM_PATH], None),
    (["pan", "-n", "root/virt", VM_PATH], None),
    (["pxq", "-n", "root/virt", "select * from KVM_ComputerSystem"], 1),
    (["pei", "-n", "interop", "CIM_RegisteredProfile"], None),
    (["pni", "-n", "interop", "CIM_Namespace"], 2),
    (["pr", "-n", "interop", PROFILE_PATH], None),
    (["prn", "-n", "interop", PROFILE_PATH], None),
    (["pa", "-n", "interop", PROFILE_PATH], None),
    (["pan", "-n", "interop", PROFILE_PATH], None),
    (["pxq", "-n", "interop", "select * from CIM_Namespace"], 2),
])
def test_cimcli_operations_count_what_pywbem_sees(server, args, expected):
    """Each enumeration answers as many objects as pywbem's equivalent finds."""
    got = count(cimcli(server, *args, "--sum"))
    if expected is None:
        conn = server.conn(namespace=args[2])
        target = args[3]
        if "." in target:
            target = pywbem.CIMInstanceName.from_wbem_uri(f"/{args[2]}:{target}")
        op = args[0].lstrip("p")
        expected = len({
            "a": conn.Associators, "an": conn.AssociatorNames, "r": conn.References,
            "rn": conn.ReferenceNames, "ei": conn.EnumerateInstances,
        }[op](target))
    assert got == expected, (args, got, expected)


def test_cimcli_namespaces_classes_and_single_objects(server):
    out = cimcli(server, "ns")
    assert "root/virt" in out and "interop" in out
    assert "class KVM_ComputerSystem : CIM_ComputerSystem" in cimcli(
        server, "gc", "-n", "root/virt", "KVM_ComputerSystem")
    assert f'Name = "{VM}"' in cimcli(server, "gi", "-n", "root/virt", VM_PATH)
    assert f"ElementName = {VM}" in cimcli(server, "gp", "-n", "root/virt", VM_PATH, "ElementName")


def test_cimcli_creates_modifies_and_deletes_interop_instances(server):
    """A filter made without its system keys gets them from the server, as OpenPegasus
    fills them in; a destination without a Name gets one."""
    out = cimcli(server, "ci", "-n", "interop", "CIM_IndicationFilter", "Name=pegfilter",
                 "Query=SELECT * FROM KVM_ComputerSystemCreatedIndication", "QueryLanguage=WQL",
                 "SourceNamespace=root/virt")
    assert 'SystemCreationClassName="CIM_ComputerSystem"' in out and 'Name="pegfilter"' in out
    path = re.search(r"Returned Path\s+(\S.*)$", out, re.M).group(1).strip()
    out = cimcli(server, "ci", "-n", "interop", "CIM_ListenerDestinationCIMXML",
                 "Destination=http://127.0.0.1:1/never")
    destination = re.search(r"Returned Path\s+(\S.*)$", out, re.M).group(1).strip()
    cimcli(server, "mi", "-n", "interop", path, "Query=SELECT * FROM KVM_ComputerSystemDeletedIndication")
    conn = server.conn(namespace="interop")
    (filt,) = [f for f in conn.EnumerateInstances("CIM_IndicationFilter") if f["Name"] == "pegfilter"]
    assert filt["Query"] == "SELECT * FROM KVM_ComputerSystemDeletedIndication"
    assert filt["SystemName"] and filt["CreationClassName"] == "CIM_IndicationFilter"
    cimcli(server, "di", "-n", "interop", path)
    cimcli(server, "di", "-n", "interop", destination)
    assert not [f for f in conn.EnumerateInstances("CIM_IndicationFilter") if f["Name"] == "pegfilter"]
    assert not conn.EnumerateInstances("CIM_ListenerDestinationCIMXML")


def test_a_destination_password_is_write_only_and_sent_with_each_indication(server):
    """CIM_ListenerDestination.password is Read(false): it is not served back, and each
    export request to that listener carries it with the username as HTTP Basic."""
    listener = HttpSink()
    url = listener.url
    interop = server.conn(namespace="interop")
    out = cimcli(server, "ci", "-n", "interop", "CIM_ListenerDestinationCIMXML", f"Destination={url}",
                 "username=listener-user", "password=listener-password")
    destination_name = re.search(r'[.,]Name="([^"]+)"', out.split("Returned Path", 1)[1]).group(1)
    (destination,) = [d for d in interop.EnumerateInstances("CIM_ListenerDestinationCIMXML")
                      if d["Name"] == destination_name]
    assert destination["username"] == "listener-user" and destination["password"] is None
    filt = interop.CreateInstance(pywbem.CIMInstance("CIM_IndicationFilter", properties={
        "Name": "created", "Query": "SELECT * FROM KVM_ComputerSystemCreatedIndication",
        "QueryLanguage": "WQL", "SourceNamespace": "root/virt"}))
    subscription = interop.CreateInstance(pywbem.CIMInstance("CIM_IndicationSubscription", properties={
        "Filter": filt, "Handler": destination.path}))
    conn = server.conn()
    (service,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    vssd = pywbem.CIMInstance("KVM_VirtualSystemSettingData", properties={"VirtualSystemIdentifier": "heard"})
    system = conn.InvokeMethod("DefineSystem", service, SystemSettings=vssd)[1]["ResultingSystem"]
    try:
        (body,) = listener.wait(lambda e: "KVM_ComputerSystemCreatedIndication" in e and "heard" in e)
        assert listener.authorizations[0] == "Basic " + base64.b64encode(
            b"listener-user:listener-password").decode()
    finally:
        conn.InvokeMethod("DestroySystem", service, AffectedSystem=system)
        for path in (subscription, filt, destination.path):
            interop.DeleteInstance(path)
        listener.close()


def test_cimcli_invokes_request_state_change(server):
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if os.environ.get("CI"):
            raise RuntimeError("/dev/kvm is missing on a CI machine")
        pytest.skip("NOT RUN: this host has no /dev/kvm")
    conn = server.conn()
    system = pywbem.CIMInstanceName("KVM_ComputerSystem", {
        "CreationClassName": "KVM_ComputerSystem", "Name": VM}, namespace="root/virt")
    assert "ReturnValue=0" in cimcli(server, "im", "-n", "root/virt", VM_PATH,
                                     "RequestStateChange", "RequestedState=2").replace(" ", "")
    assert conn.GetInstance(system)["EnabledState"] == 2
    assert "ReturnValue=0" in cimcli(server, "im", "-n", "root/virt", VM_PATH,
                                     "RequestStateChange", "RequestedState=3").replace(" ", "")
    assert conn.GetInstance(system)["EnabledState"] == 3


def run_testpullop(server, namespace, *args):
    code, out = run([TESTPULLOP, "-H", f"127.0.0.1:{server.http_port}", "-u", ADMIN[0],
                     "-p", ADMIN[1], "-n", namespace, *args], timeout=600)
    return code, out


@pytest.mark.parametrize("namespace,op,target", [
    (ns, op, target)
    for ns, cls, path in (("root/virt", "KVM_ComputerSystem", VM_PATH),
                          ("interop", "CIM_RegisteredProfile", PROFILE_PATH))
    for op, target in (("e", cls), ("en", cls), ("r", path), ("rn", path),
                       ("a", path), ("an", path), ("all", None))
])
@pytest.mark.parametrize("open_max,pull_max", [("16", "20"), ("1", "1"), ("0", "1")])
def test_testpullop_sequences_match_the_operations_they_replace(
        server, namespace, op, target, open_max, pull_max):
    """-C compares each open/pull sequence with the non-pull operation's result."""
    args = [op] + ([target] if target else []) + ["-M", open_max, "-N", pull_max, "-C", "-v", "5"]
    code, out = run_testpullop(server, namespace, *args)
    assert code == 0 and "passed all tests" in out, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    if op in ("a", "all") and open_max == "0":
        # TestPullop's associator sequence checks each pull against the open's
        # MaxObjectCount (0), not the pull's: the pulls themselves are checked below.
        errors = [e for e in errors if e != "ERROR: Delivered more objects than requested."
                  " Expected 0. Delivered 1"]
    assert not errors, out
    # What each request asked for and got, from the -v 5 report: never more than asked.
    for kind, returned in re.findall(r"^(open\w+|Pull\w+) Requested = \d+ Returned = (\d+)", out, re.M):
        asked = int(open_max if kind.startswith("open") else pull_max)
        assert int(returned) <= asked, (kind, returned, out)


# wbemexec: requests of our own. A request without HTTP headers gets them from its body
# (wbemexec sends it first without credentials, then again on the same connection after
# the 401); one with headers goes as it is. Each expects what OpenPegasus's server answers:
# an HTTP status with its CIMError header, or a CIM error code in the response.
ENUM_CLASS_NAMES = """<?xml version="1.0" encoding="utf-8"?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLEREQ>
<IMETHODCALL NAME="EnumerateClassNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>
<NAMESPACE NAME="virt"/></LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>
"""
GET_CLASS = ENUM_CLASS_NAMES.replace("EnumerateClassNames", "GetClass")


def raw_http(body, host=True, cimobject="root%2Fvirt", headers=()):
    """A whole HTTP request around `body`, authenticated; `cimobject` None leaves that
    header out."""
    body = body.encode()
    auth = base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()
    lines = ["POST /cimom HTTP/1.1", *(["Host: 127.0.0.1"] if host else []),
             "Content-Type: application/xml; charset=utf-8", "CIMOperation: MethodCall",
             "CIMMethod: EnumerateClassNames", "CIMProtocolVersion: 1.0",
             f"Authorization: Basic {auth}", *headers]
    if cimobject is not None:
        lines.append(f"CIMObject: {cimobject}")
    if any(h.startswith("Transfer-Encoding") for h in headers):
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


WBEMEXEC_CASES = {
    "valid": (ENUM_CLASS_NAMES.format(params=""), 200, None),
    "unknown-class": (GET_CLASS.format(
        params='<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Nope_Class"/></IPARAMVALUE>'),
        200, "6"),
    "unknown-parameter": (ENUM_CLASS_NAMES.format(
        params='<IPARAMVALUE NAME="Bogus"><VALUE>x</VALUE></IPARAMVALUE>'), 200, "4"),
    "large-body": (ENUM_CLASS_NAMES.format(params="<!--" + "x" * 100_000 + "-->"), 200, None),
    "dtd-version": (ENUM_CLASS_NAMES.format(params="").replace('DTDVERSION="2.0"', 'DTDVERSION="1.0"'),
                    501, "unsupported-dtd-version"),
    "protocol-version": (ENUM_CLASS_NAMES.format(params="").replace(
        'PROTOCOLVERSION="1.0"', 'PROTOCOLVERSION="2.0"'), 501, "unsupported-protocol-version"),
    "cim-version": (ENUM_CLASS_NAMES.format(params="").replace('CIMVERSION="2.0"', 'CIMVERSION="3.0"'),
                    501, "unsupported-cim-version"),
    "null-boolean": (ENUM_CLASS_NAMES.format(params='<IPARAMVALUE NAME="DeepInheritance"/>'),
                     400, "request-not-valid"),
    "empty-classname": (GET_CLASS.format(
        params='<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME=""/></IPARAMVALUE>'),
        400, "request-not-valid"),
    "xml-declaration-without-version": (ENUM_CLASS_NAMES.format(params="").replace(
        '<?xml version="1.0" encoding="utf-8"?>', "<?xml ?>"), 400, "request-not-well-formed"),
    "not-well-formed": (ENUM_CLASS_NAMES.format(params="").replace("</CIM>", ""),
                        400, "request-not-well-formed"),
    "multireq": (ENUM_CLASS_NAMES.format(params="").replace("SIMPLEREQ", "MULTIREQ"),
                 501, "multiple-requests-unsupported"),
    "header-mismatch": (raw_http(ENUM_CLASS_NAMES.format(params=""), cimobject="root%2Fcimv2"),
                        400, "header-mismatch"),
    "no-cimobject": (raw_http(ENUM_CLASS_NAMES.format(params=""), cimobject=None),
                     400, "header-mismatch"),
    "no-host": (raw_http(ENUM_CLASS_NAMES.format(params=""), host=False), 400, "request-not-valid"),
    # RFC 9112 6.1: a transfer coding the server does not implement.
    "transfer-coding": (raw_http(ENUM_CLASS_NAMES.format(params=""),
                                 headers=["Transfer-Encoding: gzip, chunked"]), 501, None),
}


@pytest.mark.parametrize("case", sorted(WBEMEXEC_CASES))
def test_wbemexec_requests_get_openpegasus_answers(server, tmp_path, case):
    request, status, expected = WBEMEXEC_CASES[case]
    path = tmp_path / f"{case}.xml"
    path.write_bytes(request if isinstance(request, bytes) else request.encode())
    code, out = run([WBEMEXEC, "-h", "127.0.0.1", "-p", str(server.http_port),
                     "-u", ADMIN[0], "-w", ADMIN[1], str(path)])
    if status == 200:
        assert code == 0 and "<SIMPLERSP>" in out, out
        error = re.search(r'<ERROR CODE="(\d+)"', out)
        assert (error.group(1) if error else None) == expected, out
    else:
        assert code != 0, out
        assert out.startswith(f"HTTP/1.1 {status} "), out
        if expected:
            assert re.search(rf"^cimerror: {expected}\r?$", out, re.M | re.I), out
