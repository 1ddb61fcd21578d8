//! Guest images the VMM can boot without anything downloaded.

pub mod test_guest;
