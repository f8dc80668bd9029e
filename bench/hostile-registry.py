#!/usr/bin/env python3
"""A hostile registry on loopback for bench/hostile-registry.sh.

    hostile-registry.py PORT MODE

MODE `huge`: every manifest GET answers 200 MB (announced by Content-Length, streamed);
HEADs answer 404 (nothing promoted yet). MODE `hang`: every request is accepted and never
answered. MODE `trickle`: every GET answer is one byte a second, unannounced, forever.
"""

import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler

HUGE = 200 * 1024 * 1024
CHUNK = b"x" * (1 << 16)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "huge"

    def log_message(self, *args):
        pass

    def do_HEAD(self):
        if self.mode == "hang":
            time.sleep(3600)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        if self.mode == "hang":
            time.sleep(3600)
            return
        if self.mode == "trickle":
            # No Content-Length: the body ends with the connection, so only the request's
            # deadline can end it.
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Connection", "close")
            self.end_headers()
            while True:
                self.wfile.write(b"{")
                self.wfile.flush()
                time.sleep(1)
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(HUGE))
        self.end_headers()
        sent = 0
        try:
            while sent < HUGE:
                self.wfile.write(CHUNK)
                sent += len(CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    Handler.mode = mode
    with Server(("127.0.0.1", port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
