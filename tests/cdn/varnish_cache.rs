//! Varnish with the production VCL in front of real `ocsp-origin serve`
//! nodes: signed GET and POST answers are cached (a second ask is a Varnish
//! hit with `Age`, the same valid body, `MAIN.cache_hit` counting it), a
//! percent-encoded GET is an object of its own with the same answer, GET and
//! POST never share an object, and malformedRequest/unauthorized answers
//! reach the origin every time; expired copies are revalidated with
//! `If-None-Match`, and two nodes sharing one Redis both answer those with
//! 304 (one signed the response, the other serves the same bytes from
//! Redis); a `PURGE` with `xkey-purge` drops exactly the objects the origin
//! tagged so (`[cdn]`), from the ACL only, and the tags never reach clients.

use crate::common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::load::counter;
use common::varnish::Varnish;
use common::*;
use ocsp_origin::ocsp::HashAlg;

/// A node with an admin listener (for its counters); its admin address.
fn node(config: &ConfigBuilder) -> (Server, SocketAddr) {
    let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    (Server::start(&config.clone().admin(admin)), admin)
}

/// The GET path of `der`, and the same with every `+`, `/` and `=` of the
/// base64 percent-encoded (`%2B`, `%2F`, `%3D`).
fn paths(der: &[u8]) -> (String, String) {
    let plain = b64(der);
    let encoded = plain.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    assert_ne!(plain, encoded, "the request's base64 has a character to encode");
    (format!("/{plain}"), format!("/{encoded}"))
}

fn x_cache(r: &Response) -> &str {
    r.header("x-cache").unwrap_or("none")
}

/// A signed "good" answer, and how Varnish and the origin say it was made.
fn good(r: &Response, varnish: &str, origin: Option<&str>) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ocsp_status(&r.body), "good", "{r:?}");
    assert_eq!(x_cache(r), varnish, "{r:?}");
    if let Some(o) = origin {
        assert_eq!(r.header("x-cache-status"), Some(o), "{r:?}");
    }
    assert!(r.header("xkey").is_none(), "the purge tags stay in Varnish: {r:?}");
}

/// Waits (5 s at most) until Varnish's `counter` is `want`.
fn stat_reaches(v: &Varnish, counter: &str, want: u64) {
    let ok = wait_for(Duration::from_secs(5), || v.stat(counter) == want);
    assert!(ok, "{counter} is {}, not {want}", v.stat(counter));
}

/// A Varnish hit: `Age` present, the body of `first`, one more cache hit.
fn hit_of(v: &Varnish, raw: &[u8], first: &Response) -> Response {
    let hits = v.stat_settled("MAIN.cache_hit");
    let r = v.roundtrip(raw);
    good(&r, "HIT", None);
    let age: u64 = r.header("age").expect("a hit says its Age").parse().unwrap();
    assert!(age < 60, "{r:?}");
    assert_eq!(r.body, first.body, "the cached copy, byte for byte");
    stat_reaches(v, "MAIN.cache_hit", hits + 1);
    r
}

/// Asks `raw` twice through Varnish: both answers (equal to `body`) come
/// from the origin, none is a hit.
fn never_cached(v: &Varnish, raw: &[u8], body: &[u8]) {
    let (hits, fetches) = (v.stat_settled("MAIN.cache_hit"), v.stat_settled("MAIN.backend_req"));
    for _ in 0..2 {
        let r = v.roundtrip(raw);
        assert_eq!((r.status, r.body.as_slice(), x_cache(&r)), (200, body, "MISS"), "{r:?}");
        assert!(r.header("cache-control").is_some_and(|c| c.contains("no-cache")), "{r:?}");
    }
    stat_reaches(v, "MAIN.backend_req", fetches + 2);
    assert_eq!(v.stat_settled("MAIN.cache_hit"), hits, "no hit");
}

#[test]
fn signed_get_and_post_answers_are_cached_and_errors_are_not() {
    let (origin, admin) = node(&ConfigBuilder::new().test_issuer().set("cdn", "tag_prefix", "ocsp-"));
    let Some(v) = Varnish::start(&[origin.addr()]) else { return };
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    let (plain, encoded) = paths(&der);

    // GET: signed for the first ask, a Varnish hit for the second.
    let first = v.roundtrip(&get(&plain));
    good(&first, "MISS", Some("MISS"));
    assert!(first.header("cache-control").is_some_and(|c| c.contains("max-age=")), "{first:?}");
    hit_of(&v, &get(&plain), &first);
    assert_eq!(roundtrip(&origin, &get(&plain)).body, first.body, "the origin's own answer");
    // HEAD is answered from the GET's object.
    let head = v.roundtrip(format!("HEAD {plain} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!((head.status, x_cache(&head)), (200, "HIT"), "{head:?}");

    // The same request percent-encoded: an object of its own (a Varnish
    // miss), the same response from the origin's cache.
    let other = v.roundtrip(&get(&encoded));
    good(&other, "MISS", Some("HIT"));
    assert_eq!(other.body, first.body);
    hit_of(&v, &get(&encoded), &other);

    // POST: hashed by body, apart from every GET: the same request as the
    // cached GET is a Varnish miss (the origin's cache has it).
    let post_same = v.roundtrip(&post("/", &der));
    good(&post_same, "MISS", Some("HIT"));
    assert_eq!(post_same.body, first.body);
    hit_of(&v, &post("/", &der), &post_same);
    let der256 = std::fs::read(data("openssl-sha256.der")).unwrap();
    let post_new = v.roundtrip(&post("/", &der256));
    good(&post_new, "MISS", Some("MISS"));
    hit_of(&v, &post("/", &der256), &post_new);
    assert_ne!(post_new.body, first.body, "another request, another answer");
    // A POST that is not `application/ocsp-request` is passed, never cached.
    let typed = String::from_utf8_lossy(&post("/", b"")).replace("application/ocsp-request", "text/plain");
    let mut raw =
        typed.replace("Content-Length: 0", &format!("Content-Length: {}", der256.len())).into_bytes();
    raw.extend_from_slice(&der256);
    let hits = v.stat_settled("MAIN.cache_hit");
    for _ in 0..2 {
        assert_eq!(x_cache(&v.roundtrip(&raw)), "MISS");
    }
    assert_eq!(v.stat_settled("MAIN.cache_hit"), hits);

    // Error answers (`max-age=0, no-cache`) reach the origin every time.
    let errors_before = counter(admin, "responses_ocsp_error");
    never_cached(&v, &get("/notbase64!!"), &ocsp_error(1));
    never_cached(&v, &post("/", b"\x30\x00"), &ocsp_error(1));
    let never_issued = request_der(&[cert_id_der(HashAlg::Sha1, true, "0BADBAD0")], &[]);
    never_cached(&v, &get(&format!("/{}", b64(&never_issued))), &ocsp_error(6));
    assert!(
        wait_for(Duration::from_secs(5), || counter(admin, "responses_ocsp_error") == errors_before + 6),
        "the origin answered each error itself: {}",
        counter(admin, "responses_ocsp_error")
    );

    // The origin tags each signed answer (`[cdn]`: `xkey`, which Varnish
    // files it under and never passes on): a purge of the certificate's tag
    // drops its four objects (GET, encoded GET, two POSTs; HEAD shares the
    // GET's), not another certificate's; the issuer's tag drops them all.
    let revoked = requests_for(&[REVOKED.to_string()]).remove(0);
    let revoked_get = get(&format!("/{}", b64(&revoked)));
    assert_eq!(x_cache(&v.roundtrip(&revoked_get)), "MISS");
    let cached = v.roundtrip(&revoked_get);
    assert_eq!((ocsp_status(&cached.body).as_str(), x_cache(&cached)), ("revoked", "HIT"));
    let direct = roundtrip(&origin, &get(&plain));
    let tags = direct.header("xkey").expect("the origin tags its answers with [cdn]").to_string();
    let cert = tags.split(' ').find(|t| t.starts_with("ocsp-c-")).expect("a certificate tag");
    let issuer = tags.split(' ').find(|t| t.starts_with("ocsp-i-")).expect("an issuer tag");
    let four = [get(&plain), get(&encoded), post("/", &der), post("/", &der256)];
    let cached = |raw: &Vec<u8>| x_cache(&v.roundtrip(raw)).to_string();
    // No header: 400; not a purger: 403; a tag nothing has: none; nothing
    // is dropped.
    assert_eq!(v.purge(&[]).0, 400);
    assert_eq!(purge_from_outside(&v, issuer).status, 403);
    assert_eq!(v.purge(&["ocsp-nothing-has-this"]), (200, Some(0)));
    assert_eq!(four.each_ref().map(cached), ["HIT"; 4]);
    assert_eq!(v.purge(&[cert]), (200, Some(4)), "{tags}");
    assert_eq!(four.each_ref().map(cached), ["MISS"; 4]);
    assert_eq!(x_cache(&v.roundtrip(&revoked_get)), "HIT", "another certificate's answer stays");
    assert_eq!(v.purge(&[issuer]), (200, Some(5)));
    assert_eq!(x_cache(&v.roundtrip(&revoked_get)), "MISS");
}

/// The longest `beresp.grace` the VCL sets, seconds.
fn vcl_grace_secs() -> u64 {
    let vcl = std::fs::read_to_string(common::varnish::vcl_file()).unwrap();
    let secs = vcl
        .lines()
        .filter_map(|l| l.trim().strip_prefix("set beresp.grace = ")?.strip_suffix("s;")?.parse().ok());
    secs.max().expect("the VCL sets a grace")
}

/// The response header `Cache-Control: max-age=N`'s N.
fn max_age(r: &Response) -> u64 {
    let cc = r.header("cache-control").expect("Cache-Control");
    let n = cc.split("max-age=").nth(1).expect("a max-age");
    n.split(',').next().unwrap().trim().parse().unwrap()
}

#[test]
fn expired_copies_are_revalidated_with_304s_from_either_node() {
    let Some(redis) = test_redis("OCSP_TEST_REDIS_URL", "Varnish revalidation") else { return };
    // Responses re-signed 5 s after thisUpdate (max-age 5): a 60 s lifetime
    // is the least the config allows, under the RFC 6960 profile.
    let config = ConfigBuilder::new()
        .test_issuer()
        .redis(&redis)
        .set("redis", "key_prefix", unique_prefix("cdn"))
        .set("response", "profile", "rfc6960")
        .set("response", "lifetime_secs", 60)
        .set("response", "refresh_fraction", 0.1)
        .set("response", "backdate_secs", 1);
    let (a, a_admin) = node(&config);
    let (b, b_admin) = node(&config);
    let Some(v) = Varnish::start(&[a.addr(), b.addr()]) else { return };
    let der = std::fs::read(data("openssl-sha1.der")).unwrap();
    let (plain, encoded) = paths(&der);

    // Two objects in Varnish for one response, fetched round-robin: one node
    // signs it, the other serves it from the shared Redis (same ETag).
    let fetched = Instant::now();
    let first = v.roundtrip(&get(&plain));
    let second = v.roundtrip(&get(&encoded));
    good(&first, "MISS", None);
    good(&second, "MISS", None);
    let mut made = [first.header("x-cache-status"), second.header("x-cache-status")];
    made.sort();
    assert_eq!(made, [Some("HIT-L2"), Some("MISS")], "one node signed, the other read Redis");
    assert_eq!(first.body, second.body);
    let etag = first.header("etag").expect("an ETag").to_string();
    assert_eq!(second.header("etag"), Some(etag.as_str()));
    let ttl = max_age(&first);
    assert!((3..=5).contains(&ttl), "max-age {ttl}");

    // Past max-age the GET's copy is served once more (grace) while Varnish
    // revalidates it in the background with `If-None-Match`; past max-age
    // plus grace the encoded GET's copy is no longer served but kept, and is
    // revalidated while the client waits. The director sends each to the
    // node that filled it, and each answers 304: it still serves that
    // response (past its refresh point, while it re-signs) — for the node
    // that did not sign it, because Redis gave it the same bytes.
    let not_modified = |admin| counter(admin, "responses_not_modified");
    assert_eq!((not_modified(a_admin), not_modified(b_admin)), (0, 0));
    let fetch_304 = v.stat_settled("MAIN.fetch_304");
    sleep_until(fetched + Duration::from_secs(ttl + 1));
    let graced = v.roundtrip(&get(&plain));
    good(&graced, "HIT", None);
    assert_eq!(graced.header("etag"), Some(etag.as_str()), "the graced copy");
    stat_reaches(&v, "MAIN.fetch_304", fetch_304 + 1); // the background revalidation's 304
    sleep_until(fetched + Duration::from_secs(ttl + vcl_grace_secs() + 2));
    let kept = v.roundtrip(&get(&encoded));
    good(&kept, "MISS", None);
    assert_eq!(
        (kept.header("etag"), &kept.body),
        (Some(etag.as_str()), &first.body),
        "revalidated, not refetched"
    );
    stat_reaches(&v, "MAIN.fetch_304", fetch_304 + 2); // the kept copy's revalidation's 304
    assert!(
        wait_for(Duration::from_secs(5), || not_modified(a_admin) == 1 && not_modified(b_admin) == 1),
        "one 304 from each node: {} and {}",
        not_modified(a_admin),
        not_modified(b_admin)
    );
    // The 304s said max-age=0 (re-signature under way): the next ask gets a
    // full, valid answer from the origin.
    let next = v.roundtrip(&get(&plain));
    good(&next, "MISS", None);
}

/// A PURGE sent from 127.0.0.2 (outside the `purgers` ACL).
fn purge_from_outside(v: &Varnish, tags: &str) -> Response {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into()).unwrap();
    s.connect(&v.addr().into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "PURGE / HTTP/1.1\r\nHost: v\r\nxkey-purge: {tags}\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(s), false).expect("an answer")
}
