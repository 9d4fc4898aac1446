#!/usr/bin/env python3
"""A minimal read-only S3-compatible server over a local folder, for benchmarks on machines
without Node.js (the tests use s3rver; this one is only for `bench/gpu_21.sh s3scale`).

    python3 mini_s3.py ROOT BUCKET        # prints "LISTENING <port>", serves until killed

Path-style requests only: HEAD and GET (with `Range: bytes=a-b`) of /BUCKET/KEY, and
ListObjectsV2 (GET /BUCKET?list-type=2&prefix=P[&continuation-token=T][&max-keys=N]) over the
files under ROOT. Signatures are accepted without checking (benchmark use only: never expose it).
Bodies go out with os.sendfile on a threaded server, one thread per connection."""
import os, socket, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

ROOT, BUCKET = os.path.abspath(sys.argv[1]), sys.argv[2]


def all_keys():
    keys = []
    for d, _, files in os.walk(ROOT):
        for f in files:
            p = os.path.join(d, f)
            keys.append((os.path.relpath(p, ROOT).replace(os.sep, "/"), os.path.getsize(p)))
    return sorted(keys)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/xml", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self):
        self.reply(404, b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>not found</Message></Error>")

    def target(self):
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.lstrip("/").split("/", 1)
        if parts[0] != BUCKET:
            return None, None, u
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return key, os.path.join(ROOT, key), u

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        key, path, u = self.target()
        if key is None:
            return self.not_found()
        q = urllib.parse.parse_qs(u.query)
        if key == "" and q.get("list-type") == ["2"]:
            return self.list(q)
        if ".." in key.split("/") or not os.path.isfile(path):
            return self.not_found()
        size = os.path.getsize(path)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, b = rng[6:].split("-")
            start, end, status = int(a), min(int(b) if b else size - 1, size - 1), 206
            if start >= size:
                return self.reply(416, b"<Error><Code>InvalidRange</Code></Error>")
        n = end - start + 1
        self.send_response(status)
        self.send_header("Content-Length", str(n))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"%x-%x"' % (size, int(os.path.getmtime(path))))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.flush()
        with open(path, "rb") as f:
            off = start
            while n > 0:
                sent = os.sendfile(self.connection.fileno(), f.fileno(), off, n)
                if sent <= 0:
                    break
                off += sent
                n -= sent

    def list(self, q):
        prefix = q.get("prefix", [""])[0]
        after = q.get("continuation-token", [""])[0] or q.get("start-after", [""])[0]
        limit = int(q.get("max-keys", ["1000"])[0])
        hits = [(k, s) for k, s in all_keys() if k.startswith(prefix) and k > after]
        page, truncated = hits[:limit], len(hits) > limit
        xml = ["<?xml version='1.0' encoding='UTF-8'?>", "<ListBucketResult>", f"<Name>{BUCKET}</Name>",
               f"<Prefix>{escape(prefix)}</Prefix>", f"<KeyCount>{len(page)}</KeyCount>", f"<MaxKeys>{limit}</MaxKeys>",
               f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
        if truncated:
            xml.append(f"<NextContinuationToken>{escape(page[-1][0])}</NextContinuationToken>")
        for k, s in page:
            xml.append(f"<Contents><Key>{escape(k)}</Key><Size>{s}</Size></Contents>")
        xml.append("</ListBucketResult>")
        self.reply(200, "".join(xml).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


srv = Server(("127.0.0.1", 0), Handler)
srv.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
print(f"LISTENING {srv.server_address[1]}", flush=True)
srv.serve_forever()
