"""Type stub for the compiled scan (src/ringback/_fastsip.c)."""

def scan_invite(
    data: bytes,
    src_host: str,
    src_port: int,
    reliable: bool,
    max_message_size: int,
    max_header_count: int,
    max_line_length: int,
    names: dict[bytes, str | None],
    /,
) -> tuple[bytes, bytes, bytes, tuple[str, ...], tuple[str, int], bytes, bytes] | bytes | None: ...
def ack_key(data: bytes, /) -> tuple[str, str, str] | None: ...
def derived_tag(key: bytes, call_id: bytes, from_tag: bytes, /) -> bytes: ...
