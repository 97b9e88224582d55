r"""The fault model of :class:`~smtp_guard.testing.FaultServer` and its one-line text form.

A fault says *where* in the SMTP dialogue the server misbehaves, *for whom*, *how*, and
*how often*. The same fault can be written in Python or as one line of text (for
``smtp-guard serve --fault`` and ``@pytest.mark.smtp_faults``)::

    Fault.reply_with("rcpt", "451 4.7.1 Greylisted", pattern="*@greylist.test", times=2)
    "rcpt:*@greylist.test=451 4.7.1 Greylisted x2"

Text form
---------
One fault or one server setting per string::

    PHASE[:PATTERN]=ACTION [MODIFIER ...]
    SETTING=VALUE [REPLY]

``PHASE`` is where the fault fires (case-insensitive):

    connect (or greeting)  instead of the 220 greeting
    ehlo (or helo)         the reply to EHLO / HELO
    starttls, auth         the reply to STARTTLS / AUTH
    mail                   the reply to MAIL FROM     (PATTERN matches the sender)
    rcpt                   the reply to RCPT TO       (PATTERN matches the recipient)
    data                   the reply to DATA, instead of 354 (PATTERN: any recipient)
    message (or dot)       the reply after the final "." (PATTERN: any recipient)
    quit                   the reply to QUIT

``PATTERN`` is a shell-style glob (``*``, ``?``, ``[abc]``), matched case-insensitively
against the whole address: ``*@example.test``, ``bob@*``, ``*``.

``ACTION`` is one of:

    550 5.1.1 No such user   a reply: three digits, then the text; ``\n`` in the text starts
                             another line of a multi-line reply (the code is repeated);
                             ``\\`` is one backslash.
                             A 421 reply also closes the connection, as RFC 5321 says.
                             A 2xx at mail/rcpt still accepts the sender/recipient, a 3xx at
                             data still starts the data, a 2xx after the dot still keeps the
                             message (custom success texts); elsewhere a reply only replaces
                             the normal one.
    drop                     close the connection without replying
    store-drop               (message only) keep the message, then close before replying:
                             the client cannot know that it was delivered
    delay=2s                 wait, then answer normally
    greylist=300s            (rcpt only) defer the first attempt of each (client IP, sender,
                             recipient) with 451 4.7.1 until 300 s have passed, like postgrey
    raw=BYTES                write exactly these bytes as the reply (``\r``, ``\n``, ``\xff``
                             escapes; no CRLF is added)
    garbage                  a line that is not an SMTP reply at all
    no-crlf                  ``250 OK`` with no line ending (the client waits for the rest)
    non-utf8                 a 550 reply whose text is not valid UTF-8
    long=N                   a 550 reply line of N characters (beyond any line limit)

``MODIFIER`` (after the action, separated by spaces):

    xN          only the first N times the fault matches (over the server's life), then normal
    p=0.3       only with this probability, drawn from a seeded RNG (reproducible)
    seed=7      this fault's own RNG seed (default: derived from the server's seed)
    delay=0.5s  wait this long before acting
    close       close the connection after the reply

A reply whose text really ends with a word that looks like a modifier goes in double quotes:
``mail="550 5.7.1 Refused x2"``.

``SETTING`` configures the server instead of one phase (``auth`` and ``starttls`` are both:
``auth=535 5.7.8 Nope`` is a fault of the AUTH phase, ``auth=alice:pw`` a setting):

    size=10M                 advertise SIZE 10485760 (K, M, G are powers of 1024) and refuse
                             larger messages with 552 5.3.4
    maxrcpt=50               452 4.5.3 for the 51st and later RCPT in one transaction
    maxconn=2                a third connection open at once is greeted with 421 4.7.0 and
                             closed (``maxconn=2 554 5.7.1 Go away`` answers that instead)
    ratelimit=10/60s         450 4.2.1 at MAIL once 10 messages arrived in the last 60 s
                             (``ratelimit=10/60s 421 4.7.0 Slow down`` replies that instead;
                             421 also closes the connection)
    greylist=300s            greylist every recipient (same as ``rcpt:*=greylist=300s``)
    auth=USER:PASSWORD       valid credentials (repeat for more users); offers AUTH PLAIN and
                             LOGIN, refuses others with 535 5.7.8 and mail without login with
                             530 5.7.0
    auth-tls=required        offer AUTH only on an encrypted connection (default: optional)
    xoauth2=on|off           also offer AUTH XOAUTH2, where each user's password is the bearer
                             token it accepts; a wrong one gets the error challenge (334 and
                             base64 JSON), then 535 5.7.8; default off
    starttls=on|off|required offer STARTTLS with a certificate made at start (``required``:
                             530 for mail before STARTTLS); default off
    tls=implicit             TLS from the first byte (port-465 style)
    pipelining=on|off        advertise PIPELINING (default on)
    seed=42                  seed of the server's RNG (default 0)

Each setting is also a :class:`~smtp_guard.testing.FaultServer` keyword (``size_limit``,
``max_recipients``, ``max_connections``, ``rate_limit=RateLimit(10, 60)``, ``greylist``,
``credentials={...}``, ``auth_requires_tls``, ``xoauth2``, ``starttls``, ``implicit_tls``,
``pipelining``, ``seed``).

``DURATION`` is a number with ``ms``, ``s``, ``m`` or ``h`` (a bare number is seconds).

Examples::

    connect=421 4.3.2 Service shutting down for maintenance
    ehlo=554 5.7.1 Access denied x1
    mail=451 4.3.0 Temporary local problem p=0.5 seed=3
    rcpt:*@unknown.test=550 5.1.1 <{rcpt}> No such user here
    rcpt:full@*=552 5.2.2 Mailbox full
    message=store-drop x1
    message=drop
    data=delay=0.2s
    ratelimit=3/60s
    auth=alice:s3cret

In reply texts, ``{rcpt}`` and ``{sender}`` are replaced with the address concerned (at
``data`` and ``message``: every accepted recipient, comma-separated). In a ``ratelimit``
reply, ``{retry}`` is the number of seconds until the window lets a message in again
(``{retry} seconds`` reads ``1 second`` when it is one), as in the default
``450 4.2.1 Too many messages, slow down; try again in {retry} seconds``.
A description the parser cannot read raises :class:`FaultSpecError` (a ``ValueError``)
that names the bad part.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from smtp_guard._enums import Phase
from smtp_guard.errors import InvalidInput

__all__ = [
    "Fault",
    "FaultSpecError",
    "RateLimit",
    "Settings",
    "format_duration",
    "parse_duration",
    "parse_fault",
    "parse_faults",
    "parse_size",
]

Action = Literal[
    "reply", "drop", "store-drop", "delay", "greylist", "raw", "garbage", "no-crlf",
    "non-utf8", "long",
]  # fmt: skip
ACTIONS: tuple[str, ...] = (
    "reply",
    "drop",
    "store-drop",
    "delay",
    "greylist",
    "raw",
    "garbage",
    "no-crlf",
    "non-utf8",
    "long",
)

_PHASE_ALIASES: dict[str, Phase] = {
    "greeting": Phase.CONNECT,
    "helo": Phase.EHLO,
    "dot": Phase.MESSAGE,
    **{p.value: p for p in Phase},
}
#: Phases where a PATTERN means something (what it is matched against).
_PATTERN_PHASES = frozenset({Phase.MAIL, Phase.RCPT, Phase.DATA, Phase.MESSAGE})

SETTINGS: tuple[str, ...] = (
    "size",
    "maxrcpt",
    "maxconn",
    "ratelimit",
    "greylist",
    "auth",
    "auth-tls",
    "xoauth2",
    "starttls",
    "tls",
    "pipelining",
    "seed",
)


class FaultSpecError(InvalidInput):
    """A fault description could not be read. ``part`` is the piece that was wrong.

    Also a :class:`ValueError`. The message never repeats a password.
    """

    default_hint = "Fix the part of the fault description or server setting named in the message."

    def __init__(self, message: str, /, *, spec: str = "", part: str = "") -> None:
        super().__init__(message)
        self.spec = spec
        self.part = part


# --------------------------------------------------------------------------- values


_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``"250ms"`` -> 0.25, ``"2s"`` / ``"2"`` -> 2.0, ``"1.5m"`` -> 90.0, ``"1h"`` -> 3600.0."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration (write e.g. 250ms, 2s, 1.5m, 1h)")
    return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]


def format_duration(seconds: float) -> str:
    """The shortest text :func:`parse_duration` reads back as ``seconds``."""
    for unit, factor in (("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        value = seconds / factor
        if value >= 1 and value == int(value):
            return f"{int(value)}{unit}"
    return f"{seconds!r}s"


_SIZE = re.compile(r"(\d+)\s*([kmg]?)b?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"1000"`` -> 1000, ``"512K"`` -> 524288, ``"10M"`` -> 10485760 (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size (write e.g. 1000, 512K, 10M)")
    power = " kmg".index((m.group(2) or " ").lower())
    return int(m.group(1)) * int(1024**power)


def _format_size(size: int) -> str:
    for unit, power in (("G", 3), ("M", 2), ("K", 1)):
        if size and size % 1024**power == 0:
            return f"{size // 1024**power}{unit}"
    return str(size)


def _check_reply(reply: str) -> str:
    """Validate a scripted reply: three digits, then text without control characters."""
    if not re.fullmatch(r"\d{3}(?:[ \n].*)?", reply, re.DOTALL):
        raise ValueError(f"a reply starts with a three-digit code, e.g. '550 5.1.1 No such user'; "
                         f"got {reply[:40]!r}")  # fmt: skip
    if re.search(r"[\x00-\x09\x0b-\x1f\x7f]", reply):
        raise ValueError("a reply text cannot hold control characters (use raw= for those)")
    return reply


def reply_lines(reply: str) -> list[str]:
    """``"550 a\\nb"`` -> ``["550-a", "550 b"]``: the wire lines of a scripted reply."""
    code, _, text = reply.partition(" ")
    if "\n" in code:
        code, _, text = reply.partition("\n")
    lines = text.split("\n")
    return [f"{code}{' ' if i == len(lines) - 1 else '-'}{line}" for i, line in enumerate(lines)]


def _phase(value: Phase | str) -> Phase:
    phase = Phase.coerce(value)
    if phase is None:  # pragma: no cover - coerce only returns None for None
        raise ValueError("a fault needs a phase")
    return phase


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour. Build with the class methods or :func:`parse_fault`."""

    phase: Phase
    action: Action
    #: The reply for ``action="reply"`` (``"550 5.1.1 text"``; ``\n`` separates lines).
    reply: str | None = None
    #: The exact bytes for ``action="raw"``.
    raw: bytes | None = None
    #: Glob matched against the address (see the module docstring); None matches all.
    pattern: str | None = None
    #: Only the first ``times`` matches, then normal behaviour. None: always.
    times: int | None = None
    #: Only with this probability (drawn from a seeded RNG). None: always.
    probability: float | None = None
    #: This fault's own RNG seed; None derives it from the server seed and the fault's index.
    seed: int | None = None
    #: Seconds to wait before acting.
    delay: float = 0.0
    #: Greylisting period (``action="greylist"``) or line length (``action="long"``).
    amount: float = 0.0
    #: Close the connection after the reply.
    close: bool = False

    def __post_init__(self) -> None:
        phase = Phase.coerce(self.phase)
        if phase is None:
            raise ValueError("a fault needs a phase")
        object.__setattr__(self, "phase", phase)
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")
        if self.action == "reply":
            if self.reply is None:
                raise ValueError("action 'reply' needs reply='NNN text'")
            tidy = "\n".join(line.rstrip() for line in _check_reply(self.reply).split("\n"))
            object.__setattr__(self, "reply", tidy)
        if self.action == "raw" and self.raw is None:
            raise ValueError("action 'raw' needs raw=b'...'")
        if self.pattern is not None and phase not in _PATTERN_PHASES:
            raise ValueError(
                f"a pattern only makes sense for mail, rcpt, data or message, not {phase.value}"
            )
        if self.action == "store-drop" and phase is not Phase.MESSAGE:
            raise ValueError("store-drop only makes sense after the final dot (phase message)")
        if self.action == "greylist" and phase is not Phase.RCPT:
            raise ValueError("greylist only makes sense at rcpt")
        if self.times is not None and self.times < 1:
            raise ValueError(f"x{self.times}: the count must be at least 1")
        if self.probability is not None and not 0.0 < self.probability <= 1.0:
            raise ValueError(f"p={self.probability}: a probability is above 0 and at most 1")
        if self.delay < 0 or self.amount < 0:
            raise ValueError("delays and durations cannot be negative")

    # -- constructors -------------------------------------------------------------------
    # Each takes the modifiers as keywords: pattern=, times=, probability=, seed=, delay=,
    # close= (see the fields above).

    @classmethod
    def reply_with(
        cls, phase: Phase | str, reply: str, *, pattern: str | None = None,
        times: int | None = None, probability: float | None = None, seed: int | None = None,
        delay: float = 0.0, close: bool = False,
    ) -> Fault:  # fmt: skip
        """Answer ``reply`` (e.g. ``"550 5.1.1 No such user"``) instead of the normal reply."""
        return cls(_phase(phase), "reply", reply=reply, pattern=pattern, times=times,
                   probability=probability, seed=seed, delay=delay, close=close)  # fmt: skip

    @classmethod
    def drop(
        cls, phase: Phase | str, *, pattern: str | None = None, times: int | None = None,
        probability: float | None = None, seed: int | None = None, delay: float = 0.0,
    ) -> Fault:  # fmt: skip
        """Close the connection instead of replying."""
        return cls(_phase(phase), "drop", pattern=pattern, times=times,
                   probability=probability, seed=seed, delay=delay)  # fmt: skip

    @classmethod
    def store_drop(
        cls, *, times: int | None = None, probability: float | None = None,
        seed: int | None = None, delay: float = 0.0,
    ) -> Fault:  # fmt: skip
        """Keep the message, then close the connection before the reply to the final dot."""
        return cls(Phase.MESSAGE, "store-drop", times=times, probability=probability,
                   seed=seed, delay=delay)  # fmt: skip

    @classmethod
    def delayed(
        cls, phase: Phase | str, seconds: float, *, pattern: str | None = None,
        times: int | None = None, probability: float | None = None, seed: int | None = None,
    ) -> Fault:  # fmt: skip
        """Wait ``seconds``, then answer normally."""
        return cls(_phase(phase), "delay", delay=seconds, pattern=pattern, times=times,
                   probability=probability, seed=seed)  # fmt: skip

    @classmethod
    def greylist(
        cls, seconds: float, *, pattern: str | None = None, times: int | None = None,
        probability: float | None = None, seed: int | None = None,
    ) -> Fault:  # fmt: skip
        """Defer each new (client, sender, recipient) triplet at RCPT for ``seconds``."""
        return cls(Phase.RCPT, "greylist", amount=seconds, pattern=pattern, times=times,
                   probability=probability, seed=seed)  # fmt: skip

    @classmethod
    def raw_reply(
        cls, phase: Phase | str, data: bytes, *, pattern: str | None = None,
        times: int | None = None, probability: float | None = None, seed: int | None = None,
        delay: float = 0.0, close: bool = False,
    ) -> Fault:  # fmt: skip
        """Write exactly ``data`` instead of the reply (no CRLF added)."""
        return cls(_phase(phase), "raw", raw=data, pattern=pattern, times=times,
                   probability=probability, seed=seed, delay=delay, close=close)  # fmt: skip

    # -- behaviour ----------------------------------------------------------------------

    def matches(self, addresses: Iterable[str]) -> bool:
        """Whether the pattern matches one of ``addresses`` (always, without a pattern)."""
        if self.pattern is None:
            return True
        pattern = self.pattern.lower()
        return any(fnmatch.fnmatchcase(a.lower(), pattern) for a in addresses)

    def wire_bytes(self, sender: str = "", rcpt: str = "") -> bytes | None:  # noqa: PLR0911 (one return per action reads as a table)
        """The bytes this fault writes as its reply, or None if it writes none."""
        if self.action == "reply" and self.reply is not None:
            text = self.reply.replace("{rcpt}", rcpt).replace("{sender}", sender)
            return "".join(f"{line}\r\n" for line in reply_lines(text)).encode("utf-8")
        if self.action == "raw":
            return self.raw
        if self.action == "garbage":
            return b"Hello? \x00\x01 this is not an SMTP reply at all\r\n"
        if self.action == "no-crlf":
            return b"250 OK"
        if self.action == "non-utf8":
            return b"550 5.1.1 Mailbox \xff\xfe\xc3 unknown\r\n"
        if self.action == "long":
            return b"550 " + b"x" * int(self.amount) + b"\r\n"
        return None

    def __str__(self) -> str:
        """The text form; :func:`parse_fault` reads it back to an equal fault."""
        head = self.phase.value + (f":{self.pattern}" if self.pattern is not None else "")
        if self.action == "reply" and self.reply is not None:
            text = self.reply.replace("\\", "\\\\").replace("\n", "\\n")
            action = f'"{text}"' if _strip_modifiers(text)[1] else text
        elif self.action == "delay":
            action = f"delay={format_duration(self.delay)}"
        elif self.action == "greylist":
            action = f"greylist={format_duration(self.amount)}"
        elif self.action == "raw" and self.raw is not None:
            action = "raw=" + repr(self.raw)[2:-1].replace('"', '\\"')
        elif self.action == "long":
            action = f"long={int(self.amount)}"
        else:
            action = self.action
        mods = []
        if self.times is not None:
            mods.append(f"x{self.times}")
        if self.probability is not None:
            mods.append(f"p={self.probability!r}")
        if self.seed is not None:
            mods.append(f"seed={self.seed}")
        if self.delay and self.action != "delay":
            mods.append(f"delay={format_duration(self.delay)}")
        if self.close:
            mods.append("close")
        return " ".join([f"{head}={action}", *mods])


@dataclass(frozen=True)
class RateLimit:
    """At most ``messages`` per ``window`` seconds; then ``reply`` at MAIL."""

    messages: int
    window: float
    reply: str = "450 4.2.1 Too many messages, slow down; try again in {retry} seconds"

    def __post_init__(self) -> None:
        if self.messages < 1 or self.window <= 0:
            raise FaultSpecError(
                f"bad rate limit {self.messages}/{self.window}s: at least 1 message, "
                "in a window longer than 0",
                part="rate_limit",
            )
        try:
            _check_reply(self.reply)
        except ValueError as exc:
            raise FaultSpecError(f"bad rate limit reply: {exc}", part="rate_limit") from None


@dataclass(frozen=True)
class Settings:
    """Server-wide behaviour. Every field also has a text form (see the module docstring)."""

    size_limit: int | None = None
    max_recipients: int | None = None
    max_recipients_reply: str = "452 4.5.3 Too many recipients"
    #: At most this many connections at once; the next is greeted with the reply and closed.
    max_connections: int | None = None
    max_connections_reply: str = "421 4.7.0 Too many concurrent connections, try again later"
    rate_limit: RateLimit | None = None
    greylist: float | None = None
    #: Valid credentials, user -> password. Non-empty: AUTH is offered and required for MAIL.
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    auth_requires_tls: bool = False
    #: Also offer AUTH XOAUTH2; a user's password is then the bearer token it accepts.
    xoauth2: bool = False
    starttls: Literal["off", "on", "required"] = "off"
    implicit_tls: bool = False
    pipelining: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(part: str, why: str) -> FaultSpecError:
            return FaultSpecError(f"bad server setting {part}: {why}", part=part)

        if self.size_limit is not None and self.size_limit < 1:
            raise bad("size_limit", "must be at least 1 byte")
        if self.max_recipients is not None and self.max_recipients < 1:
            raise bad("max_recipients", "must be at least 1")
        if self.max_connections is not None and self.max_connections < 1:
            raise bad("max_connections", "must be at least 1")
        if self.greylist is not None and self.greylist < 0:
            raise bad("greylist", "the period cannot be negative")
        if self.starttls not in ("off", "on", "required"):
            raise bad("starttls", f"{self.starttls!r} is not one of 'off', 'on', 'required'")
        for name in ("max_recipients_reply", "max_connections_reply"):
            try:
                _check_reply(getattr(self, name))
            except ValueError as exc:
                raise bad(name, str(exc)) from None
        for user, password in self.credentials.items():
            if not isinstance(user, str) or not isinstance(password, str) or not user:
                raise bad("credentials", "give a mapping of non-empty user names to passwords")

    def describe(self) -> list[str]:
        """The settings that differ from the defaults, in the text form (passwords hidden)."""
        lines = []
        if self.size_limit is not None:
            lines.append(f"size={_format_size(self.size_limit)}")
        if self.max_recipients is not None:
            default = Settings.max_recipients_reply
            extra = "" if self.max_recipients_reply == default else f" {self.max_recipients_reply}"
            lines.append(f"maxrcpt={self.max_recipients}{extra}")
        if self.max_connections is not None:
            default = Settings.max_connections_reply
            reply = self.max_connections_reply
            lines.append(f"maxconn={self.max_connections}{'' if reply == default else ' ' + reply}")
        if self.rate_limit is not None:
            limit = self.rate_limit
            extra = "" if limit.reply == RateLimit.reply else f" {limit.reply}"
            lines.append(f"ratelimit={limit.messages}/{format_duration(limit.window)}{extra}")
        if self.greylist is not None:
            lines.append(f"greylist={format_duration(self.greylist)}")
        lines += [f"auth={user}:****" for user in self.credentials]
        if self.auth_requires_tls:
            lines.append("auth-tls=required")
        if self.xoauth2:
            lines.append("xoauth2=on")
        if self.starttls != "off":
            lines.append(f"starttls={self.starttls}")
        if self.implicit_tls:
            lines.append("tls=implicit")
        if not self.pipelining:
            lines.append("pipelining=off")
        if self.seed:
            lines.append(f"seed={self.seed}")
        return lines

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the parser

_MODIFIER = re.compile(
    r"x(?P<times>\d+)|p=(?P<p>[^\s]*)|seed=(?P<seed>[^\s]*)|delay=(?P<delay>[^\s]*)|(?P<close>close)",
    re.IGNORECASE,
)


def _strip_modifiers(text: str) -> tuple[str, list[str]]:
    """Split trailing modifier tokens off ``text``: ``("550 nope", ["x2"])``."""
    tokens = text.split(" ")
    mods: list[str] = []
    while len(tokens) > 1 and _MODIFIER.fullmatch(tokens[-1]):
        mods.insert(0, tokens.pop())
    return " ".join(tokens), mods


_ACTION_START = re.compile(
    r'\s*(?:"|\d{3}(?:[\s\\]|$)|(?:drop|store-drop|garbage|no-crlf|non-utf8)(?:\s|$)|'
    r"(?:delay|raw|long|greylist)=)",
    re.IGNORECASE,
)


def _is_action(value: str) -> bool:
    """Whether ``value`` is a fault action (so ``auth=``/``starttls=`` name the phase)."""
    return _ACTION_START.match(value) is not None


def _fail(spec: str, part: str, why: str) -> FaultSpecError:
    spec = _redact(spec)
    shown = f" in {part!r}" if part and part != spec else ""
    return FaultSpecError(f"bad fault {spec!r}{shown}: {why}", spec=spec, part=part)


def _unescape(spec: str, text: str) -> bytes:
    try:
        value = ast.literal_eval('b"' + text.replace('"', '\\"').replace('\\\\"', '\\"') + '"')
    except (SyntaxError, ValueError) as exc:
        raise _fail(spec, text, f"cannot read these bytes ({exc})") from None
    if not isinstance(value, bytes):  # pragma: no cover - a b"..." literal is always bytes
        raise _fail(spec, text, "cannot read these bytes")
    return value


def parse_fault(spec: str) -> Fault | tuple[str, object]:
    """Read one description: a :class:`Fault`, or a ``(setting, value)`` pair for a setting.

    Settings come back as the :class:`Settings` field name and its value, e.g.
    ``("size_limit", 1048576)``; :func:`parse_faults` folds them into a :class:`Settings`.
    """
    text = spec.strip()
    head, eq, rest = text.partition("=")
    if not eq:
        raise _fail(spec, text, "expected PHASE[:PATTERN]=ACTION or SETTING=VALUE (no '=' found)")
    head = head.strip()
    name, colon, pattern = head.partition(":")
    key = name.strip().lower()
    if key in SETTINGS and not colon and not (key in _PHASE_ALIASES and _is_action(rest)):
        return _parse_setting(spec, key, rest.strip())
    phase = _PHASE_ALIASES.get(key)
    if phase is None:
        known = ", ".join([*(p.value for p in Phase), "greeting", "helo", "dot"])
        raise _fail(
            spec,
            name,
            f"unknown phase or setting {name!r}; phases: {known}; settings: {', '.join(SETTINGS)}",
        )
    if colon and not pattern.strip():
        raise _fail(spec, head, "the pattern after ':' is empty (use '*' to match everything)")
    rest = rest.strip()
    if not rest:
        raise _fail(spec, text, "nothing after '=': give a reply such as '550 5.1.1 No such user'"
                                " or an action (drop, store-drop, delay=2s, ...)")  # fmt: skip
    quoted: str | None = None
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end < 0:
            raise _fail(spec, rest, "the quoted reply has no closing '\"'")
        quoted, rest = rest[1:end], rest[end + 1 :]
        if rest and not rest.startswith(" "):
            raise _fail(spec, rest, "expected a space after the quoted reply")
        action_text, mods = "", rest.split()
    else:
        action_text, mods = _strip_modifiers(rest)
    options = _parse_modifiers(spec, mods)
    if pattern.strip():
        options["pattern"] = pattern.strip()
    try:
        return _make_fault(spec, phase, quoted, action_text, options)
    except FaultSpecError:
        raise
    except ValueError as exc:
        raise _fail(spec, rest if quoted is None else quoted, str(exc)) from None


def _build(phase: Phase, action: str, options: dict[str, object], **fields: object) -> Fault:
    return Fault(phase, action, **fields, **options)  # type: ignore[arg-type]


def _unescape_text(text: str) -> str:
    """``\\n`` in a reply's text form is a line break, ``\\\\`` a backslash."""
    return re.sub(r"\\([n\\])", lambda m: "\n" if m.group(1) == "n" else "\\", text)


def _make_fault(  # noqa: PLR0911 (one return per action reads as a table)
    spec: str, phase: Phase, quoted: str | None, action_text: str, options: dict[str, object]
) -> Fault:
    if quoted is not None:
        return _build(phase, "reply", options, reply=_unescape_text(quoted))
    word, _, value = action_text.partition("=")
    word = word.strip().lower()
    if action_text[:3].isdigit():
        return _build(phase, "reply", options, reply=_unescape_text(action_text))
    if word in ("drop", "store-drop", "garbage", "no-crlf", "non-utf8") and not value:
        return _build(phase, word, options)
    if word in ("delay", "greylist"):
        if "delay" in options and word == "delay":
            raise _fail(spec, action_text, "delay given twice")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise _fail(spec, action_text, str(exc)) from None
        if word == "delay":
            return _build(phase, "delay", options, delay=seconds)
        return _build(phase, "greylist", options, amount=seconds)
    if word == "raw" and value:
        return _build(phase, "raw", options, raw=_unescape(spec, action_text[4:]))
    if word == "long" and value:
        if not value.isdigit():
            raise _fail(spec, action_text, "long=N needs a number of characters")
        return _build(phase, "long", options, amount=float(value))
    raise _fail(
        spec,
        action_text,
        "unknown action; expected a reply ('550 5.1.1 No such user'), drop, store-drop, "
        "delay=DURATION, greylist=DURATION, raw=BYTES, garbage, no-crlf, non-utf8 or long=N",
    )


def _parse_modifiers(spec: str, mods: list[str]) -> dict[str, object]:
    options: dict[str, object] = {}
    for token in mods:
        m = _MODIFIER.fullmatch(token)
        if m is None:  # pragma: no cover - _strip_modifiers only passes matching tokens
            raise _fail(spec, token, "unknown modifier")
        key = next(k for k, v in m.groupdict().items() if v is not None)
        name = {"times": "times", "p": "probability", "seed": "seed", "delay": "delay"}.get(
            key, "close"
        )
        if name in options:
            raise _fail(spec, token, f"{name} given twice")
        value = m.group(key)
        try:
            if key == "times":
                options[name] = int(value)
                if int(value) < 1:
                    raise ValueError("xN needs N of at least 1")
            elif key == "p":
                options[name] = float(value)
                if not 0.0 < float(value) <= 1.0:
                    raise ValueError("p= needs a probability above 0 and at most 1")
            elif key == "seed":
                options[name] = int(value)
            elif key == "delay":
                options[name] = parse_duration(value)
            else:
                options[name] = True
        except ValueError as exc:
            why = str(exc) if "needs" in str(exc) or "duration" in str(exc) else "not a number"
            raise _fail(spec, token, why) from None
    return options


def _parse_setting(  # noqa: PLR0911, PLR0912 (one branch per setting reads as a table)
    spec: str, key: str, value: str
) -> tuple[str, object]:
    word, _, reply = value.partition(" ")
    reply = reply.strip()
    if reply and key not in ("maxrcpt", "maxconn", "ratelimit"):
        shown = "(the value)" if key == "auth" else reply
        raise _fail(spec, shown, f"{key}= takes one value and no reply text")
    try:
        if reply:
            _check_reply(reply)
        if key == "size":
            return "size_limit", parse_size(word)
        if key in ("maxrcpt", "maxconn"):
            if not word.isdigit() or int(word) < 1:
                raise ValueError(f"{key}=N needs a whole number of at least 1")
            name = "max_recipients" if key == "maxrcpt" else "max_connections"
            if reply:
                return name, (int(word), reply)
            return name, int(word)
        if key == "ratelimit":
            count, slash, window = word.partition("/")
            if not slash or not count.isdigit() or int(count) < 1:
                raise ValueError("write ratelimit=MESSAGES/DURATION, e.g. ratelimit=10/60s")
            seconds = parse_duration(window)
            if seconds <= 0:
                raise ValueError("the rate-limit window must be longer than 0")
            if reply:
                return "rate_limit", RateLimit(int(count), seconds, reply)
            return "rate_limit", RateLimit(int(count), seconds)
        if key == "greylist":
            return "greylist", parse_duration(word)
        if key == "auth":
            user, colon, password = word.partition(":")
            if not colon or not user or not password:
                # Never echo the value: it holds a password.
                raise _fail(spec, "auth=(hidden)", "write auth=USER:PASSWORD")
            return "credentials", {user: password}
        if key == "seed":
            return "seed", int(word)
        choices = {
            "auth-tls": ("required", "optional"),
            "xoauth2": ("on", "off"),
            "starttls": ("on", "off", "required"),
            "tls": ("implicit", "starttls", "off"),
            "pipelining": ("on", "off"),
        }[key]
        if word.lower() not in choices:
            raise ValueError(f"{key}= takes one of: {', '.join(choices)}")
        word = word.lower()
        if key == "auth-tls":
            return "auth_requires_tls", word == "required"
        if key == "xoauth2":
            return "xoauth2", word == "on"
        if key == "starttls":
            return "starttls", word
        if key == "tls":
            return "implicit_tls", word == "implicit"
        return "pipelining", word == "on"
    except FaultSpecError:
        raise
    except ValueError as exc:
        raise _fail(spec, value if key != "auth" else "auth=(hidden)", str(exc)) from None


def _redact(spec: str) -> str:
    return re.sub(r"(?i)^(\s*auth\s*=).*", r"\1(hidden)", spec)


def parse_faults(
    specs: Iterable[str | Fault], base: Settings | None = None
) -> tuple[tuple[Fault, ...], Settings]:
    """Read many descriptions: the faults in order, and ``base`` with the settings applied."""
    faults: list[Fault] = []
    settings = base or Settings()
    for spec in specs:
        if isinstance(spec, Fault):
            faults.append(spec)
            continue
        parsed = parse_fault(spec)
        if isinstance(parsed, Fault):
            faults.append(parsed)
            continue
        name, value = parsed
        if name == "credentials" and isinstance(value, dict):
            value = {**settings.credentials, **value}
        if name in ("max_recipients", "max_connections") and isinstance(value, tuple):
            settings = settings.replace(**{name: value[0], f"{name}_reply": value[1]})
            continue
        settings = settings.replace(**{name: value})
    return tuple(faults), settings
