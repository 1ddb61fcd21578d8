"""WS-Management at /wsman: pypsrp and Debian's wsl as real clients (HTTP and HTTPS, Basic
auth), every request captured from real clients in ../shared/wsman-envelopes replayed
against live instances, and raw SOAP for the fault paths."""

import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import pywbem
import requests
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan, WSManFaultError

from conftest import ADMIN, READER, TEST_MOF, HttpSink, Server

ENVELOPES = Path(__file__).resolve().parents[2].parent / "shared" / "wsman-envelopes"
DMTF = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
VENDOR = "http://schemas.cimvirt.org/wbem/wscim/1/cim-schema/2/"
ALL = "http://schemas.dmtf.org/wbem/wscim/1/*"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsen": "http://schemas.xmlsoap.org/ws/2004/09/enumeration",
    "wsmid": "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
KVM = os.path.exists("/dev/kvm")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("wsman"))
    conn = server.conn("http")
    pywbem.MOFCompiler(conn).compile_string(TEST_MOF, "root/virt")
    yield server
    code, log = server.stop()
    assert code == 0, log
    assert "panicked" not in log, log


def client(srv, scheme="http", creds=ADMIN, **kw):
    ssl = scheme == "https"
    return WSMan("127.0.0.1", port=srv.https_port if ssl else srv.http_port, ssl=ssl,
                 username=creds[0], password=creds[1], auth="basic",
                 cert_validation=srv.cert if ssl else False, encryption="never", **kw)


def host_name(srv):
    (host,) = srv.conn().EnumerateInstances("KVM_HostSystem")
    return host["Name"]


def prop(element, name):
    found = [c for c in element if c.tag.endswith("}" + name)]
    return [c.text for c in found]


def body_of(response):
    """The s:Body of a response (pypsrp returns it for the transfer and enumeration
    operations, the whole envelope for invoke)."""
    if response.tag == "{%s}Body" % NS["s"]:
        return response
    return response.find("s:Body", NAMESPACES)


def items_of(response, enumerate_response=False):
    body = body_of(response)[0]
    holder = body.find("wsman:Items" if enumerate_response else "wsen:Items", NS)
    return list(holder) if holder is not None else []


def drain(wsman, uri, response, selector_set=None):
    """Items of an Enumerate response, then of Pulls until EndOfSequence."""
    items = items_of(response, enumerate_response=True)
    body = body_of(response)[0]
    ended = body.find("wsman:EndOfSequence", NS) is not None
    context = body.find("wsen:EnumerationContext", NS).text
    while not ended:
        pull = ET.Element("{%s}Pull" % NS["wsen"])
        ET.SubElement(pull, "{%s}EnumerationContext" % NS["wsen"]).text = context
        ET.SubElement(pull, "{%s}MaxElements" % NS["wsen"]).text = "2"
        r = wsman.pull(uri, pull, selector_set=selector_set)
        items += items_of(r)
        pr = body_of(r).find("wsen:PullResponse", NS)
        ended = pr.find("wsen:EndOfSequence", NS) is not None
        if not ended:
            context = pr.find("wsen:EnumerationContext", NS).text
    return items


def enumerate_body(optimize=None, mode=None, filter_=None, dialect=None, polymorphism=None):
    e = ET.Element("{%s}Enumerate" % NS["wsen"])
    if optimize is not None:
        ET.SubElement(e, "{%s}OptimizeEnumeration" % NS["wsman"])
        ET.SubElement(e, "{%s}MaxElements" % NS["wsman"]).text = str(optimize)
    if mode:
        ET.SubElement(e, "{%s}EnumerationMode" % NS["wsman"]).text = mode
    if filter_ is not None:
        f = ET.SubElement(e, "{%s}Filter" % NS["wsman"], Dialect=dialect)
        if isinstance(filter_, str):
            f.text = filter_
        else:
            f.append(filter_)
    if polymorphism:
        ET.SubElement(e, "{http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd}PolymorphismMode").text = polymorphism
    return e


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_pypsrp_gets_and_enumerates_over_http_and_https(srv, scheme):
    wsman = client(srv, scheme)
    name = host_name(srv)
    sel = SelectorSet()
    sel.add_option("CreationClassName", "KVM_HostSystem")
    sel.add_option("Name", name)
    # A DMTF URI addresses the KVM_ instance its CreationClassName names.
    r = wsman.get(DMTF + "CIM_ComputerSystem", selector_set=sel)
    (host,) = list(body_of(r))
    assert host.tag == "{%sKVM_HostSystem}KVM_HostSystem" % VENDOR
    assert prop(host, "Name") == [name]
    assert prop(host, "EnabledState") == ["2"]

    # Plain, then optimized with MaxElements, then EPRs only: the same objects.
    uri = DMTF + "CIM_ManagedElement"
    plain = drain(wsman, uri, wsman.enumerate(uri, enumerate_body()))
    optimized = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(optimize=3)))
    eprs = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(optimize=5, mode="EnumerateEPR")))
    assert len(plain) == len(optimized) == len(eprs) > 5
    assert sorted(e.tag for e in plain) == sorted(e.tag for e in optimized)
    assert all(e.tag == "{%s}EndpointReference" % NS["wsa"] for e in eprs)
    both = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(optimize=50, mode="EnumerateObjectAndEPR")))
    assert len(both) == len(plain)
    assert all(e.tag == "{%s}Item" % NS["wsman"] and len(e) == 2 for e in both)


def test_pull_release_renew_and_status_of_an_enumeration_context(srv):
    wsman = client(srv)
    uri = DMTF + "CIM_ManagedElement"
    r = wsman.enumerate(uri, enumerate_body())
    context = body_of(r).find("wsen:EnumerateResponse/wsen:EnumerationContext", NS).text

    def body(op, extra=None):
        e = ET.Element("{%s}%s" % (NS["wsen"], op))
        ET.SubElement(e, "{%s}EnumerationContext" % NS["wsen"]).text = context
        if extra:
            ET.SubElement(e, "{%s}Expires" % NS["wsen"]).text = extra
        return e

    action = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/"
    r = wsman.invoke(action + "Renew", uri, body("Renew", "PT120S"))
    assert body_of(r).find("wsen:RenewResponse/wsen:Expires", NS).text.startswith("PT120")
    r = wsman.invoke(action + "GetStatus", uri, body("GetStatus"))
    assert body_of(r).find("wsen:GetStatusResponse/wsen:Expires", NS) is not None
    wsman.invoke(action + "Release", uri, body("Release"))
    with pytest.raises(WSManFaultError) as e:
        wsman.pull(uri, body("Pull"))
    assert e.value.code == "wsen:InvalidEnumerationContext"


def test_filters_wql_cql_selector_association_and_polymorphism(srv):
    wsman = client(srv)
    uri = VENDOR + "Test_Person"
    wmi = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
    names = lambda items: sorted(prop(i, "Name")[0] for i in items)
    got = drain(wsman, ALL, wsman.enumerate(ALL, enumerate_body(
        filter_="SELECT * FROM Test_Person WHERE Age > 26", dialect=wmi)))
    assert names(got) == ["alice", "bob"]
    # A query has no paths-only form: its EPRs come from instances, in pulls too.
    got = drain(wsman, ALL, wsman.enumerate(ALL, enumerate_body(
        optimize=1, mode="EnumerateEPR", filter_="SELECT * FROM Test_Person WHERE Age > 26", dialect=wmi)))
    assert sorted(s.text for e in got for s in e.iter("{%s}Selector" % NS["wsman"])
                  if s.get("Name") == "Name") == ["alice", "bob"]
    got = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(
        filter_="SELECT * FROM Test_Person WHERE Name = 'carol'",
        dialect="http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf")))
    assert names(got) == ["carol"]
    with pytest.raises(WSManFaultError) as e:
        wsman.enumerate(uri, enumerate_body(filter_="SELECT * FROM Test_Person WHERE Name LIKE 'c.*'",
                                            dialect="http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf"))
    assert "CannotProcessFilter" in str(e.value.code)

    sel = ET.Element("{%s}SelectorSet" % NS["wsman"])
    ET.SubElement(sel, "{%s}Selector" % NS["wsman"], Name="Name").text = "bob"
    got = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(
        filter_=sel, dialect="http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter")))
    assert names(got) == ["bob"]
    assert got[0].tag.endswith("}Test_Employee")

    # Polymorphism: None leaves the subclass out; ExcludeSubClassProperties drops Company.
    got = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(polymorphism="None")))
    assert names(got) == ["alice", "carol"]
    got = drain(wsman, uri, wsman.enumerate(uri, enumerate_body(polymorphism="ExcludeSubClassProperties")))
    assert names(got) == ["alice", "bob", "carol"]
    assert all(i.tag.endswith("}Test_Person") and not prop(i, "Company") for i in got)

    # Associators of alice through Test_Knows, and the references themselves.
    wsmb = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"
    def assoc(kind, **names_):
        a = ET.Element("{%s}%s" % (wsmb, kind))
        obj = ET.SubElement(a, "{%s}Object" % wsmb)
        ET.SubElement(obj, "{%s}Address" % NS["wsa"]).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
        rp = ET.SubElement(obj, "{%s}ReferenceParameters" % NS["wsa"])
        ET.SubElement(rp, "{%s}ResourceURI" % NS["wsman"]).text = uri
        ss = ET.SubElement(rp, "{%s}SelectorSet" % NS["wsman"])
        ET.SubElement(ss, "{%s}Selector" % NS["wsman"], Name="Name").text = "alice"
        for k, v in names_.items():
            ET.SubElement(a, "{%s}%s" % (wsmb, k)).text = v
        return a
    dialect = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding/associationFilter"
    got = drain(wsman, ALL, wsman.enumerate(ALL, enumerate_body(
        filter_=assoc("AssociatedInstances", AssociationClassName="Test_Knows", Role="Knower"), dialect=dialect)))
    assert names(got) == ["bob", "carol"]
    got = drain(wsman, ALL, wsman.enumerate(ALL, enumerate_body(
        filter_=assoc("AssociationInstances", ResultClassName="Test_Knows"), dialect=dialect)))
    assert sorted(prop(i, "Since")[0] for i in got) == ["2020", "2021"]
    # The reference properties are endpoint references.
    knower = [c for c in got[0] if c.tag.endswith("}Knower")][0]
    assert knower.find("wsa:ReferenceParameters/wsman:ResourceURI", NS).text == uri

    with pytest.raises(WSManFaultError) as e:
        wsman.enumerate(uri, enumerate_body(filter_="x", dialect="urn:no-such-dialect"))
    assert "FilterDialectRequestedUnavailable" in str(e.value.code)


def test_total_items_count_estimate_of_plain_filtered_and_pulled_enumerations(srv):
    enumerate_ = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
    pull = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"
    ask = "<wsman:RequestTotalItemsCountEstimate/>"
    uri = VENDOR + "Test_Person"

    def estimate(r):
        assert r.status_code == 200, r.text
        doc = ET.fromstring(r.content)
        return doc.find("s:Header/wsman:TotalItemsCountEstimate", NS).text, doc

    def count(uri, body):
        request = envelope(header(enumerate_, uri=uri, extra=ask), ET.tostring(body, encoding="unicode"))
        return estimate(soap(srv, request))[0]

    sel = ET.Element("{%s}SelectorSet" % NS["wsman"])
    ET.SubElement(sel, "{%s}Selector" % NS["wsman"], Name="Name").text = "bob"
    wql = "http://schemas.microsoft.com/wbem/wsman/1/WQL"
    assert count(uri, enumerate_body()) == "3"
    assert count(uri, enumerate_body(polymorphism="None")) == "2"
    assert count(ALL, enumerate_body(filter_="SELECT * FROM Test_Person WHERE Age > 26", dialect=wql)) == "2"
    assert count(uri, enumerate_body(
        filter_=sel, dialect="http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter")) == "1"
    assert count(uri, enumerate_body(optimize=1, mode="EnumerateEPR")) == "3"

    # A Pull answers the same total, also when the Enumerate did not ask for it; counting
    # does not disturb the enumeration.
    request = envelope(header(enumerate_, uri=uri), ET.tostring(enumerate_body(optimize=1), encoding="unicode"))
    doc = ET.fromstring(soap(srv, request).content)
    assert doc.find("s:Header/wsman:TotalItemsCountEstimate", NS) is None
    context = doc.find("s:Body/wsen:EnumerateResponse/wsen:EnumerationContext", NS).text
    body = f"<wsen:Pull><wsen:EnumerationContext>{context}</wsen:EnumerationContext><wsen:MaxElements>5</wsen:MaxElements></wsen:Pull>"
    total, doc = estimate(soap(srv, envelope(header(pull, uri=uri, extra=ask), body)))
    assert total == "3"
    assert len(doc.find("s:Body/wsen:PullResponse/wsen:Items", NS)) == 2
    assert doc.find("s:Body/wsen:PullResponse/wsen:EndOfSequence", NS) is not None


def test_an_enumeration_that_ends_at_once_names_no_context_except_to_winrm(srv):
    enumerate_ = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate"
    body = ET.tostring(enumerate_body(optimize=50), encoding="unicode")
    winrm = ('<p:SessionId xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd" '
             's:mustUnderstand="false">uuid:1</p:SessionId>')

    def context(extra):
        r = soap(srv, envelope(header(enumerate_, uri=VENDOR + "Test_Person", extra=extra), body))
        assert r.status_code == 200, r.text
        response = ET.fromstring(r.content).find("s:Body/wsen:EnumerateResponse", NS)
        assert response.find("wsman:EndOfSequence", NS) is not None
        return response.find("wsen:EnumerationContext", NS).text

    # openwsman's and OpenPegasus's answer, which wsl and openwsman's client stop at.
    assert context("") is None
    # WinRM refuses an empty context; the closed context is named and never pulled.
    assert context(winrm)


def test_put_create_fragment_and_delete(srv):
    wsman = client(srv)
    uri = VENDOR + "Test_Person"
    p = "{%s}" % uri
    inst = ET.Element(p + "Test_Person")
    ET.SubElement(inst, p + "Name").text = "dave"
    ET.SubElement(inst, p + "Age").text = "33"
    ET.SubElement(inst, p + "Tags").text = "x"
    ET.SubElement(inst, p + "Tags").text = "y"
    dt = ET.SubElement(inst, p + "Born")
    ET.SubElement(dt, "{http://schemas.dmtf.org/wbem/wscim/1/common}Datetime").text = "2001-02-03T04:05:06Z"
    r = wsman.create(uri, inst)
    created = body_of(r).find("{http://schemas.xmlsoap.org/ws/2004/09/transfer}ResourceCreated", NS)
    assert [s.text for s in created.iter("{%s}Selector" % NS["wsman"]) if s.get("Name") == "Name"] == ["dave"]
    got = srv.conn().GetInstance(pywbem.CIMInstanceName("Test_Person", {"Name": "dave"}))
    assert got["Age"] == 33 and got["Tags"] == ["x", "y"]
    assert str(got["Born"]) == "20010203040506.000000+000"

    sel = SelectorSet()
    sel.add_option("Name", "dave")
    change = ET.Element(p + "Test_Person")
    ET.SubElement(change, p + "Age").text = "34"
    r = wsman.put(uri, change, selector_set=sel)
    assert prop(body_of(r)[0], "Age") == ["34"]
    # Born comes back as a DSP0230 datetime.
    born = [c for c in body_of(r)[0] if c.tag.endswith("}Born")][0]
    assert born[0].text == "2001-02-03T04:05:06Z"

    with pytest.raises(WSManFaultError) as e:
        wsman.create(uri, inst)
    assert "AlreadyExists" in str(e.value.code)
    wsman.delete(uri, selector_set=sel)
    with pytest.raises(WSManFaultError) as e:
        wsman.get(uri, selector_set=sel)
    assert "DestinationUnreachable" in str(e.value.code)

    # A reader may look but not change.
    reader = client(srv, creds=READER)
    sel = SelectorSet()
    sel.add_option("Name", "alice")
    assert prop(body_of(reader.get(uri, selector_set=sel))[0], "Age") == ["30"]
    with pytest.raises(WSManFaultError) as e:
        reader.delete(uri, selector_set=sel)
    assert "AccessDenied" in str(e.value.code)


def soap(srv, body, headers=None, path="/wsman", auth=ADMIN, content_type="application/soap+xml;charset=UTF-8"):
    h = {"Content-Type": content_type} if content_type else {}
    h.update(headers or {})
    return requests.post(f"http://127.0.0.1:{srv.http_port}{path}", data=body, headers=h,
                         auth=auth, timeout=30)


def envelope(header, body=""):
    return (f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:wsa="{NS["wsa"]}" xmlns:wsman="{NS["wsman"]}" '
            f'xmlns:wsen="{NS["wsen"]}"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>')


def header(action, uri=DMTF + "CIM_ComputerSystem", mid="uuid:0A-b", extra=""):
    return (f"<wsa:Action>{action}</wsa:Action><wsa:To>http://x/wsman</wsa:To>"
            f"<wsman:ResourceURI>{uri}</wsman:ResourceURI><wsa:MessageID>{mid}</wsa:MessageID>{extra}")


def fault_of(r):
    doc = ET.fromstring(r.content)
    sub = doc.find("s:Body/s:Fault/s:Code/s:Subcode/s:Value", NS)
    code = doc.find("s:Body/s:Fault/s:Code/s:Value", NS).text
    detail = doc.find("s:Body/s:Fault/s:Detail/wsman:FaultDetail", NS)
    return code, sub.text if sub is not None else None, detail.text.rsplit("/", 1)[1] if detail is not None else None


GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"


def test_identify_with_and_without_authentication(srv):
    body = envelope("", '<wsmid:Identify xmlns:wsmid="%s"/>' % NS["wsmid"])
    r = soap(srv, body)
    doc = ET.fromstring(r.content)
    resp = doc.find("s:Body/wsmid:IdentifyResponse", NS)
    assert resp.find("wsmid:ProtocolVersion", NS).text == NS["wsman"]
    assert resp.find("wsmid:ProductVersion", NS) is not None
    for kw in ({"path": "/wsman-anon/identify"}, {"headers": {"WSMANIDENTIFY": "unauthenticated"}}):
        r = soap(srv, body, auth=None, **kw)
        assert r.status_code == 200, r.text
        resp = ET.fromstring(r.content).find("s:Body/wsmid:IdentifyResponse", NS)
        assert resp.find("wsmid:ProductVendor", NS).text == "cimvirt"
        assert resp.find("wsmid:ProductVersion", NS) is None
    # Nothing else is answered anonymously, and a wrong password is refused.
    assert soap(srv, envelope(header(GET)), path="/wsman-anon/identify", auth=None).status_code == 401
    assert soap(srv, body, auth=("admin", "wrong")).status_code == 401


def test_faults_for_bad_requests(srv):
    name = host_name(srv)
    sel = (f'<wsman:SelectorSet><wsman:Selector Name="Name">{name}</wsman:Selector>'
           '<wsman:Selector Name="CreationClassName">KVM_HostSystem</wsman:Selector></wsman:SelectorSet>')
    ok = soap(srv, envelope(header(GET, extra=sel)))
    assert ok.status_code == 200
    # RelatesTo repeats the MessageID exactly, case included.
    assert ET.fromstring(ok.content).find("s:Header/wsa:RelatesTo", NS).text == "uuid:0A-b"

    cases = [
        # (request, http status, code, subcode, detail)
        (envelope(header(GET).replace("<wsa:MessageID>uuid:0A-b</wsa:MessageID>", "")),
         400, "s:Sender", "wsa:MessageInformationHeaderRequired", None),
        (envelope(header(GET, extra='<wsman:SelectorSet><wsman:Selector Name="Name">x</wsman:Selector>'
                                    '<wsman:Selector Name="CreationClassName">KVM_HostSystem</wsman:Selector>'
                                    '<wsman:Selector Name="Bogus">1</wsman:Selector></wsman:SelectorSet>')),
         400, "s:Sender", "wsman:InvalidSelectors", "UnexpectedSelectors"),
        (envelope(header(GET, extra='<wsman:SelectorSet><wsman:Selector Name="Name">x</wsman:Selector></wsman:SelectorSet>')),
         400, "s:Sender", "wsman:InvalidSelectors", "InsufficientSelectors"),
        (envelope(header(GET, uri="urn:nothing", extra=sel)),
         400, "s:Sender", "wsa:DestinationUnreachable", "InvalidResourceURI"),
        (envelope(header(GET, uri=DMTF + "CIM_NoSuchClass", extra=sel)),
         400, "s:Sender", "wsa:DestinationUnreachable", "InvalidResourceURI"),
        (envelope(header("http://example.com/NoSuchAction", extra=sel)),
         400, "s:Sender", "wsa:ActionNotSupported", "ActionMismatch"),
        (envelope(header(GET, extra=sel + '<x:Y xmlns:x="urn:x" s:mustUnderstand="true"/>')),
         500, "s:MustUnderstand", None, None),
        (envelope(header(GET, extra=sel + "<wsman:MaxEnvelopeSize>100</wsman:MaxEnvelopeSize>")),
         400, "s:Sender", "wsman:EncodingLimit", "MinimumEnvelopeLimit"),
        (envelope(header("http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
                         uri=DMTF + "CIM_ManagedElement",
                         extra="<wsman:MaxEnvelopeSize>8192</wsman:MaxEnvelopeSize>"),
                  "<wsen:Enumerate><wsman:OptimizeEnumeration/><wsman:MaxElements>500</wsman:MaxElements>"
                  "</wsen:Enumerate>"), 200, None, None, None),
        (envelope(header("http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
                         uri=DMTF + "CIM_ManagedElement"),
                  '<wsen:Enumerate><wsman:Filter Dialect="urn:x">q</wsman:Filter></wsen:Enumerate>'),
         400, "s:Sender", "wsen:FilterDialectRequestedUnavailable", None),
        (envelope(header("http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull"),
                  "<wsen:Pull><wsen:EnumerationContext>nope</wsen:EnumerationContext></wsen:Pull>"),
         500, "s:Receiver", "wsen:InvalidEnumerationContext", None),
        (envelope(header("http://schemas.xmlsoap.org/ws/2004/08/eventing/Subscribe")),
         400, "s:Sender", "wsman:SchemaValidationError", None),
        (envelope(header("http://schemas.xmlsoap.org/ws/2004/08/eventing/SubscriptionEnd")),
         400, "s:Sender", "wsa:ActionNotSupported", "ActionMismatch"),
        ("<s:Envelope xmlns:s='%s'><s:Body>" % NS["s"], 400, "s:Sender", "wsman:SchemaValidationError", None),
        ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
         400, "s:Sender", "wsman:SchemaValidationError", None),
        ('<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body/></Envelope>',
         400, "s:Sender", "wsman:SchemaValidationError", None),
    ]
    for request, status, code, subcode, detail in cases:
        r = soap(srv, request)
        assert r.status_code == status, (request, r.text)
        if code is None:
            # The small envelope limit cuts the batch short instead of failing.
            doc = ET.fromstring(r.content)
            assert len(r.content) <= 8192
            assert doc.find("s:Body/wsen:EnumerateResponse/wsman:Items", NS) is not None
            continue
        assert fault_of(r) == (code, subcode, detail), (request, r.text)
    # Oversized bodies and wrong media types are refused at the HTTP level.
    assert soap(srv, "<a/>", content_type="application/json").status_code == 415
    assert soap(srv, "x" * (17 * 1024 * 1024)).status_code == 413


def test_utf16_requests_are_answered_in_utf16(srv):
    raw = (ENVELOPES / "identify-utf16-76-identify.xml").read_bytes()
    r = soap(srv, raw, content_type="application/soap+xml;charset=UTF-16")
    assert r.status_code == 200
    assert r.headers["Content-Type"].endswith("UTF-16")
    assert r.content[:2] == b"\xff\xfe"
    text = r.content.decode("utf-16")
    assert "IdentifyResponse" in text


@pytest.mark.skipif(not KVM, reason="NOT RUN: this host has no /dev/kvm")
def test_a_vm_is_defined_started_and_destroyed_over_wsman(srv):
    wsman = client(srv, "https")
    conn = srv.conn()
    (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    vsms = SelectorSet()
    for k, v in svc.keybindings.items():
        vsms.add_option(k, v)
    uri = DMTF + "CIM_VirtualSystemManagementService"
    p = "{%s}" % uri
    vssd_uri = DMTF + "CIM_VirtualSystemSettingData"
    rasd_uri = DMTF + "CIM_ResourceAllocationSettingData"
    xsi = "{%s}type" % NS["xsi"]
    inp = ET.Element(p + "DefineSystem_INPUT")
    vssd = ET.SubElement(ET.SubElement(inp, p + "SystemSettings"), "{%s}KVM_VirtualSystemSettingData" % vssd_uri,
                         {xsi: "q:KVM_VirtualSystemSettingData_Type"})
    ET.SubElement(vssd, "{%s}ElementName" % vssd_uri).text = "wsvm"
    for rtype, qty in (("3", "2"), ("4", "64")):
        rasd = ET.SubElement(ET.SubElement(inp, p + "ResourceSettings"), "{%s}KVM_ResourceAllocationSettingData" % rasd_uri)
        ET.SubElement(rasd, "{%s}ResourceType" % rasd_uri).text = rtype
        ET.SubElement(rasd, "{%s}VirtualQuantity" % rasd_uri).text = qty
        if rtype == "4":
            ET.SubElement(rasd, "{%s}AllocationUnits" % rasd_uri).text = "byte*2^20"
    r = wsman.invoke(uri + "/DefineSystem", uri, inp, selector_set=vsms)
    out = body_of(r)[0]
    assert out.tag == p + "DefineSystem_OUTPUT"
    assert prop(out, "ReturnValue") == ["0"], ET.tostring(out)
    system_epr = [c for c in out if c.tag.endswith("}ResultingSystem")][0]
    selectors = {s.get("Name"): s.text for s in system_epr.iter("{%s}Selector" % NS["wsman"])}
    assert selectors["CreationClassName"] == "KVM_ComputerSystem"

    vm = SelectorSet()
    vm.add_option("CreationClassName", "KVM_ComputerSystem")
    vm.add_option("Name", selectors["Name"])
    cs = DMTF + "CIM_ComputerSystem"
    q = "{%s}" % cs

    def state():
        return prop(body_of(wsman.get(cs, selector_set=vm))[0], "EnabledState")[0]

    def request_state(n):
        inp = ET.Element(q + "RequestStateChange_INPUT")
        ET.SubElement(inp, q + "RequestedState").text = str(n)
        out = body_of(wsman.invoke(cs + "/RequestStateChange", cs, inp, selector_set=vm))[0]
        return prop(out, "ReturnValue")[0]

    assert state() == "3"
    assert request_state(2) == "0"
    assert state() == "2"
    assert request_state(9) == "0"
    assert state() == "9"
    assert request_state(9) == "4097"
    assert request_state(3) == "0"
    assert state() == "3"

    # A start and a save run as a job; the job's method is reached through the DMTF URI
    # with its InstanceID alone (no CreationClassName to name the KVM_ class).
    assert request_state(2) == "0"
    inp = ET.Element(q + "RequestStateChange_INPUT")
    ET.SubElement(inp, q + "RequestedState").text = "6"
    out = body_of(wsman.invoke(cs + "/RequestStateChange", cs, inp, selector_set=vm))[0]
    assert prop(out, "ReturnValue") == ["4096"]
    job_epr = [c for c in out if c.tag.endswith("}Job")][0]
    (instance_id,) = [s.text for s in job_epr.iter("{%s}Selector" % NS["wsman"]) if s.get("Name") == "InstanceID"]
    job_uri = DMTF + "CIM_ConcreteJob"
    job = SelectorSet()
    job.add_option("InstanceID", instance_id)
    deadline = time.monotonic() + 30
    while prop(body_of(wsman.get(job_uri, selector_set=job))[0], "JobState") != ["7"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    j = "{%s}" % job_uri
    out = body_of(wsman.invoke(job_uri + "/GetError", job_uri, ET.Element(j + "GetError_INPUT"), selector_set=job))[0]
    assert out.tag == j + "GetError_OUTPUT"
    assert prop(out, "ReturnValue") == ["0"]
    assert state() == "6"
    assert request_state(3) == "0"

    # DestroySystem takes the VM as an endpoint reference.
    inp = ET.Element(p + "DestroySystem_INPUT")
    ref = ET.SubElement(inp, p + "AffectedSystem")
    ET.SubElement(ref, "{%s}Address" % NS["wsa"]).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    rp = ET.SubElement(ref, "{%s}ReferenceParameters" % NS["wsa"])
    ET.SubElement(rp, "{%s}ResourceURI" % NS["wsman"]).text = VENDOR + "KVM_ComputerSystem"
    ss = ET.SubElement(rp, "{%s}SelectorSet" % NS["wsman"])
    for k in ("CreationClassName", "Name"):
        ET.SubElement(ss, "{%s}Selector" % NS["wsman"], Name=k).text = selectors[k]
    out = body_of(wsman.invoke(uri + "/DestroySystem", uri, inp, selector_set=vsms))[0]
    assert prop(out, "ReturnValue") == ["0"]
    assert conn.EnumerateInstanceNames("KVM_ComputerSystem") == []


# --- wsl, Debian's WS-Management client (bash, curl, xmllint) ---------------------

def wsl(srv, workdir, *args, https=False):
    """Runs one wsl command in a fresh directory (wsl writes its requests and responses
    there) and returns its exit status and the responses, in order."""
    assert shutil.which("wsl"), "wsl is not installed: run scripts/setup-test-env"
    workdir.mkdir()
    port = srv.https_port if https else srv.http_port
    endpoint = f"127.0.0.1:{port}"
    env = dict(os.environ, WSENDPOINT=endpoint, WSUSER=ADMIN[0], WSPASS=ADMIN[1],
               KEEPHISTORY="0", WSAUTOMATED="1", WSDEFAULTSCHEMA="schemas.cimvirt.org")
    if https:
        # wsl has curl check the server against ENDPOINT.crt when that file exists.
        shutil.copy(srv.cert, workdir / f"{endpoint}.crt")
    else:
        env["WSNOSSL"] = "1"
    r = subprocess.run(["wsl", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    files = sorted(workdir.glob("response-*.xml"), key=lambda p: int(p.stem.split("-")[1]))
    responses = [ET.parse(f).getroot() for f in files]
    for doc in responses:
        assert doc.find("s:Body/s:Fault", NS) is None, (args, ET.tostring(doc, encoding="unicode"))
    return r.returncode, responses


def test_wsl_identifies_enumerates_gets_and_puts(srv, tmp_path):
    code, (doc,) = wsl(srv, tmp_path / "identify", "identify", "check")
    assert code == 0
    assert doc.find("s:Body/wsmid:IdentifyResponse/wsmid:ProductVendor", NS).text == "cimvirt"

    # wsl pulls while a response names a context: an enumeration that ends in its
    # optimized Enumerate response must name none, or wsl's next Pull would fail.
    names = lambda doc: sorted(prop(i, "Name")[0] for i in doc.find("s:Body/wsen:EnumerateResponse/wsman:Items", NS))
    code, (doc,) = wsl(srv, tmp_path / "enum", "enum", "Test_Person", "-ns", "root/virt")
    assert code == 0 and names(doc) == ["alice", "bob", "carol"]
    assert doc.find("s:Body/wsen:EnumerateResponse/wsman:EndOfSequence", NS) is not None
    code, (doc,) = wsl(srv, tmp_path / "cql", "enum", "Test_Person", "-ns", "root/virt",
                       "-filter", "select * from Test_Person where Age > 26")
    assert code == 0 and names(doc) == ["alice", "bob"]

    code, (doc,) = wsl(srv, tmp_path / "get", "get", "Test_Person", "Name=alice")
    assert code == 0 and prop(doc.find("s:Body", NS)[0], "Age") == ["30"]

    # Put finds the instance with a CQL enumeration, then sends the changed property as a
    # fragment. (Its whole-instance Put copies the instance out of the response by lines
    # and finds none unless the start tag has no attributes, as iDRAC writes it.)
    code, responses = wsl(srv, tmp_path / "put", "put", "Test_Person", "Age=26", "-fragment", "-ns", "root/virt",
                          "-filter", "select * from Test_Person where Name='carol'")
    # (wsl put exits 1 on success: it looks for "_OUTPUT" in the Put response, as its
    # invoke does in a method's.)
    fragment = responses[-1].find("s:Body/wsman:XmlFragment", NS)
    assert prop(fragment, "Age") == ["26"], responses
    conn = srv.conn()
    carol = pywbem.CIMInstanceName("Test_Person", {"Name": "carol"})
    assert conn.GetInstance(carol)["Age"] == 26
    instance = conn.GetInstance(carol)
    instance["Age"] = pywbem.Uint32(25)
    conn.ModifyInstance(instance)


@pytest.mark.skipif(not KVM, reason="NOT RUN: this host has no /dev/kvm")
def test_wsl_defines_starts_and_destroys_a_vm_over_https(srv, tmp_path):
    vendor = VENDOR.rstrip("/")
    image = tmp_path / "wslvm.img"
    image.write_bytes(b"\0" * (1 << 20))
    define = tmp_path / "define.xml"
    rasd = ("<r:KVM_ResourceAllocationSettingData xmlns:r='{v}/KVM_ResourceAllocationSettingData'>"
            "<r:ResourceType>{t}</r:ResourceType><r:VirtualQuantity>{q}</r:VirtualQuantity>{more}"
            "</r:KVM_ResourceAllocationSettingData>")
    define.write_text(
        f"<p:DefineSystem_INPUT xmlns:p='{vendor}/KVM_VirtualSystemManagementService'>"
        f"<p:SystemSettings><q:KVM_VirtualSystemSettingData xmlns:q='{vendor}/KVM_VirtualSystemSettingData'>"
        "<q:ElementName>wslvm</q:ElementName></q:KVM_VirtualSystemSettingData></p:SystemSettings>"
        "<p:ResourceSettings>" + rasd.format(v=vendor, t=3, q=1, more="") + "</p:ResourceSettings>"
        "<p:ResourceSettings>" + rasd.format(v=vendor, t=4, q=32, more="<r:AllocationUnits>byte*2^20</r:AllocationUnits>")
        + "</p:ResourceSettings>"
        # A disk, as a RASD of ResourceType 17 whose Address is the image.
        "<p:ResourceSettings>" + rasd.format(v=vendor, t=17, q=1, more=f"<r:Address>{image}</r:Address>")
        + "</p:ResourceSettings></p:DefineSystem_INPUT>")
    # invoke enumerates the class for the instance's EPR, then calls the method on it.
    code, responses = wsl(srv, tmp_path / "define", "invoke", "KVM_VirtualSystemManagementService", "DefineSystem",
                          "-raw", str(define), "-ns", "root/virt", https=True)
    out = responses[-1].find("s:Body", NS)[0]
    assert code == 0 and prop(out, "ReturnValue") == ["0"]

    def request_state(n, step):
        code, responses = wsl(srv, tmp_path / step, "invoke", "KVM_ComputerSystem", "RequestStateChange",
                              f"RequestedState={n}", "-ns", "root/virt",
                              "-filter", "select * from KVM_ComputerSystem where ElementName='wslvm'", https=True)
        assert code == 0
        return prop(responses[-1].find("s:Body", NS)[0], "ReturnValue")

    def state(step):
        code, (doc,) = wsl(srv, tmp_path / step, "get", "KVM_ComputerSystem",
                           "CreationClassName=KVM_ComputerSystem", "Name=wslvm", https=True)
        assert code == 0
        return prop(doc.find("s:Body", NS)[0], "EnabledState")

    assert state("defined") == ["3"]
    disk = srv.conn().GetInstance(pywbem.CIMInstanceName(
        "KVM_DiskResourceAllocationSettingData", {"InstanceID": "wslvm/vda"}, namespace="root/virt"))
    assert disk["Address"] == str(image) and disk["VirtualQuantity"] == 1 << 20
    assert request_state(2, "start") == ["0"]
    assert state("started") == ["2"]
    assert request_state(9, "pause") == ["0"]
    assert state("paused") == ["9"]

    # DestroySystem takes the VM's EPR from a file of an earlier enumeration.
    code, _ = wsl(srv, tmp_path / "eprs", "enum", "KVM_ComputerSystem", "-ns", "root/virt",
                  "-mode", "epr", "-filter", "select * from KVM_ComputerSystem where ElementName='wslvm'",
                  https=True)
    epr = tmp_path / "eprs" / "response.xml"
    code, responses = wsl(srv, tmp_path / "destroy", "invoke", "KVM_VirtualSystemManagementService",
                          "DestroySystem", f"AffectedSystem=FILE:{epr}", "-ns", "root/virt", https=True)
    assert code == 0 and prop(responses[-1].find("s:Body", NS)[0], "ReturnValue") == ["0"]
    assert [p for p in srv.conn().EnumerateInstanceNames("KVM_ComputerSystem") if p["Name"] == "wslvm"] == []


# --- replaying what real clients sent ---------------------------------------------

# Outcomes that are faults by design: (case prefix, subcode).
EXPECTED_FAULTS = {
    "fault-get": "wsa:DestinationUnreachable",  # asks for an instance that does not exist
    "get-with-k-not-selectors": "wsman:InvalidSelectors",  # no selectors at all
    "get-ns-opts": "wsa:DestinationUnreachable",  # names root/interop; the VM is in root/virt
    "wsl-invoke-75": "wsa:DestinationUnreachable",  # wsl names root/cimv2, not served here
    # With WS-Trust credentials for its sink (DSP0226 10.2.2): accepted. (Listed so that
    # the "subscribe-push" prefix below does not apply.)
    "subscribe-pushwithack": None,
    "subscribe-push": "wsa:DestinationUnreachable",  # names root/cimv2, not served here
    "subscribe-pull": "wse:DeliveryModeRequestedUnavailable",  # Push and PushWithAck only
    "unsubscribe": "wse:InvalidMessage",  # a subscription of the capture's own server
    "renew": "wse:UnableToRenew",
    "put-file": "wsa:ActionNotSupported",  # a VM's settings are changed through methods
    "put-getput-k-35": "wsa:ActionNotSupported",
    "create-file": "wsman:AlreadyExists",  # replayed after the filter it creates
    # The same vm1 as the WS-CIM form just before it, which defined it.
    "invoke-definesystem-cdata": "wsman:AlreadyExists",
}


@pytest.mark.skipif(not KVM, reason="NOT RUN: this host has no /dev/kvm")
def test_every_captured_client_request_gets_a_correct_answer(srv):
    conn = srv.conn()
    (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    service = pywbem.CIMInstance("KVM_VirtualSystemSettingData", {"ElementName": "replayvm"})
    rasds = [pywbem.CIMInstance("KVM_ResourceAllocationSettingData",
                                {"ResourceType": pywbem.Uint16(3), "VirtualQuantity": pywbem.Uint64(1)}),
             pywbem.CIMInstance("KVM_ResourceAllocationSettingData",
                                {"ResourceType": pywbem.Uint16(4), "VirtualQuantity": pywbem.Uint64(16),
                                 "AllocationUnits": "byte*2^20"})]
    rv, out = conn.InvokeMethod("DefineSystem", svc, SystemSettings=service.tocimxmlstr(),
                                ResourceSettings=[r.tocimxmlstr() for r in rasds])
    assert rv == 0
    vm = out["ResultingSystem"]
    # The filter the Create request makes exists first, so the replay is repeatable.
    interop = srv.conn(namespace="interop")
    filt = pywbem.CIMInstance("CIM_IndicationFilter", {
        "CreationClassName": "CIM_IndicationFilter", "Name": "testfilter",
        "SystemCreationClassName": "CIM_ComputerSystem", "SystemName": "localhost",
        "Query": "SELECT * FROM CIM_InstModification", "QueryLanguage": "DMTF:CQL",
        "SourceNamespace": "root/cimv2"})
    try:
        interop.CreateInstance(filt)
    except pywbem.CIMError as e:
        assert e.status_code == pywbem.CIM_ERR_ALREADY_EXISTS

    def adjust(text):
        text = text.replace('Name="Name">foo<', 'Name="Name">%s<' % vm["Name"])
        text = text.replace('Name="Name">a b<', 'Name="Name">%s<' % vm["Name"])
        text = re.sub(r'(Name="CreationClassName">)CIM_ComputerSystem<', r"\1KVM_ComputerSystem<", text)
        if "CIM_VirtualSystemManagementService" not in text:
            return text.replace("WHERE Name='foo'", "WHERE Name='%s'" % vm["Name"])
        text = text.replace('Name="Name">vsms<', 'Name="Name">%s<' % svc["Name"])
        text = text.replace('Name="SystemName">host<', 'Name="SystemName">%s<' % svc["SystemName"])
        text = text.replace('Name="SystemCreationClassName">CIM_ComputerSystem<',
                            'Name="SystemCreationClassName">%s<' % svc["SystemCreationClassName"])
        text = text.replace('>CIM_VirtualSystemManagementService</wsman:Selector>',
                            '>KVM_VirtualSystemManagementService</wsman:Selector>')
        text = text.replace("WHERE Name='foo'", "WHERE Name='%s'" % vm["Name"])
        return text

    order = (ENVELOPES / "ORDER.txt").read_text().split()
    context = None
    seen = 0
    for name in order:
        case = name.rsplit(".", 1)[0]
        raw = (ENVELOPES / name).read_bytes()
        headers = (ENVELOPES / (case + ".headers.txt")).read_text()
        m = re.search(r"^Content-Type: (.*)$", headers, re.M | re.I)
        content_type = m.group(1).strip() if m else None
        utf16 = raw[:2] == b"\xff\xfe"
        text = raw.decode("utf-16" if utf16 else "utf-8")
        text = adjust(text)
        is_pull_or_release = re.search(r"enumeration/(Pull|Release)<", text)
        if is_pull_or_release and context:
            text = re.sub(r"(EnumerationContext>)[^<]*(<)", r"\g<1>%s\2" % context, text)
        body = text.encode("utf-16") if utf16 else text.encode()
        r = soap(srv, body, content_type=content_type)
        assert r.status_code in (200, 400, 500), (case, r.status_code, r.text)
        response = r.content.decode("utf-16" if utf16 else "utf-8")
        doc = ET.fromstring(response.encode("utf-8").replace(b'encoding="UTF-16"', b'encoding="UTF-8"'))
        mid = re.search(r"MessageID[^>]*>([^<]*)<", text)
        if mid:
            relates = doc.find("s:Header/wsa:RelatesTo", NS)
            assert relates is not None and relates.text == mid.group(1), (case, response)
        prefix = next((p for p in EXPECTED_FAULTS if case.startswith(p)), None)
        expected = EXPECTED_FAULTS.get(prefix)
        if is_pull_or_release and context is None:
            # The enumeration this request continues has already ended here.
            expected = "wsen:InvalidEnumerationContext"
        if r.status_code == 200:
            assert expected is None, (case, response)
            body = doc.find("s:Body", NS)
            if body.find("wsen:EnumerateResponse", NS) is not None:
                ended = body.find("wsen:EnumerateResponse/wsman:EndOfSequence", NS) is not None
                ctx = body.find("wsen:EnumerateResponse/wsen:EnumerationContext", NS).text
                context = None if ended else ctx
            elif body.find("wsen:PullResponse/wsen:EndOfSequence", NS) is not None:
                context = None
            elif re.search(r"enumeration/Release<", text):
                context = None
            seen += 1
        else:
            assert expected is not None, (case, response)
            code, subcode, _ = fault_of(r)
            assert expected in (code, subcode), (case, response)
    assert seen >= 50
    # The replay started the VM; VMs outlive their server, so the test destroys it.
    assert conn.InvokeMethod("DestroySystem", svc, AffectedSystem=vm)[0] == 0


EVENTING = "http://schemas.xmlsoap.org/ws/2004/08/eventing/"
WSE = "http://schemas.xmlsoap.org/ws/2004/08/eventing"


def subscribe(srv, sink, query=None, expires="PT600S", heartbeats=None, mode=EVENTING + "DeliveryModes/Push"):
    filt = (f'<wsman:Filter Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL">{query}</wsman:Filter>'
            if query else "")
    beats = f"<wsman:Heartbeats>{heartbeats}</wsman:Heartbeats>" if heartbeats else ""
    body = (f'<wse:Subscribe xmlns:wse="{WSE}"><wse:Delivery Mode="{mode}"><wse:NotifyTo>'
            f"<wsa:Address>{sink.url}</wsa:Address></wse:NotifyTo>{beats}</wse:Delivery>"
            f"<wse:Expires>{expires}</wse:Expires>{filt}</wse:Subscribe>")
    uri = ALL if query else VENDOR + "KVM_ComputerSystemCreatedIndication"
    return soap(srv, envelope(header(EVENTING + "Subscribe", uri=uri), body))


def by_identifier(action, identifier, body=""):
    return envelope(f"<wsa:Action>{EVENTING}{action}</wsa:Action><wsa:To>http://x/wsman</wsa:To>"
                    f"<wsa:MessageID>uuid:0B-{action}</wsa:MessageID>"
                    f'<wse:Identifier xmlns:wse="{WSE}">{identifier}</wse:Identifier>', body)


@pytest.mark.skipif(not KVM, reason="NOT RUN: this host has no /dev/kvm")
def test_ws_eventing_delivers_vm_indications_as_events_until_unsubscribed(srv):
    sink = HttpSink()
    r = subscribe(srv, sink, "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA KVM_ComputerSystem",
                  heartbeats="PT1S")
    assert r.status_code == 200, r.text
    doc = ET.fromstring(r.content)
    ns = dict(NS, wse=WSE)
    identifier = doc.find("s:Body/wse:SubscribeResponse/wse:SubscriptionManager/wsa:ReferenceParameters/"
                          "wse:Identifier", ns).text
    assert identifier.startswith("uuid:")
    assert doc.find("s:Body/wse:SubscribeResponse/wse:Expires", ns).text == "PT600.000S"
    # The bridge: the subscription is a CIM_IndicationSubscription in interop.
    interop = srv.conn(namespace="interop")
    handlers = [h for h in interop.EnumerateInstances("CIM_ListenerDestinationWSManagement")
                if h["Destination"] == sink.url]
    assert [(h["DeliveryMode"], h["Heartbeat"]) for h in handlers] == [(2, 1)]

    conn = srv.conn()
    (svc,) = conn.EnumerateInstanceNames("KVM_VirtualSystemManagementService")
    vssd = pywbem.CIMInstance("KVM_VirtualSystemSettingData", {"VirtualSystemIdentifier": "evented"})
    mem = pywbem.CIMInstance("KVM_MemResourceAllocationSettingData",
                             {"ResourceType": pywbem.Uint16(4), "VirtualQuantity": pywbem.Uint64(16),
                              "AllocationUnits": "byte*2^20"})
    system = conn.InvokeMethod("DefineSystem", svc, SystemSettings=vssd, ResourceSettings=[mem])[1]["ResultingSystem"]
    try:
        assert conn.InvokeMethod("RequestStateChange", system, RequestedState=pywbem.Uint16(2))[0] == 0
        (created,) = sink.wait(lambda e: "KVM_ComputerSystemCreatedIndication" in e and "evented" in e)
        event = ET.fromstring(created.encode())
        assert event.find("s:Header/wsa:Action", ns).text == "http://schemas.dmtf.org/wbem/wsman/1/wsman/Event"
        assert event.find("s:Header/wse:Identifier", ns).text == identifier
        assert event.find("s:Header/wsa:To", ns).text == sink.url
        indication = event.find("s:Body/*", ns)
        assert indication.tag == "{%sKVM_ComputerSystemCreatedIndication}KVM_ComputerSystemCreatedIndication" % VENDOR
        source = [c for c in indication if c.tag.endswith("}SourceInstance")][0]
        assert prop(source[0], "Name") == ["evented"]
        modified = sink.wait(lambda e: "KVM_ComputerSystemModifiedIndication" in e and "evented" in e)
        assert modified
        sink.wait(lambda e: "/wsman/Heartbeat<" in e)
        assert all(path == "/eventsink" and ctype.startswith("application/soap+xml")
                   for path, ctype, _ in sink.received)

        # Renew, GetStatus, then Unsubscribe: nothing more arrives, and the bridge is gone.
        r = soap(srv, by_identifier("Renew", identifier, f'<wse:Renew xmlns:wse="{WSE}">'
                                    "<wse:Expires>PT1200S</wse:Expires></wse:Renew>"))
        assert r.status_code == 200 and "PT1200.000S" in r.text, r.text
        r = soap(srv, by_identifier("GetStatus", identifier, f'<wse:GetStatus xmlns:wse="{WSE}"/>'))
        assert r.status_code == 200 and re.search(r"<wse:Expires>PT1(19\d|200)\.\d+S<", r.text), r.text
        r = soap(srv, by_identifier("Unsubscribe", identifier, f'<wse:Unsubscribe xmlns:wse="{WSE}"/>'))
        assert r.status_code == 200, r.text
        assert not [h for h in interop.EnumerateInstances("CIM_ListenerDestinationWSManagement")
                    if h["Destination"] == sink.url]
        r = soap(srv, by_identifier("Unsubscribe", identifier, f'<wse:Unsubscribe xmlns:wse="{WSE}"/>'))
        assert fault_of(r)[1] == "wse:InvalidMessage"
        time.sleep(1.5)  # a heartbeat or an event in flight lands now
        seen = len(sink.received)
        assert conn.InvokeMethod("RequestStateChange", system, RequestedState=pywbem.Uint16(3))[0] == 0
        time.sleep(2)
        assert len(sink.received) == seen, [e[2][:200] for e in sink.received[seen:]]
    finally:
        conn.InvokeMethod("DestroySystem", svc, AffectedSystem=system)
        sink.close()


def test_ws_eventing_subscriptions_expire_and_bad_ones_are_refused(srv):
    sink = HttpSink()
    try:
        # No filter: the resource URI's class. A short lifetime ends by itself.
        r = subscribe(srv, sink, expires="PT1S")
        assert r.status_code == 200, r.text
        interop = srv.conn(namespace="interop")
        (filt,) = [f for f in interop.EnumerateInstances("CIM_IndicationFilter")
                   if f["Name"].startswith("wsman:") and "CreatedIndication" in f["Query"]]
        assert filt["Query"] == "SELECT * FROM KVM_ComputerSystemCreatedIndication"
        assert filt["SourceNamespaces"] == ["root/virt"]
        deadline = time.monotonic() + 10
        while [f for f in interop.EnumerateInstances("CIM_IndicationFilter") if f["Name"] == filt["Name"]]:
            assert time.monotonic() < deadline, "the expired subscription is still there"
            time.sleep(0.2)

        for kwargs, expected in [
            ({"mode": "http://schemas.dmtf.org/wbem/wsman/1/wsman/Pull"}, "wse:DeliveryModeRequestedUnavailable"),
            ({"mode": "http://schemas.dmtf.org/wbem/wsman/1/wsman/Events"}, "wse:DeliveryModeRequestedUnavailable"),
            ({"expires": "2030-01-01T00:00:00Z"}, "wse:InvalidExpirationTime"),
            ({"query": "SELECT FROM"}, "wsen:CannotProcessFilter"),
            ({"heartbeats": "soon"}, "wsman:InvalidParameter"),
        ]:
            r = subscribe(srv, sink, **kwargs)
            assert r.status_code in (400, 500), (kwargs, r.text)
            assert fault_of(r)[1] == expected, (kwargs, r.text)
        # A read-only user may not create the subscription's instances in interop.
        body = envelope(header(EVENTING + "Subscribe", uri=VENDOR + "KVM_ComputerSystemCreatedIndication"),
                        f'<wse:Subscribe xmlns:wse="{WSE}"><wse:Delivery><wse:NotifyTo><wsa:Address>'
                        f"{sink.url}</wsa:Address></wse:NotifyTo></wse:Delivery></wse:Subscribe>")
        r = soap(srv, body, auth=READER)
        assert fault_of(r)[1] == "wsman:AccessDenied", r.text
        r = soap(srv, by_identifier("Renew", "uuid:nope", f'<wse:Renew xmlns:wse="{WSE}"/>'))
        assert fault_of(r)[1] == "wse:UnableToRenew"
    finally:
        sink.close()
