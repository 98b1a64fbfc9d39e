#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ from tests/data/client-requests.

    python3 fuzz/make_corpus.py            # derived seeds only
    python3 fuzz/make_corpus.py --capture  # also capture real client heads

- ocsp_request/: the DER requests made by OpenSSL, GnuTLS and Python, as is.
- get_path/: each request's GET target in the encodings clients and proxies
  produce (RFC 6960 A.1 base64 + URL-encoding, raw base64, URL-safe, '+' as a
  space, with and without padding, a prefix, a double slash, a query).
- http_head/: GET and POST requests carrying those, in the header shapes
  OpenSSL, Microsoft CryptoAPI and Firefox send. With --capture, also the exact
  bytes `openssl ocsp`, curl, wget and Python urllib send (captured on a
  loopback socket; needs those tools).

Derived seeds are deterministic; captured ones carry the loopback port they
were captured on (Host header) and, for OpenSSL, a random nonce.
"""

import base64
import pathlib
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "client-requests"
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def get_variants(der):
    std = base64.b64encode(der).decode()
    pct = urllib.parse.quote(std, safe="")
    return {
        "pct": pct,  # RFC 6960 A.1 as OpenSSL's OCSP_REQ_CTX and browsers do it
        "raw": std,  # unescaped, as some clients send it
        "nopad": std.rstrip("="),
        "urlsafe": base64.urlsafe_b64encode(der).decode().rstrip("="),
        "space": std.replace("+", " "),  # a form-decoding proxy turned '+' into ' '
        "pct-lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), pct),
    }


def derived():
    ders = sorted(DATA.glob("*.der"))
    for f in ders:
        der = f.read_bytes()
        name = f.stem
        write("ocsp_request", f"{name}.der", der)
        for kind, enc in get_variants(der).items():
            write("get_path", f"{name}-{kind}", f"/{enc}".encode())
        enc = get_variants(der)["pct"]
        write("get_path", f"{name}-prefix", f"/ocsp/{enc}".encode())
        write("get_path", f"{name}-double-slash-query", f"//{enc}?nocache=1".encode())

        # GET, CryptoAPI shape (HTTP/1.1, keep-alive, conditional).
        write(
            "http_head",
            f"{name}-get-cryptoapi",
            (
                f"GET /{enc} HTTP/1.1\r\nConnection: Keep-Alive\r\nAccept: */*\r\n"
                "If-Modified-Since: Sat, 28 Nov 2026 00:00:00 GMT\r\n"
                'If-None-Match: "0a1b2c"\r\nUser-Agent: Microsoft-CryptoAPI/10.0\r\n'
                "Host: ocsp.example\r\n\r\n"
            ).encode(),
        )
        # GET, minimal.
        write("http_head", f"{name}-get", f"GET /{enc} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        # POST, OpenSSL shape (HTTP/1.0, body follows the head).
        head = (
            "POST / HTTP/1.0\r\nHost: ocsp.example\r\nPragma: no-cache\r\n"
            f"Content-Type: application/ocsp-request\r\nContent-Length: {len(der)}\r\n\r\n"
        )
        write("http_head", f"{name}-post-openssl", head.encode() + der)
        # POST, Firefox shape (HTTP/1.1, keep-alive).
        head = (
            "POST /ocsp HTTP/1.1\r\nHost: ocsp.example\r\nUser-Agent: Mozilla/5.0\r\n"
            "Accept: */*\r\nContent-Type: application/ocsp-request\r\n"
            f"Content-Length: {len(der)}\r\nConnection: keep-alive\r\n\r\n"
        )
        write("http_head", f"{name}-post-firefox", head.encode() + der)

    # Two pipelined GETs and a few heads the server refuses.
    der = (DATA / "openssl-sha1.der").read_bytes()
    enc = get_variants(der)["pct"]
    one = f"GET /{enc} HTTP/1.1\r\nHost: x\r\n\r\n"
    write("http_head", "pipelined-two-gets", (one + one).encode())
    write("http_head", "health-http10", b"GET / HTTP/1.0\r\n\r\n")
    write("http_head", "post-chunked", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    write("http_head", "post-no-length", b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")
    write("http_head", "head-method", b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    # Just under the default limits (4096-byte request line, 8192-byte head), so
    # mutations cross them without having to grow an input that far first.
    line = "GET /" + "A" * (4096 - len("GET / HTTP/1.1\r")) + " HTTP/1.1\r\n"
    write("http_head", "uri-at-limit", (line + "Host: x\r\n\r\n").encode())
    head = "GET / HTTP/1.1\r\nX-Pad: "
    head += "a" * (8192 - len(head) - len("\r\n\r\n")) + "\r\n\r\n"
    write("http_head", "head-at-limit", head.encode())


def capture(cmds):
    """Runs each client against a loopback socket and keeps the bytes it sends."""
    for name, argv_for in cmds:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        got = []

        def serve():
            conn, _ = srv.accept()
            conn.settimeout(3)
            data = b""
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    head, sep, body = data.partition(b"\r\n\r\n")
                    if sep:
                        n = 0
                        for line in head.split(b"\r\n")[1:]:
                            k, _, v = line.partition(b":")
                            if k.strip().lower() == b"content-length":
                                n = int(v)
                        if len(body) >= n:
                            break
            except socket.timeout:
                pass
            got.append(data)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

        t = threading.Thread(target=serve)
        t.start()
        argv = argv_for(port)
        if callable(argv):
            try:
                argv()
            except Exception:
                pass
        else:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        t.join(10)
        srv.close()
        if got and got[0]:
            write("http_head", f"captured-{name}", got[0])
            print(f"captured {name}: {len(got[0])} bytes")
        else:
            print(f"nothing captured from {name}", file=sys.stderr)


def captures():
    enc = get_variants((DATA / "openssl-sha1.der").read_bytes())["pct"]
    der = (DATA / "python-cryptography-sha1.der").read_bytes()

    def urllib_post(port):
        def go():
            req = urllib.request.Request(
                f"http://127.0.0.1:{port}/ocsp",
                data=der,
                headers={"Content-Type": "application/ocsp-request"},
            )
            urllib.request.urlopen(req, timeout=5)

        return go

    def urllib_get(port):
        return lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/{enc}", timeout=5)

    return [
        (
            "openssl-ocsp-post",
            lambda p: [
                "openssl", "ocsp", "-issuer", str(DATA / "ca.pem"), "-cert", str(DATA / "leaf-good.pem"),
                "-url", f"http://127.0.0.1:{p}/ocsp", "-timeout", "3",
            ],
        ),
        ("curl-get", lambda p: ["curl", "-s", "-m", "5", f"http://127.0.0.1:{p}/{enc}"]),
        ("wget-get", lambda p: ["wget", "-q", "-O", "/dev/null", "-t", "1", "-T", "5", f"http://127.0.0.1:{p}/{enc}"]),
        ("python-urllib-post", urllib_post),
        ("python-urllib-get", urllib_get),
    ]


if __name__ == "__main__":
    derived()
    if "--capture" in sys.argv[1:]:
        capture(captures())
