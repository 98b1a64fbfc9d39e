//! Micro-benchmarks of the per-request CPU work, one group per stage:
//! HTTP head parse, GET path decode, OCSP request decode + admission,
//! ResponseData encoding, and sign + assemble per key type (the raw signing
//! rate that bounds just-in-time misses).
//!
//! Run: `cargo bench --bench micro` (results: benches/RESULTS.md).

use std::hint::black_box;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ocsp_origin::http::get_path;
use ocsp_origin::http::parse::{parse_head, Limits};
use ocsp_origin::ocsp::issuer::{parse_certificate, Issuer, Issuers, ResponderIdentity};
use ocsp_origin::ocsp::response::{assemble, response_data, Validity};
use ocsp_origin::ocsp::IssuerId;
use ocsp_origin::signer::{Signer, SoftwareSigner};
use ocsp_origin::source::admission;
use ocsp_origin::status::CertStatus;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-requests/");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

fn test_issuers() -> Issuers {
    let cert = parse_certificate(&read("ca.pem")).unwrap();
    let key = String::from_utf8(read("ca.key")).unwrap();
    let signer: Arc<dyn Signer> = Arc::new(SoftwareSigner::from_pem(&key).unwrap());
    Issuers::new(vec![Issuer::new("test", cert, signer, None).unwrap()])
}

fn limits() -> Limits {
    Limits { max_uri_bytes: 4096, max_header_bytes: 8192, max_body_bytes: 8192 }
}

fn http(c: &mut Criterion) {
    let der = read("openssl-sha1.der");
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&der)
    };
    let get = format!("GET /{b64} HTTP/1.1\r\nHost: ocsp.example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n");
    let post = format!(
        "POST / HTTP/1.1\r\nHost: ocsp.example.com\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
        der.len()
    );
    let l = limits();
    let mut g = c.benchmark_group("http_parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("get_head", |b| b.iter(|| parse_head(black_box(get.as_bytes()), &l).unwrap()));
    g.bench_function("post_head", |b| b.iter(|| parse_head(black_box(post.as_bytes()), &l).unwrap()));
    g.finish();

    let encoded = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let mut g = c.benchmark_group("get_path");
    g.throughput(Throughput::Elements(1));
    let (mut scratch, mut out) = (Vec::new(), Vec::new());
    g.bench_function("decode_percent_encoded", |b| {
        b.iter(|| get_path::decode(black_box(encoded.as_bytes()), &mut scratch, &mut out).unwrap())
    });
    g.finish();
}

fn ocsp_decode(c: &mut Criterion) {
    let issuers = test_issuers();
    let policy = admission::Policy { max_cert_ids: 8, ..Default::default() };
    let mut g = c.benchmark_group("ocsp_decode");
    g.throughput(Throughput::Elements(1));
    for name in ["openssl-sha1.der", "openssl-sha1-nonce.der", "openssl-two-certids.der"] {
        let der = read(name);
        g.bench_function(name.trim_end_matches(".der"), |b| {
            b.iter(|| admission::admit(black_box(&der), &issuers, &policy).unwrap())
        });
        // The reference in the same run: RustCrypto's full `x509-ocsp`
        // decode (what admission used before it read borrowed views of only
        // the fields it answers from), without identifying the issuer.
        g.bench_function(format!("{}/x509-ocsp-decode", name.trim_end_matches(".der")), |b| {
            b.iter(|| {
                use der::Decode;
                x509_ocsp::OcspRequest::from_der(black_box(&der)).unwrap()
            })
        });
    }
    g.finish();
}

fn signers() -> Vec<(&'static str, Arc<dyn Signer>)> {
    let rng = SystemRandom::new();
    let ec =
        |alg| SoftwareSigner::from_pkcs8(EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref()).unwrap();
    let rsa = |size| {
        let k = RsaKeyPair::generate(size).unwrap();
        use aws_lc_rs::encoding::AsDer;
        SoftwareSigner::from_pkcs8(k.as_der().unwrap().as_ref()).unwrap()
    };
    vec![
        ("p256", Arc::new(ec(&ECDSA_P256_SHA256_ASN1_SIGNING)) as Arc<dyn Signer>),
        ("p384", Arc::new(ec(&ECDSA_P384_SHA384_ASN1_SIGNING))),
        ("rsa2048", Arc::new(rsa(KeySize::Rsa2048))),
        ("rsa3072", Arc::new(rsa(KeySize::Rsa3072))),
        ("rsa4096", Arc::new(rsa(KeySize::Rsa4096))),
    ]
}

fn encode_and_sign(c: &mut Criterion) {
    let issuers = test_issuers();
    let issuer = issuers.get(IssuerId(0));
    let q = admission::admit(
        &read("openssl-sha1.der"),
        &issuers,
        &admission::Policy { max_cert_ids: 8, ..Default::default() },
    )
    .unwrap();
    let answers = [(q.ids[0], CertStatus::Good)];
    let v = Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
    let mut g = c.benchmark_group("response_encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("response_data_1_certid", |b| {
        b.iter(|| response_data(issuer, black_box(&answers), v).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("encode_sign");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    for (name, signer) in signers() {
        let identity = ResponderIdentity { key_hash: [0; 20], certs_field: None, signer: signer.clone() };
        g.bench_function(name, |b| {
            b.iter(|| {
                let tbs = response_data(issuer, black_box(&answers), v).unwrap();
                let sig = identity.signer.sign(&tbs).unwrap();
                assemble(&tbs, &identity, &sig)
            })
        });
    }
    g.finish();
}

/// Wrapping a signed body for the cache: ETag (SHA-256) and the header lines
/// rendered once per signature (on the miss path, after the signature).
fn cached_response(c: &mut Criterion) {
    use ocsp_origin::cache::{CachedResponse, Origin};
    let der = vec![0x30u8; 280];
    let v = Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
    let mut g = c.benchmark_group("cached_response");
    g.throughput(Throughput::Elements(1));
    g.bench_function("new_280_bytes", |b| {
        b.iter(|| CachedResponse::new(black_box(der.clone()), v, 1_795_100_000, Origin::Signed))
    });
    g.finish();
}

/// What a Redis-served hit costs beyond the GET: decoding the value, and
/// checking its DER against its header and the CertID asked for.
fn redis_value(c: &mut Criterion) {
    use ocsp_origin::source::redis::{decode, encode_response, Stored};
    let issuers = test_issuers();
    let issuer = issuers.get(IssuerId(0));
    let q = admission::admit(
        &read("openssl-sha1.der"),
        &issuers,
        &admission::Policy { max_cert_ids: 8, ..Default::default() },
    )
    .unwrap();
    let answers = [(q.ids[0], CertStatus::Good)];
    let v = Validity { produced_at: 1_795_000_000, this_update: 1_794_996_400, next_update: 1_795_342_000 };
    let tbs = response_data(issuer, &answers, v).unwrap();
    let sig = issuer.responder.signer.sign(&tbs).unwrap();
    let der = assemble(&tbs, &issuer.responder, &sig);
    let mut r =
        ocsp_origin::cache::CachedResponse::new(der, v, 1_795_100_000, ocsp_origin::cache::Origin::Signed);
    r.statuses = vec![CertStatus::Good].into();
    r.revision = 7;
    let value = encode_response(&r, v.produced_at);
    let mut g = c.benchmark_group("redis_value");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| decode(black_box(&value)).unwrap()));
    let Some(Stored::Response(d)) = decode(&value) else { panic!("decodes") };
    g.bench_function("agrees", |b| {
        b.iter(|| {
            assert!(ocsp_origin::ocsp::response::agrees(
                black_box(&d.der),
                issuer,
                &q.ids,
                &d.statuses,
                d.validity
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, http, ocsp_decode, encode_and_sign, cached_response, redis_value);
criterion_main!(benches);
