"""openwsman's wsman client (2.8.1) against cimvirtd, as a user runs it: identify,
every enumeration mode and filter, associations, get, put, invoke, create and delete, and
WS-Eventing subscriptions whose events reach a sink; and a VM defined, started, paused,
stopped and destroyed with wsman alone."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ADMIN, WSMAN_BIN, HttpSink, Server, client_program

WSMAN = client_program(WSMAN_BIN / "wsman")
ENVELOPES = Path(__file__).resolve().parents[3] / "shared" / "wsman-envelopes"

DMTF = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
KVM = "http://schemas.cimvirt.org/wbem/wscim/1/cim-schema/2/"
ALL_CLASSES = "http://schemas.dmtf.org/wbem/wscim/1/*"
VM = "wsvm"
VM_URI = f"{DMTF}CIM_ComputerSystem?CreationClassName=KVM_ComputerSystem&Name={VM}"
PROFILES = f"{DMTF}CIM_RegisteredProfile"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("wsmancli"))
    yield srv
    code, log = srv.stop()
    assert code == 0 and "panicked" not in log, log


def wsman(server, *args, https=False, creds=ADMIN, fault=None):
    """Runs wsman against the server's HTTP (or HTTPS) listener; returns its output, which
    holds no fault unless `fault` names the one expected."""
    port = server.https_port if https else server.http_port
    argv = [WSMAN, *args, "-h", "127.0.0.1", "-P", str(port), "-y", "basic"]
    if creds:
        argv += ["-u", creds[0], "-p", creds[1]]
    if https:
        argv += ["--https", "-c", server.cert]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if fault:
        assert fault in out, out
    else:
        assert r.returncode == 0 and "<s:Fault>" not in out, out
    return out


def values(out, element):
    """The texts of every `<p:ELEMENT>` (any prefix) in wsman's output."""
    return re.findall(rf"<\w+:{element}>([^<]*)</\w+:{element}>", out)


def test_identify_authenticated_anonymous_and_over_https(server):
    out = wsman(server, "identify")
    assert values(out, "ProductVendor") == ["cimvirt"] and values(out, "ProductVersion")
    out = wsman(server, "identify", https=True)
    assert values(out, "ProductVendor") == ["cimvirt"]
    out = wsman(server, "enumerate", PROFILES, "-N", "interop", "-o", "-m", "4", https=True)
    assert "Profile Registration" in values(out, "RegisteredName")
    # Anonymous callers are not told the version. (wsman's -b URL takes no port above
    # 32767, so the path goes as -g.)
    out = wsman(server, "identify", "-g", "wsman-anon/identify", "--non-interactive", creds=None)
    assert values(out, "ProductVendor") == ["cimvirt"] and not values(out, "ProductVersion"), out


@pytest.fixture(scope="module")
def registered(server):
    """The interop namespace's registered profiles, as pywbem sees them."""
    return server.conn(namespace="interop").EnumerateInstances("CIM_RegisteredProfile")


@pytest.mark.parametrize("args", [
    [],
    ["-o", "-m", "3"],
    ["-m", "2"],
    ["-M", "epr"],
    ["-M", "objepr", "-o", "-m", "5"],
    ["-E"],
])
def test_enumerate_modes(server, registered, args):
    out = wsman(server, "enumerate", PROFILES, "-N", "interop", *args)
    if "-M" in args and "epr" in args:
        # Endpoint references only: one ResourceURI and InstanceID selector per profile.
        assert len(re.findall(r'<wsman:Selector Name="InstanceID">', out)) == len(registered)
        assert not values(out, "RegisteredName")
    else:
        assert sorted(values(out, "RegisteredName")) == sorted(p["RegisteredName"] for p in registered)
    if "-E" in args:
        # On the Enumerate response and on each Pull response.
        assert set(values(out, "TotalItemsCountEstimate")) == {str(len(registered))}


@pytest.mark.parametrize("dialect,query", [
    ("http://schemas.microsoft.com/wbem/wsman/1/WQL",
     "SELECT * FROM CIM_RegisteredProfile WHERE RegisteredName = 'Profile Registration'"),
    ("http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf",
     "SELECT * FROM CIM_RegisteredProfile WHERE RegisteredName = 'Profile Registration'"),
])
def test_enumerate_with_query_filters(server, dialect, query):
    for uri in (PROFILES, ALL_CLASSES):
        out = wsman(server, "enumerate", uri, "-N", "interop", "-D", dialect, "-x", query)
        assert values(out, "RegisteredName") == ["Profile Registration"], out


def test_enumerate_with_a_selector_filter(server):
    out = wsman(server, "enumerate", PROFILES, "-N", "interop",
                "-D", "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter",
                "-x", "InstanceID=CIM:DSP1033-ProfileRegistration-1.0.0")
    assert values(out, "InstanceID") == ["CIM:DSP1033-ProfileRegistration-1.0.0"]


def test_get_put_create_and_delete_in_interop(server, tmp_path):
    filter_uri = f"{DMTF}CIM_IndicationFilter"
    body = tmp_path / "filter.xml"
    body.write_text(
        f'<p:CIM_IndicationFilter xmlns:p="{filter_uri}">'
        "<p:Name>wsfilter</p:Name><p:Query>SELECT * FROM KVM_ComputerSystemCreatedIndication</p:Query>"
        "<p:QueryLanguage>WQL</p:QueryLanguage><p:SourceNamespace>root/virt</p:SourceNamespace>"
        "</p:CIM_IndicationFilter>")
    out = wsman(server, "create", filter_uri, "-N", "interop", "-J", str(body))
    assert '<wsman:Selector Name="Name">wsfilter</wsman:Selector>' in out
    (system_name,) = set(re.findall(r'<wsman:Selector Name="SystemName">([^<]*)<', out))
    uri = (f"{filter_uri}?Name=wsfilter&CreationClassName=CIM_IndicationFilter"
           f"&SystemCreationClassName=CIM_ComputerSystem&SystemName={system_name}")
    assert values(wsman(server, "get", uri, "-N", "interop"), "Query") == [
        "SELECT * FROM KVM_ComputerSystemCreatedIndication"]
    out = wsman(server, "put", uri, "-N", "interop",
                "-k", "Query=SELECT * FROM KVM_ComputerSystemDeletedIndication")
    assert values(out, "Query") == ["SELECT * FROM KVM_ComputerSystemDeletedIndication"]
    (filt,) = [f for f in server.conn(namespace="interop").EnumerateInstances("CIM_IndicationFilter")
               if f["Name"] == "wsfilter"]
    assert filt["Query"] == "SELECT * FROM KVM_ComputerSystemDeletedIndication"
    wsman(server, "delete", uri, "-N", "interop")
    wsman(server, "get", uri, "-N", "interop", fault="DestinationUnreachable")


def state(server):
    return int(values(wsman(server, "get", VM_URI, "-N", "root/virt"), "EnabledState")[0])


def change(server, requested):
    out = wsman(server, "invoke", "-a", "RequestStateChange", VM_URI, "-N", "root/virt",
                "-k", f"RequestedState={requested}")
    assert values(out, "ReturnValue") == ["0"], out


def test_a_vm_defined_run_and_destroyed_with_wsman_alone(server, tmp_path):
    """Subscriptions with and without sink credentials see the VM created; the VM is
    defined from a WS-CIM embedded instance, renamed by Put, started, paused, stopped and
    destroyed."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        if os.environ.get("CI"):
            raise RuntimeError("/dev/kvm is missing on a CI machine")
        pytest.skip("NOT RUN: this host has no /dev/kvm")
    created = f"{KVM}KVM_ComputerSystemCreatedIndication"
    plain, guarded = HttpSink(), HttpSink(("sinkuser", "sink-password"))
    try:
        out = wsman(server, "subscribe", created, "-N", "root/virt", "-Z", plain.url, "-G", "push")
        (plain_id,) = values(out, "Identifier")
        out = wsman(server, "subscribe", created, "-N", "root/virt", "-Z", guarded.url, "-G", "push",
                    "-s", "httpbasic", "-n", "sinkuser", "-z", "sink-password", "-r", "600")
        (guarded_id,) = values(out, "Identifier")
        # A security profile the server does not offer is refused.
        wsman(server, "subscribe", created, "-N", "root/virt", "-Z", guarded.url, "-G", "push",
              "-s", "httpdigest", "-n", "u", "-z", "p", fault="UnsupportedFeature")
        wsman(server, "renew", created, "-i", plain_id, "-r", "600")

        service = server.conn().EnumerateInstanceNames("KVM_VirtualSystemManagementService")[0]
        service_uri = f"{DMTF}CIM_VirtualSystemManagementService?" + "&".join(
            f"{k}={v}" for k, v in service.keybindings.items())
        inputs = tmp_path / "define.xml"
        inputs.write_text(
            (ENVELOPES / "inputs" / "definesystem-wscim.xml").read_text()
            .replace("<q:ElementName>vm1</q:ElementName>", f"<q:ElementName>{VM}</q:ElementName>")
            .replace("<q:VirtualSystemType>DMTF:testvm</q:VirtualSystemType>", "")
            .replace("<r:VirtualQuantity>1024</r:VirtualQuantity>", "<r:VirtualQuantity>16</r:VirtualQuantity>"))
        out = wsman(server, "invoke", "-a", "DefineSystem", service_uri, "-N", "root/virt",
                    "-J", str(inputs))
        assert values(out, "ReturnValue") == ["0"], out
        assert f'<wsman:Selector Name="Name">{VM}</wsman:Selector>' in out
        plain.wait(lambda e: VM in e)
        guarded.wait(lambda e: VM in e)
        assert guarded.refused == 0
        assert all("KVM_ComputerSystemCreatedIndication" in body for _, _, body in guarded.received)

        out = wsman(server, "put", VM_URI, "-N", "root/virt", "-k", "ElementName=Web server")
        assert values(out, "ElementName") == ["Web server"]
        assert state(server) == 3
        change(server, 2)
        assert state(server) == 2
        # Its console, found over WS-Management as through CIM-XML, disabled and enabled.
        out = wsman(server, "enumerate", f"{DMTF}CIM_RemoteServiceAccessPoint", "-N", "root/virt")
        assert f"ws://127.0.0.1:{server.http_port}/console/{VM}" in values(out, "AccessInfo"), out
        sap_uri = (f"{DMTF}CIM_TextRedirectionSAP?CreationClassName=KVM_TextRedirectionSAP"
                   f"&Name=COM1&SystemCreationClassName=KVM_ComputerSystem&SystemName={VM}")
        for requested in (3, 2):
            out = wsman(server, "invoke", "-a", "RequestStateChange", sap_uri, "-N", "root/virt",
                        "-k", f"RequestedState={requested}")
            assert values(out, "ReturnValue") == ["0"], out
            out = wsman(server, "get", sap_uri, "-N", "root/virt")
            assert values(out, "EnabledState") == ["3" if requested == 3 else "6"], out
        change(server, 9)
        assert state(server) == 9
        change(server, 2)
        change(server, 3)
        assert state(server) == 3

        # Associations of the VM (the association filter with its object; wsman 2.8.1 has
        # no options for the filter's class and role elements, which test_wsman.py sends
        # from captured requests): its devices, and the association instances themselves.
        out = wsman(server, "associators", ALL_CLASSES, "-N", "root/virt", "-x", VM_URI)
        assert "KVM_Processor" in out and "KVM_VirtualSystemSettingData" in out
        out = wsman(server, "references", ALL_CLASSES, "-N", "root/virt", "-x", VM_URI)
        assert "KVM_SystemDevice" in out and "KVM_SettingsDefineState" in out

        for identifier in (plain_id, guarded_id):
            wsman(server, "unsubscribe", created, "-i", identifier)
        wsman(server, "unsubscribe", created, "-i", plain_id, fault="InvalidMessage")

        # A reference parameter is an endpoint reference, so it goes in an input file
        # (wsman's -k cuts values at '=').
        destroy = tmp_path / "destroy.xml"
        destroy.write_text(
            f'<p:DestroySystem_INPUT xmlns:p="{DMTF}CIM_VirtualSystemManagementService"'
            ' xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
            ' xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><p:AffectedSystem>'
            "<wsa:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address>"
            f"<wsa:ReferenceParameters><wsman:ResourceURI>{DMTF}CIM_ComputerSystem</wsman:ResourceURI>"
            '<wsman:SelectorSet><wsman:Selector Name="CreationClassName">KVM_ComputerSystem</wsman:Selector>'
            f'<wsman:Selector Name="Name">{VM}</wsman:Selector></wsman:SelectorSet>'
            "</wsa:ReferenceParameters></p:AffectedSystem></p:DestroySystem_INPUT>")
        out = wsman(server, "invoke", "-a", "DestroySystem", service_uri, "-N", "root/virt",
                    "-J", str(destroy))
        assert values(out, "ReturnValue") == ["0"], out
        wsman(server, "get", VM_URI, "-N", "root/virt", fault="DestinationUnreachable")
        assert not server.conn(namespace="interop").EnumerateInstances("CIM_IndicationSubscription")
    finally:
        plain.close()
        guarded.close()
