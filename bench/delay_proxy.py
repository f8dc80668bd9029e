#!/usr/bin/env python3
"""A TCP proxy adding a fixed one-way delay in each direction, for bench/promote-vs-skopeo.sh.

    delay_proxy.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT --one-way-ms 15
                   [--trace FILE] [--window-kib 8192]

Emulates a registry far away (here a 30 ms round trip) without netem. Each chunk read from
one side at time t is written to the other at t + one-way delay, in order, while reading goes
on: latency without a throughput ceiling beyond WINDOW bytes in flight per direction and
connection (a TCP window: past it the sending side is paused, so throughput per connection
is at most WINDOW / delay). Opening a connection costs one round trip, as a TCP handshake
does: the upstream connection opens after one delay (the SYN's way) and the client's first
bytes leave no earlier than two delays after it connected (when its SYN-ACK would have come
back), arriving one delay later. A half-close (FIN) is carried after the delay like data;
a reset (or a failed upstream connection) aborts the other side after the delay.

--trace FILE writes one JSON line per request turn (client bytes following server bytes, or
the first on a connection: an HTTP/1.1 request with its body), when the turn ends:
    {"conn": N, "accepted": T, "start": T, "answered": T|null, "end": T|null,
     "line": "GET /v2/... HTTP/1.1", "sent": BYTES, "received": BYTES}
with T in seconds of the system-wide monotonic clock (comparable between proxies): accepted
when the client connected, start when its first byte of the turn was read, answered/end when
the first/last byte of the answer was written back to it. bench/critical_path.py reads these.

Prints "delay_proxy: ready LISTEN -> TARGET" on stderr once listening, nothing else unless
something fails; SIGTERM or SIGINT stop it (pending trace lines are written). Python 3
standard library only (asyncio).
"""

import argparse
import asyncio
import collections
import json
import signal
import sys

METHODS = (b"GET ", b"HEAD ", b"PUT ", b"POST ", b"PATCH ", b"DELETE ", b"OPTIONS ")
EOF = object()  # a half-close to carry
RESET = object()  # an abort to carry


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class Direction:
    """One direction of a connection: chunks waiting for their time, then written in order."""

    def __init__(self, conn, name):
        self.conn = conn
        self.name = name
        self.queue = collections.deque()  # (deadline, chunk | EOF | RESET)
        self.queued_bytes = 0
        self.source = None  # transport read from
        self.sink = None  # transport written to (None until connected)
        self.timer = None
        self.sink_paused = False
        self.source_paused = False
        self.ended = False  # EOF or RESET queued: the source has nothing more
        self.done = False  # EOF or RESET delivered

    def push(self, deadline, item):
        if self.queue and deadline < self.queue[-1][0]:
            deadline = self.queue[-1][0]  # order before punctuality
        self.queue.append((deadline, item))
        if isinstance(item, bytes):
            self.queued_bytes += len(item)
        else:
            self.ended = True
        self.schedule()
        self.throttle()

    def schedule(self):
        if self.timer is not None or not self.queue or self.sink is None or self.sink_paused:
            return
        self.timer = self.conn.loop.call_at(self.queue[0][0], self.flush)

    def flush(self):
        self.timer = None
        now = self.conn.loop.time()
        while self.queue and self.queue[0][0] <= now and not self.sink_paused:
            _, item = self.queue.popleft()
            if item is EOF:
                self.done = True
                if not self.sink.is_closing():
                    try:
                        if self.sink.can_write_eof():
                            self.sink.write_eof()
                    except OSError:
                        self.sink.abort()
                self.conn.maybe_close()
                return
            if item is RESET:
                self.done = True
                self.conn.abort()
                return
            self.queued_bytes -= len(item)
            if not self.sink.is_closing():
                self.sink.write(item)
            if self.name == "down":
                self.conn.answered(len(item), now)
        self.schedule()
        self.throttle()

    def throttle(self):
        """Pauses reading the source while the window is full or the sink is slow."""
        if self.source is None or self.source.is_closing():
            return
        full = self.queued_bytes >= self.conn.proxy.window or self.sink_paused
        if full and not self.source_paused:
            self.source.pause_reading()
            self.source_paused = True
        elif not full and self.source_paused:
            self.source.resume_reading()
            self.source_paused = False

    def sink_pause(self, paused):
        self.sink_paused = paused
        if paused and self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.schedule()
        self.throttle()

    def cancel(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()


class Connection:
    """A client connection and its upstream one."""

    def __init__(self, proxy, number, client):
        self.proxy = proxy
        self.loop = proxy.loop
        self.delay = proxy.delay
        self.number = number
        self.client = client
        self.upstream = None
        self.accepted = self.loop.time()  # time.monotonic(), system-wide
        self.closed = False
        self.turn = None
        self.up = Direction(self, "up")  # client -> target
        self.down = Direction(self, "down")  # target -> client
        self.up.source = client
        self.down.sink = client
        # The SYN reaches the target after one delay.
        self.loop.call_at(self.accepted + self.delay, self.connect_upstream)

    def up_deadline(self):
        """When bytes the client sends now reach the target: they leave no earlier than the
        handshake's round trip after connecting."""
        return max(self.loop.time(), self.accepted + 2 * self.delay) + self.delay

    def down_deadline(self):
        return self.loop.time() + self.delay

    # --- trace ---
    def client_bytes(self, data):
        turn = self.turn
        if turn is None or turn["answered"] is not None:
            self.end_turn()
            line = b"(not HTTP)"
            if data.startswith(METHODS):
                line = data.split(b"\r\n", 1)[0][:300]
            self.turn = turn = {
                "conn": self.number,
                "accepted": self.accepted,
                "start": self.loop.time(),
                "answered": None,
                "end": None,
                "line": line.decode("latin-1"),
                "sent": 0,
                "received": 0,
            }
        turn["sent"] += len(data)

    def answered(self, size, now):
        turn = self.turn
        if turn is None:
            return
        if turn["answered"] is None:
            turn["answered"] = now
        turn["end"] = now
        turn["received"] += size

    def end_turn(self):
        if self.turn is not None:
            self.proxy.trace(self.turn)
            self.turn = None

    # --- lifecycle ---
    def connect_upstream(self):
        if self.closed:
            return
        task = self.loop.create_task(self._connect())
        self.proxy.tasks.add(task)
        task.add_done_callback(self.proxy.tasks.discard)

    async def _connect(self):
        host, port = self.proxy.target
        try:
            await self.loop.create_connection(lambda: Upstream(self), host, port)
        except OSError as error:
            if self.proxy.verbose:
                print(f"delay_proxy: connecting to {host}:{port}: {error}", file=sys.stderr)
            # The refusal comes back after one delay.
            self.down.push(self.down_deadline(), RESET)

    def upstream_made(self, transport):
        if self.closed:
            transport.abort()
            return
        self.upstream = transport
        self.up.sink = transport
        self.down.source = transport
        self.up.schedule()
        self.down.throttle()

    def maybe_close(self):
        if self.up.done and self.down.done:
            self.finish(abort=False)

    def abort(self):
        self.finish(abort=True)

    def finish(self, abort):
        if self.closed:
            return
        self.closed = True
        self.up.cancel()
        self.down.cancel()
        for transport in (self.client, self.upstream):
            if transport is not None and not transport.is_closing():
                if abort:
                    transport.abort()
                else:
                    transport.close()
        self.end_turn()
        self.proxy.connections.discard(self)

    def lost(self, direction, deadline, exc):
        """The transport `direction` reads from is gone: carry a reset, or a half-close when it
        went cleanly and none was carried yet."""
        if self.closed:
            return
        if exc is not None:
            direction.push(deadline, RESET)
        elif not direction.ended:
            direction.push(deadline, EOF)


class Client(asyncio.Protocol):
    """The side facing the proxy's client."""

    def __init__(self, proxy):
        self.proxy = proxy
        self.conn = None

    def connection_made(self, transport):
        self.proxy.accepted += 1
        self.conn = Connection(self.proxy, self.proxy.accepted, transport)
        self.proxy.connections.add(self.conn)

    def data_received(self, data):
        if self.proxy.trace_file is not None:
            self.conn.client_bytes(data)
        self.conn.up.push(self.conn.up_deadline(), data)

    def eof_received(self):
        self.conn.up.push(self.conn.up_deadline(), EOF)
        return True  # keep the other direction open

    def connection_lost(self, exc):
        self.conn.lost(self.conn.up, self.conn.up_deadline(), exc)

    def pause_writing(self):
        self.conn.down.sink_pause(True)

    def resume_writing(self):
        self.conn.down.sink_pause(False)


class Upstream(asyncio.Protocol):
    """The side facing the target."""

    def __init__(self, conn):
        self.conn = conn

    def connection_made(self, transport):
        self.conn.upstream_made(transport)

    def data_received(self, data):
        self.conn.down.push(self.conn.down_deadline(), data)

    def eof_received(self):
        self.conn.down.push(self.conn.down_deadline(), EOF)
        return True

    def connection_lost(self, exc):
        self.conn.lost(self.conn.down, self.conn.down_deadline(), exc)

    def pause_writing(self):
        self.conn.up.sink_pause(True)

    def resume_writing(self):
        self.conn.up.sink_pause(False)


class Proxy:
    def __init__(self, loop, args):
        self.loop = loop
        self.target = args.target
        self.delay = args.one_way_ms / 1000.0
        self.window = args.window_kib * 1024
        self.verbose = args.verbose
        self.connections = set()
        self.tasks = set()
        self.accepted = 0
        self.trace_file = open(args.trace, "a", encoding="utf-8") if args.trace else None

    def trace(self, turn):
        if self.trace_file is not None:
            self.trace_file.write(json.dumps(turn, separators=(",", ":")) + "\n")
            self.trace_file.flush()

    def shutdown(self):
        for conn in list(self.connections):
            conn.abort()
        if self.trace_file is not None:
            self.trace_file.close()
            self.trace_file = None


async def serve(args):
    loop = asyncio.get_running_loop()
    proxy = Proxy(loop, args)
    host, port = args.listen
    server = await loop.create_server(lambda: Client(proxy), host, port, reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(
        f"delay_proxy: ready {host}:{port} -> {args.target[0]}:{args.target[1]}"
        f" (+{args.one_way_ms:g} ms each way)",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop
    finally:
        server.close()
        proxy.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", type=host_port, required=True, help="HOST:PORT to listen on")
    ap.add_argument("--target", type=host_port, required=True, help="HOST:PORT to forward to")
    ap.add_argument("--one-way-ms", type=float, required=True, help="delay each way, ms")
    ap.add_argument("--trace", help="append one JSON line per request turn to this file")
    ap.add_argument(
        "--window-kib",
        type=int,
        default=8192,
        help="bytes in flight per direction and connection before reading pauses (KiB)",
    )
    ap.add_argument("--verbose", action="store_true", help="report upstream connect failures")
    args = ap.parse_args()
    if args.one_way_ms < 0 or args.window_kib < 1:
        ap.error("--one-way-ms must be >= 0 and --window-kib >= 1")
    asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
