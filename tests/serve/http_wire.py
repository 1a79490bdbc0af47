"""Reading HTTP/1.1 responses off a raw socket, for the tests that send requests by hand."""

from __future__ import annotations

import socket


def read_response(sock: socket.socket, buffered: bytearray | None = None) -> bytes:
    """One whole response (head and ``Content-Length`` body) as it was sent; bytes of the next
    one (pipelining) are kept in ``buffered``."""
    data = buffered if buffered is not None else bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, bytes(data)
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    length = int(parse_head(head)[1]["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, rest
        rest += chunk
    data[:] = rest[length:]
    return head + b"\r\n\r\n" + rest[:length]


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one response from ``read_response``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    return status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    return int(lines[0].split()[1]), headers
