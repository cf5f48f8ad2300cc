"""SO_REUSEPORT UDP sockets for several workers, spread by Request-URI instead of by peer.

The kernel's default for a reuseport group hashes the 4-tuple, so every datagram from
one switch socket lands on one worker. Here a classic BPF program attached to the group
(``SO_ATTACH_REUSEPORT_CBPF``, Linux ≥ 4.5) picks the worker from a hash of the first
:data:`URI_BYTES` bytes of the Request-URI instead. Every request of one transaction
carries the same Request-URI — the INVITE, its retransmissions, the ACK of a non-2xx
response and the CANCEL (RFC 3261 §9.1, §17.1.1.3) — so they all reach the worker that
holds the transaction, while calls to different numbers spread over the workers. A
datagram the program cannot read (no space among the first bytes) falls back to the
kernel's own hash; one shorter than the bytes read goes to the first socket.

In-dialog requests (PRACK, BYE) are addressed to our Contact: each worker puts a Contact
with its own port in the responses that open dialogs (see ``server.py``), so those go
straight to the worker too.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51
URI_BYTES = 40
_METHOD_SPACES = range(3, 10)  # "ACK " .. "SUBSCRIBE ": the Request-URI starts after it

# classic BPF opcodes (linux/filter.h)
_LDB_ABS = 0x30  # A = packet[k]
_LDX_IMM = 0x01  # X = k
_JEQ_K = 0x15  # if A == k: jt else jf
_JA = 0x05  # pc += k
_ADD_X = 0x0C  # A += X
_MUL_K = 0x24  # A *= k
_MOD_K = 0x94  # A %= k
_TAX = 0x07  # X = A
_TXA = 0x87  # A = X
_RET_A = 0x16
_RET_K = 0x06
_FALLBACK = 0xFFFFFFFF  # an index past the group: the kernel's 4-tuple hash decides


def uri_hash_program(workers: int) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions: index = hash(Request-URI) % workers."""
    if not 1 <= workers <= 1024:
        raise ValueError("workers must be 1..1024")
    starts = list(_METHOD_SPACES)
    checks = 2 * len(starts)
    program: list[tuple[int, int, int, int]] = []
    for i, space_at in enumerate(starts):
        # jt lands on trampoline i: past the remaining checks and the fallback return
        to_trampoline = (checks - 2 * i - 2) + 1 + i
        program += [(_LDB_ABS, 0, 0, space_at), (_JEQ_K, to_trampoline, 0, 0x20)]
    program.append((_RET_K, 0, 0, _FALLBACK))
    block_len = 1 + 5 * URI_BYTES + 3
    trampolines_end = len(program) + len(starts)
    for i in range(len(starts)):
        here = len(program) + 1
        program.append((_JA, 0, 0, trampolines_end + i * block_len - here))
    for space_at in starts:
        base = space_at + 1
        program.append((_LDX_IMM, 0, 0, 0))
        for j in range(URI_BYTES):
            to_done = 5 * (URI_BYTES - j - 1) + 3  # past this byte's ops and the rest
            program += [
                (_LDB_ABS, 0, 0, base + j),
                (_JEQ_K, to_done, 0, 0x20),
                (_ADD_X, 0, 0, 0),
                (_MUL_K, 0, 0, 31),
                (_TAX, 0, 0, 0),
            ]
        program += [(_TXA, 0, 0, 0), (_MOD_K, 0, 0, workers), (_RET_A, 0, 0, 0)]
    return program


def attach_uri_hash(sock: socket.socket, workers: int) -> None:
    """Attach :func:`uri_hash_program` to ``sock``'s reuseport group (any member will do;
    attaching again replaces it)."""
    program = uri_hash_program(workers)
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def reuseport_udp_socket(host: str, port: int) -> socket.socket:
    """A UDP socket bound with SO_REUSEPORT (set before bind, as the group needs)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
