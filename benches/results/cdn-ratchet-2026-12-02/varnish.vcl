#
# Varnish 7 in front of ocsp-origin nodes (Debian: apt-get install varnish
# varnish-modules; vmods std, directors, xkey and bodyaccess).
#
#   varnishd -f /etc/varnish/ocsp-origin.vcl -a :80 -s malloc,1g
#
# What it does:
# - caches OCSP GETs by URL (`{prefix}/{base64 DER}`, percent-encoded or not:
#   each spelling is its own object) and OCSP POSTs
#   (`Content-Type: application/ocsp-request`, body up to 16 KiB) by body;
#   GET and POST objects never share a hash;
# - keeps each answer for the origin's `Cache-Control: max-age` (which runs to
#   the point where the origin re-signs it), then revalidates it with the
#   origin's strong ETag (`If-None-Match`: a 304 if the origin still serves
#   the same response); error answers (`max-age=0, no-cache`) are never cached;
# - `PURGE` with `xkey-purge: <tags>` from the `purgers` ACL drops every
#   object the origin tagged (response header `xkey: <tags>`) with one of them;
# - adds `X-Cache: HIT|MISS` (and Varnish's `Age`), strips `xkey`, never
#   compresses or otherwise transforms a body (`no-transform`).
#
vcl 4.1;

import std;
import directors;
import xkey;
import bodyaccess;
import blob;

# BEGIN backends (substituted by benches/e2e/cdn_ratchet.sh)
backend origin1 { .host = "127.0.0.1"; .port = "55141"; .connect_timeout = 1s; .first_byte_timeout = 5s; .between_bytes_timeout = 2s; }
sub vcl_init {
    new origins = directors.round_robin();
    origins.add_backend(origin1);
}
# END backends

# Who may purge (the CA's purger, on this host or a management network).
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    set req.backend_hint = origins.backend();
    # Internal marker (see vcl_hash, vcl_backend_fetch): never a client's.
    unset req.http.X-Ocsp-Post;

    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "PURGE needs an xkey-purge header"));
        }
        # Hard purge: the objects are gone, grace and keep included, so no
        # copy of a changed status is served once the purge has answered.
        set req.http.X-Purged = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged"));
    }

    # Answers depend on the request only: no cookie, credential or host can
    # change them, so none is hashed or makes a request uncacheable (the
    # built-in VCL would pass requests with a Cookie or Authorization).
    unset req.http.Cookie;
    unset req.http.Authorization;
    # The origin ignores a query string: strip it, so it cannot bust the cache.
    set req.url = regsub(req.url, "\?.*$", "");

    if (req.method == "GET" || req.method == "HEAD") {
        return (hash);
    }
    if (req.method == "POST") {
        # Only OCSP POSTs are cached, and only bodies that fit the bound
        # (the origin's own limit is smaller: it answers 413 to what passes).
        if (req.http.Content-Type !~ "^(?i)application/ocsp-request\s*(;.*)?$") {
            return (pass);
        }
        if (req.http.Content-Length !~ "^[0-9]{1,5}$"
            || std.integer(req.http.Content-Length, 16385) > 16384) {
            return (pass);
        }
        if (!std.cache_req_body(16KB)) {
            return (pass);
        }
        set req.http.X-Ocsp-Post = "1";
        return (hash);
    }
    # Anything else goes to the origin as it is (which answers 405).
    return (pass);
}

sub vcl_hash {
    # GET (and HEAD) by URL, POST by body: a POST whose body happens to equal
    # some URL's bytes can never meet that GET's object.
    if (req.http.X-Ocsp-Post) {
        hash_data("POST");
        bodyaccess.hash_req_body();
    } else {
        hash_data("GET");
        hash_data(req.url);
    }
    # Not the Host: every name the CA gives its responder has the same answers.
    return (lookup);
}

sub vcl_backend_fetch {
    # Varnish sends a cacheable miss as a GET; an OCSP POST must stay a POST
    # (the cached body goes with it, on revalidations and background fetches
    # too). The origin answers a POST 200, never 304.
    if (bereq.http.X-Ocsp-Post) {
        set bereq.method = "POST";
        unset bereq.http.X-Ocsp-Post;
    }
    # Bodies are DER: nothing to compress.
    unset bereq.http.Accept-Encoding;
}

sub vcl_backend_response {
    # no-transform: bodies are delivered byte for byte.
    set beresp.do_gzip = false;
    set beresp.do_gunzip = false;
    set beresp.do_esi = false;

    # Only signed answers are cached: 200 OCSP responses with a positive
    # max-age (a 304 from a revalidation arrives here as 200 with
    # beresp.was_304, its fresh max-age merged in). Unsigned error answers
    # (tryLater, malformedRequest, ...) say `max-age=0, no-cache`; anything
    # without a max-age (the health answer, HTTP errors) is not cached either,
    # where Varnish would otherwise give it default_ttl. They become
    # hit-for-miss for a few seconds: later requests still go to the origin
    # (no pass: the next signed answer is cached at once).
    if (beresp.status != 200
        || beresp.http.Content-Type != "application/ocsp-response"
        || beresp.http.Cache-Control !~ "(?i)(^|[,\s])max-age=[0-9]"
        || beresp.http.Cache-Control ~ "(?i)no-cache|no-store|private"
        || beresp.ttl <= 0s) {
        # A background revalidation that got no signed answer: keep serving
        # the graced copy (still valid: the origin answers tryLater only
        # when it holds no valid copy itself) for the rest of its grace.
        if (bereq.is_bgfetch && !beresp.was_304) {
            return (abandon);
        }
        set beresp.ttl = 5s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }

    # TTL: Varnish has set beresp.ttl from max-age (less any Age); it is kept.
    #
    # Grace: an object past its TTL is still served for a few seconds while a
    # background fetch revalidates it, so a hot object never makes clients
    # wait on the origin. That is fine for OCSP: the response itself stays
    # valid until its nextUpdate (max-age only runs to where the origin
    # re-signs it, long before), and status changes are pushed out by purges,
    # which are hard and remove graced copies too. `must-revalidate` is
    # honoured in spirit: nothing is served past its nextUpdate.
    set beresp.grace = 10s;

    # Keep: past TTL + grace the object is never served, but its validators
    # are, so the origin can answer a revalidation with a 304 instead of the
    # body. Useful until the response's nextUpdate (`Expires`), not longer.
    set beresp.keep = std.time(beresp.http.Expires, now) - now - beresp.ttl - beresp.grace;
    if (beresp.keep < 0s) {
        set beresp.keep = 0s;
    }
    return (deliver);
}

sub vcl_backend_error {
    # A background revalidation that failed: the graced copy stays.
    if (bereq.is_bgfetch) {
        return (abandon);
    }
    # The origin is unreachable or timed out: an OCSP client gets an unsigned
    # tryLater (RFC 6960 §2.3), not an HTML page; never cached.
    if (bereq.method == "POST" || bereq.url ~ "^/.*[^/]$") {
        set beresp.status = 200;
        set beresp.reason = "OK";
        set beresp.http.Content-Type = "application/ocsp-response";
        set beresp.http.Cache-Control = "max-age=0, no-cache";
        # OCSPResponse { responseStatus tryLater (3) }: 30 03 0a 01 03.
        set beresp.body = blob.decode(BASE64, encoded = "MAMKAQM=");
    }
    set beresp.ttl = 0s;
    set beresp.grace = 0s;
    set beresp.keep = 0s;
    return (deliver);
}

sub vcl_deliver {
    # The origin's purge tags are for this cache only.
    unset resp.http.xkey;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    return (deliver);
}

sub vcl_synth {
    if (req.method == "PURGE") {
        set resp.http.Content-Type = "text/plain";
        if (resp.status == 200) {
            set resp.http.X-Purged = req.http.X-Purged;
        }
        set resp.body = resp.reason + {"
"};
        return (deliver);
    }
}
