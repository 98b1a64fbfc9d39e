//! Building the requests a bench client sends: the DER `OCSPRequest` for one
//! serial (SHA-1 CertID, no nonce — what RFC 5019 clients send and what a CDN
//! can cache) and its HTTP form: POST, or GET with the URL spellings real
//! clients and proxies produce.

use base64::Engine;

use super::keyspace::{ClientIssuer, Rng};
use crate::ocsp::response::der_tlv;
use crate::ocsp::Serial;

/// `AlgorithmIdentifier { id-sha1, NULL }`, DER.
const SHA1_ALG_ID: &[u8] = &[0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00];

/// Appends the DER `OCSPRequest` for one CertID of `issuer` to `out`.
pub fn ocsp_request(issuer: &ClientIssuer, serial: &Serial, out: &mut Vec<u8>) {
    let mut cert_id = Vec::with_capacity(80);
    cert_id.extend_from_slice(SHA1_ALG_ID);
    der_tlv(0x04, &issuer.name_hash_sha1, &mut cert_id);
    der_tlv(0x04, &issuer.key_hash_sha1, &mut cert_id);
    der_tlv(0x02, serial.as_bytes(), &mut cert_id);
    let mut request = Vec::with_capacity(96);
    der_tlv(0x30, &cert_id, &mut request); // CertID
    let mut single = Vec::with_capacity(96);
    der_tlv(0x30, &request, &mut single); // Request
    let mut list = Vec::with_capacity(96);
    der_tlv(0x30, &single, &mut list); // requestList
    let mut tbs = Vec::with_capacity(100);
    der_tlv(0x30, &list, &mut tbs); // TBSRequest
    der_tlv(0x30, &tbs, out); // OCSPRequest
}

/// How a GET URL is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// RFC 5019 §A.1 as most clients do it: base64 with `+ / =`
    /// percent-encoded.
    Canonical,
    /// Raw base64: `/` and `+` and `=` unencoded (many clients).
    Raw,
    /// URL-safe alphabet, no padding.
    UrlSafe,
    /// Lower-case percent-escapes and no padding.
    LowerNoPad,
    /// A leading `//` (responder URL configured with a trailing slash) and a
    /// cache-busting query string.
    DoubleSlashQuery,
    /// `+` turned into `%20` by a form-decoding proxy.
    PlusAsSpace,
}

impl Spelling {
    /// The quirky spellings, drawn from at random for the quirk share.
    pub const QUIRKS: [Spelling; 5] = [
        Spelling::Raw,
        Spelling::UrlSafe,
        Spelling::LowerNoPad,
        Spelling::DoubleSlashQuery,
        Spelling::PlusAsSpace,
    ];
}

/// Appends the GET request line's target for `der` under `prefix`.
pub fn get_target(prefix: &str, der: &[u8], spelling: Spelling, out: &mut Vec<u8>) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.extend_from_slice(prefix.as_bytes());
    if spelling == Spelling::DoubleSlashQuery {
        out.extend_from_slice(b"//");
    } else {
        out.push(b'/');
    }
    match spelling {
        Spelling::Canonical | Spelling::DoubleSlashQuery => {
            for c in b64.bytes() {
                match c {
                    b'+' => out.extend_from_slice(b"%2B"),
                    b'/' => out.extend_from_slice(b"%2F"),
                    b'=' => out.extend_from_slice(b"%3D"),
                    c => out.push(c),
                }
            }
        }
        Spelling::Raw => out.extend_from_slice(b64.as_bytes()),
        Spelling::UrlSafe => {
            out.extend_from_slice(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(der).as_bytes())
        }
        Spelling::LowerNoPad => {
            for c in b64.bytes().filter(|c| *c != b'=') {
                match c {
                    b'+' => out.extend_from_slice(b"%2b"),
                    b'/' => out.extend_from_slice(b"%2f"),
                    c => out.push(c),
                }
            }
        }
        Spelling::PlusAsSpace => {
            for c in b64.bytes() {
                match c {
                    b'+' => out.extend_from_slice(b"%20"),
                    c => out.push(c),
                }
            }
        }
    }
    if spelling == Spelling::DoubleSlashQuery {
        out.extend_from_slice(b"?cb=1");
    }
}

/// The request mix.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Share of POSTs (real traffic: ~0.75).
    pub post_share: f64,
    /// Share of GETs spelled with a quirk.
    pub quirk_share: f64,
}

/// One way of asking: POST, or GET with one URL spelling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// POST with the DER as the body.
    Post,
    /// GET with the DER in the URL, spelled so.
    Get(Spelling),
}

impl Mix {
    /// A form drawn from the mix.
    pub fn draw(self, rng: &mut Rng) -> Form {
        if rng.unit() < self.post_share {
            Form::Post
        } else if rng.unit() < self.quirk_share {
            Form::Get(Spelling::QUIRKS[rng.below(Spelling::QUIRKS.len())])
        } else {
            Form::Get(Spelling::Canonical)
        }
    }

    /// Every form the mix can draw, POST first, then the canonical GET, then
    /// the quirks: a CDN caches each as its own object, so a warm-up that
    /// walks them all leaves none of the stage traffic's forms cold.
    pub fn forms(self) -> Vec<Form> {
        let mut forms = Vec::new();
        if self.post_share > 0.0 {
            forms.push(Form::Post);
        }
        if self.post_share < 1.0 {
            if self.quirk_share < 1.0 {
                forms.push(Form::Get(Spelling::Canonical));
            }
            if self.quirk_share > 0.0 {
                forms.extend(Spelling::QUIRKS.iter().map(|s| Form::Get(*s)));
            }
        }
        forms
    }
}

/// Appends one whole HTTP/1.1 keep-alive request for `der` to `out`, in a
/// form drawn from `mix`.
pub fn http_request(host: &str, prefix: &str, der: &[u8], mix: Mix, rng: &mut Rng, out: &mut Vec<u8>) {
    http_request_as(host, prefix, der, mix.draw(rng), out)
}

/// Appends one whole HTTP/1.1 keep-alive request for `der` to `out`, as `form`.
pub fn http_request_as(host: &str, prefix: &str, der: &[u8], form: Form, out: &mut Vec<u8>) {
    match form {
        Form::Post => {
            let path = if prefix.is_empty() { "/" } else { prefix };
            out.extend_from_slice(b"POST ");
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\r\nContent-Type: application/ocsp-request\r\nContent-Length: ");
            out.extend_from_slice(der.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(der);
        }
        Form::Get(spelling) => {
            out.extend_from_slice(b"GET ");
            get_target(prefix, der, spelling, out);
            out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(b"\r\nUser-Agent: ocsp-origin-bench\r\n\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::get_path::{self, Route};

    fn issuer() -> ClientIssuer {
        ClientIssuer {
            name: "t".into(),
            name_hash_sha1: vec![1; 20],
            key_hash_sha1: vec![2; 20],
            subject_der: vec![],
            spki_der: vec![],
        }
    }

    #[test]
    fn request_is_valid_der_that_x509_ocsp_reads() {
        use der::Decode;
        let mut der = Vec::new();
        let serial = Serial::from_hex("00FF01").unwrap();
        ocsp_request(&issuer(), &serial, &mut der);
        let r = x509_ocsp::OcspRequest::from_der(&der).unwrap();
        let id = &r.tbs_request.request_list[0].req_cert;
        assert_eq!(id.issuer_name_hash.as_bytes(), &[1; 20]);
        assert_eq!(id.serial_number.as_bytes(), serial.as_bytes());
    }

    #[test]
    fn every_spelling_decodes_to_the_same_der() {
        // Bytes chosen so the base64 has '+', '/' and padding.
        let der: Vec<u8> = (0..=255u8).chain([0xfb, 0xff]).collect();
        for s in [Spelling::Canonical].iter().chain(Spelling::QUIRKS.iter()) {
            let mut t = Vec::new();
            get_target("/ocsp", &der, *s, &mut t);
            let Route::Ocsp(enc) = get_path::route(&t, "/ocsp") else { panic!("{s:?} not routed") };
            let (mut scratch, mut out) = (Vec::new(), Vec::new());
            get_path::decode(enc, &mut scratch, &mut out).unwrap_or_else(|e| panic!("{s:?}: {e:?}"));
            assert_eq!(out, der, "{s:?}");
        }
    }

    #[test]
    fn forms_are_what_the_mix_can_draw() {
        let all = Mix { post_share: 0.75, quirk_share: 0.2 }.forms();
        assert_eq!(all.len(), 2 + Spelling::QUIRKS.len());
        assert_eq!(all[..2], [Form::Post, Form::Get(Spelling::Canonical)]);
        assert_eq!(Mix { post_share: 1.0, quirk_share: 0.2 }.forms(), vec![Form::Post]);
        assert_eq!(Mix { post_share: 0.0, quirk_share: 0.0 }.forms(), vec![Form::Get(Spelling::Canonical)]);
        let mut rng = Rng::new(5);
        let mix = Mix { post_share: 0.5, quirk_share: 0.5 };
        for _ in 0..1000 {
            assert!(mix.forms().contains(&mix.draw(&mut rng)));
        }
    }
}
