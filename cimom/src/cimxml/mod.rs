//! CIM-XML (DSP0200/DSP0201): request decoding into protocol-neutral operations and
//! response encoding.

pub mod class_cache;
pub mod decode;
pub mod dom;
pub mod encode;
pub mod request;
pub mod response;
