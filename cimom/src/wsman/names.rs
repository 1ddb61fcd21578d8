//! The XML namespaces, action URIs, dialects and fixed URIs of WS-Management (DSP0226),
//! its CIM binding (DSP0227) and the WS-CIM mapping (DSP0230).

/// SOAP 1.2 envelope.
pub const SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing (2004/08, the version WS-Management uses).
pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// WS-Management.
pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
/// The WS-Management CIM binding.
pub const WSMB: &str = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd";
/// WS-Transfer.
pub const WXF: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
/// WS-Enumeration.
pub const WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
/// WS-Eventing.
pub const WSE: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing";
/// WS-Management identity (Identify).
pub const WSMID: &str = "http://schemas.dmtf.org/wbem/wsman/identity/1/wsmanidentity.xsd";
/// The common WS-CIM types (DSP0230): cim:Datetime, cim:Interval ...
pub const CIM_COMMON: &str = "http://schemas.dmtf.org/wbem/wscim/1/common";
/// XML Schema instance (xsi:type, xsi:nil).
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// WS-Trust (2005/02): wst:IssuedTokens, the credentials an event sink expects.
pub const WST: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
/// WS-Security 1.0 (wsse:UsernameToken).
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Policy (wsp:AppliesTo).
pub const WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";
/// Microsoft's WS-Management extensions (WinRM, pypsrp).
pub const MS_WSMAN: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";

/// The anonymous endpoint: reply on the same connection.
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

/// The resource URI prefix of DMTF (`CIM_`) classes.
pub const DMTF_CLASS_PREFIX: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";
/// The resource URI prefix of cimvirt's own (`KVM_`, `PG_`-style vendor) classes.
pub const VENDOR_CLASS_PREFIX: &str = "http://schemas.cimvirt.org/wbem/wscim/1/cim-schema/2/";
/// Any resource URI ending so names a class by its last segment (OpenPegasus's rule).
pub const CLASS_URI_SUFFIX: &str = "/wbem/wscim/1/cim-schema/2";
/// All classes: enumeration with a filter, association filters.
pub const ALL_CLASSES: &str = "http://schemas.dmtf.org/wbem/wscim/1/*";
/// WinRM's WMI resource URIs: `.../wmi/<namespace path>/<class>`.
pub const WMI_PREFIX: &str = "http://schemas.microsoft.com/wbem/wsman/1/wmi/";

/// The selector naming the CIM namespace.
pub const NAMESPACE_SELECTOR: &str = "__cimnamespace";

/// WS-Transfer actions.
pub mod action {
    /// Get.
    pub const GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
    /// Put.
    pub const PUT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put";
    /// Create.
    pub const CREATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create";
    /// Delete.
    pub const DELETE: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete";
    /// Enumerate.
    pub const ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
    /// Pull.
    pub const PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
    /// Release.
    pub const RELEASE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release";
    /// Renew (of an enumeration).
    pub const RENEW: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Renew";
    /// GetStatus (of an enumeration).
    pub const GET_STATUS: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/GetStatus";
    /// The WS-Eventing actions share this prefix.
    pub const EVENTING_PREFIX: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/";
    /// The fault action of WS-Management faults.
    pub const WSMAN_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";
    /// The fault action of WS-Addressing faults.
    pub const ADDRESSING_FAULT: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault";
    /// The fault action of WS-Transfer faults.
    pub const TRANSFER_FAULT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/fault";
    /// The fault action of WS-Enumeration faults.
    pub const ENUMERATION_FAULT: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/fault";
    /// The fault action of WS-Eventing faults.
    pub const EVENTING_FAULT: &str = "http://schemas.xmlsoap.org/ws/2004/08/eventing/fault";
}

/// Filter dialects of Enumerate.
pub mod dialect {
    /// WQL, as WinRM and openwsman name it.
    pub const WQL_MICROSOFT: &str = "http://schemas.microsoft.com/wbem/wsman/1/WQL";
    /// WQL, as OpenPegasus names it.
    pub const WQL_DMTF: &str = "http://schemas.dmtf.org/wbem/wsman/1/WQL";
    /// CQL (DSP0202).
    pub const CQL: &str = "http://schemas.dmtf.org/wbem/cql/1/dsp0202.pdf";
    /// The selector filter.
    pub const SELECTOR: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter";
    /// The association filter of the CIM binding.
    pub const ASSOCIATION: &str =
        "http://schemas.dmtf.org/wbem/wsman/1/cimbinding/associationFilter";
    /// XPath, for fragment transfer.
    pub const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";
    /// Every dialect Enumerate accepts, for the SupportedDialect fault detail.
    pub const ENUMERATE: &[&str] = &[WQL_MICROSOFT, WQL_DMTF, CQL, SELECTOR, ASSOCIATION];
}

/// The fault detail URIs of DSP0226.
pub const FAULT_DETAIL: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/";
