#!/usr/bin/python3
"""A misbehaving HTTP proxy for the remote-storage tests (started by tests/remote_servers.cpp).

Usage: remote_flaky_proxy.py <upstream-port> <failure-rate> <seed> [<kinds>]
Forwards every request to 127.0.0.1:<upstream-port> (Host header and body unchanged) and
relays the answer, except that a share <failure-rate> of the requests fail, chosen at random
(repeatably for one seed) among: 500, 503, 429 (Retry-After: 0) answered by the proxy itself,
the connection dropped before any answer, and the upstream's answer cut off after half of
its body. <kinds> (comma-separated, default all but stall): 500,503,429,drop,cut,stall (half
of the body, then nothing more for a minute),stall-large (the same for bodies over 1 MiB only:
metadata passes, tensor data stalls),delay (forwarded 50 ms late),lose-complete (the
first multipart completion, POST ...?uploadId=, is forwarded and its answer never sent: the
connection closes; every other request passes),fail-later-completes (the first multipart
completion passes, every later one is answered 500 by the proxy; every other request passes). Whenever more
requests are in flight at once than ever before, prints "max-in-flight <n>" to stderr. Prints "LISTENING <port>".
"""
import http.client
import random
import socket
import sys
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = int(sys.argv[1])
RATE = float(sys.argv[2])
RNG = random.Random(int(sys.argv[3]))
RNG_LOCK = threading.Lock()
KINDS = sys.argv[4].split(",") if len(sys.argv) > 4 else ["500", "503", "429", "drop", "cut", "cut"]
IN_FLIGHT = [0, 0]  # now, most ever
LOST = [False]  # lose-complete: the completion's answer was already lost once
COMPLETES = [0]  # fail-later-completes: multipart completions seen
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def choose():
    with RNG_LOCK:
        if RNG.random() >= RATE:
            return "ok"
        return RNG.choice(KINDS)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def error_answer(self, status, code):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                "<Message>injected by the flaky proxy</Message></Error>" % code).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        with RNG_LOCK:
            IN_FLIGHT[0] += 1
            if IN_FLIGHT[0] > IN_FLIGHT[1]:
                IN_FLIGHT[1] = IN_FLIGHT[0]
                print("max-in-flight %d" % IN_FLIGHT[1], file=sys.stderr, flush=True)
        try:
            self.handle_one()
        finally:
            with RNG_LOCK:
                IN_FLIGHT[0] -= 1

    def handle_one(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fate = choose()
        if os.environ.get("CKB_PROXY_TRACE"):
            print("%s %s -> %s" % (self.command, self.path, fate), file=sys.stderr, flush=True)
        if fate == "500":
            return self.error_answer(500, "InternalError")
        if fate == "503":
            return self.error_answer(503, "SlowDown")
        if fate == "429":
            return self.error_answer(429, "TooManyRequests")
        if fate == "lose-complete":
            with RNG_LOCK:
                lose = self.command == "POST" and "uploadId=" in self.path and not LOST[0]
                LOST[0] = LOST[0] or lose
            fate = "lose" if lose else "ok"
        if fate == "fail-later-completes":
            with RNG_LOCK:
                completion = self.command == "POST" and "uploadId=" in self.path
                COMPLETES[0] += 1 if completion else 0
                later = completion and COMPLETES[0] > 1
            if later:
                return self.error_answer(500, "InternalError")
            fate = "ok"
        if fate == "delay":
            time.sleep(0.05)
        if fate == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                     headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if fate == "lose":  # the upstream did the work; its answer never arrives
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fate == "stall-large":
            fate = "stall" if len(data) > (1 << 20) else "ok"
        if fate == "stall" and len(data) >= 2:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(60)
            self.close_connection = True
            return
        if fate == "cut" and len(data) >= 2:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print("LISTENING %d" % server.server_address[1], flush=True)
server.serve_forever()
