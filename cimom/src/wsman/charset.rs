//! The character encoding of a request body: UTF-8, or UTF-16 in either byte order
//! (`wsman -j UTF-16`), which the response repeats.

use super::fault::Fault;

/// The encoding a request came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8 (with or without a byte order mark).
    Utf8,
    /// UTF-16, little-endian.
    Utf16Le,
    /// UTF-16, big-endian.
    Utf16Be,
}

/// Whether a Content-Type value declares UTF-16.
pub fn declares_utf16(content_type: &str) -> bool {
    content_type
        .to_ascii_lowercase()
        .replace(' ', "")
        .contains("charset=utf-16")
}

impl Charset {
    /// The body as UTF-8 text, and the encoding it came in. `declared_utf16` is what the
    /// Content-Type says; a byte order mark decides over it.
    pub fn decode(bytes: &[u8], declared_utf16: bool) -> Result<(Vec<u8>, Charset), Fault> {
        let (charset, body) = match bytes {
            [0xff, 0xfe, rest @ ..] => (Charset::Utf16Le, rest),
            [0xfe, 0xff, rest @ ..] => (Charset::Utf16Be, rest),
            [0xef, 0xbb, 0xbf, rest @ ..] => return Ok((rest.to_vec(), Charset::Utf8)),
            // UTF-16 without a byte order mark: '<' is 3C 00 or 00 3C.
            [0x3c, 0x00, ..] if declared_utf16 => (Charset::Utf16Le, bytes),
            [0x00, 0x3c, ..] if declared_utf16 => (Charset::Utf16Be, bytes),
            _ => return Ok((bytes.to_vec(), Charset::Utf8)),
        };
        if body.len() % 2 != 0 {
            return Err(Fault::schema("the UTF-16 body has an odd number of bytes"));
        }
        let units = body.chunks_exact(2).map(|c| match charset {
            Charset::Utf16Be => u16::from_be_bytes([c[0], c[1]]),
            _ => u16::from_le_bytes([c[0], c[1]]),
        });
        let text: String = char::decode_utf16(units)
            .collect::<Result<_, _>>()
            .map_err(|_| Fault::schema("the body is not valid UTF-16"))?;
        // The declaration still says UTF-16; the parser reads the text as the UTF-8 it now is.
        Ok((text.into_bytes(), charset))
    }

    /// `text` (an envelope written in UTF-8) in this encoding, with a byte order mark for
    /// UTF-16.
    pub fn encode(self, text: String) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.into_bytes(),
            Charset::Utf16Le | Charset::Utf16Be => {
                let text = text.replacen("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", 1);
                let mut out = Vec::with_capacity(text.len() * 2 + 2);
                let bom: u16 = 0xfeff;
                for unit in std::iter::once(bom).chain(text.encode_utf16()) {
                    out.extend_from_slice(&if self == Charset::Utf16Be {
                        unit.to_be_bytes()
                    } else {
                        unit.to_le_bytes()
                    });
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_in_either_order_decodes_and_the_answer_is_encoded_alike() {
        let le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("<a/>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(
            Charset::decode(&le, false).unwrap(),
            (b"<a/>".to_vec(), Charset::Utf16Le)
        );
        let be_bare: Vec<u8> = "<a/>".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(Charset::decode(&be_bare, true).unwrap().1, Charset::Utf16Be);
        assert_eq!(Charset::decode(&be_bare, false).unwrap().1, Charset::Utf8);
        assert!(Charset::decode(&le[..5], false).is_err());
        assert_eq!(Charset::Utf16Le.encode("<a/>".into()), le);
        assert!(declares_utf16("application/soap+xml; charset=UTF-16"));
        assert!(!declares_utf16("application/soap+xml;charset=UTF-8"));
    }
}
