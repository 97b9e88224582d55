"""The message preparation's fast paths give aiosmtplib's bytes exactly (line endings,
dot-stuffing), on every small mix of CR, LF, dots and text."""

from __future__ import annotations

import itertools

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from smtp_guard.client._transaction import _dot_stuffed, _normalised

PIECES = [b"\r", b"\n", b"\r\n", b".", b"a", b"\n."]


def test_same_bytes_as_aiosmtplib() -> None:
    for size in range(6):
        for parts in itertools.product(PIECES, repeat=size):
            raw = b"".join(parts)
            normalised = normalize_message_line_endings(raw)
            assert _normalised(raw) == normalised, raw
            assert _dot_stuffed(normalised) == PERIOD_REGEX.sub(b"..", normalised), raw


def test_common_message_is_passed_through() -> None:
    raw = b"Subject: x\r\n\r\nbody. a.b\r\n"
    assert _normalised(raw) is raw
    assert _dot_stuffed(raw) is raw
    assert _normalised(b"no ending") == b"no ending\r\n"
    assert _dot_stuffed(b".x\r\n") == b"..x\r\n"
