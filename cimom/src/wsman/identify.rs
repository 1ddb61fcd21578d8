//! Identify (DSP0226 clause 11): which protocol, product and version answer here.

use super::envelope::Request;
use super::fault::Fault;
use super::names;
use super::reply::Reply;

/// Whether the body is an Identify request. The element's namespace is matched loosely:
/// OpenPegasus's own client misspells it (`.../identify/1/...`).
pub fn is_identify(request: &Request) -> bool {
    request.action.is_none()
        && request.body.as_ref().is_some_and(|b| {
            b.local_name() == "Identify"
                && b.namespace
                    .as_deref()
                    .is_some_and(|ns| ns.contains("/wbem/wsman/"))
        })
}

/// The IdentifyResponse. An unauthenticated caller learns the protocol and vendor only,
/// as WinRM answers, not the product version.
pub fn answer(request: &Request, authenticated: bool) -> Result<Reply, Fault> {
    if !is_identify(request) {
        return Err(Fault::sender(
            super::fault::Subcode::MessageInformationHeaderRequired,
            "the request has no wsa:Action and is not an Identify",
        ));
    }
    let mut body = String::from("<wsmid:IdentifyResponse><wsmid:ProtocolVersion>");
    body.push_str(names::WSMAN);
    body.push_str("</wsmid:ProtocolVersion><wsmid:ProductVendor>cimvirt</wsmid:ProductVendor>");
    if authenticated {
        body.push_str("<wsmid:ProductVersion>");
        body.push_str(env!("CARGO_PKG_VERSION"));
        body.push_str("</wsmid:ProductVersion>");
    }
    body.push_str(
        "<wsmid:SecurityProfiles><wsmid:SecurityProfileName>\
         http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/basic\
         </wsmid:SecurityProfileName><wsmid:SecurityProfileName>\
         http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/basic\
         </wsmid:SecurityProfileName></wsmid:SecurityProfiles>",
    );
    body.push_str("</wsmid:IdentifyResponse>");
    Ok(Reply::new("", body))
}
