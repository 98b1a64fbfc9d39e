//! Minimal DER writing: one tag-length-value, the only encoding step the
//! response encoder and the PKCS#11 signature conversion share. A leaf, so the
//! signer does not depend on the OCSP codec.

/// Appends a DER TLV with a one-byte tag.
pub fn der_tlv(tag: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().position(|b| *b != 0).unwrap_or(7);
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}
