"""Classifying SMTP replies: (code, text, phase) -> category, permanence, retry hint, hint.

The rules are tables in :mod:`smtp_guard._rules`, applied in this order (the first that
decides wins): the server's unmistakable words, the RFC 3463 enhanced status, the server's
other words, the enhanced class and subject, then the basic code refined by the phase; a basic
code narrower than the words found (551, 503, 501 to EHLO) keeps its meaning.

Permanence follows the basic code (RFC 5321 4.2.1): 4xx transient, 5xx permanent, with the
RFC's own exception (4.5.3.1.10): a 552 answering RCPT for "too many recipients" means 452.

A reply whose code RFC 4954 defines only for AUTH (534, 535, 538) is read as answering AUTH
when the caller does not say which phase it answers.

Sans-IO: no I/O and no asyncio. The text is cut into words once (e-mail addresses, host names
and URLs taken out first: their words are names, not reasons) and looked up in the rules'
per-phase indexes.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from smtp_guard import _rules
from smtp_guard._enums import Category, Phase
from smtp_guard._hints import hint_for
from smtp_guard._wordindex import words_of as _words_of
from smtp_guard.errors import ProtocolError, ReplyError, category_class
from smtp_guard.replies import UNITS, parse_retry_after, split_enhanced

__all__ = ["Classification", "classify", "error_from_reply"]

_PHASES: dict[str, Phase] = {phase.value: phase for phase in Phase}
#: Greylisting keys on sender and recipient, so it answers MAIL, RCPT or DATA (or unknown).
_GREYLIST_PHASES = frozenset({None, Phase.MAIL, Phase.RCPT, Phase.DATA})
#: A retry hint names a unit word or a clock time (hh:mm:ss): a text with neither cannot hold
#: a hint :func:`parse_retry_after` would find, and is not scanned for one.
_UNIT_WORDS = frozenset(unit.encode() for unit in UNITS if unit.isascii())
_CLOCK_MARK = re.compile(r":\d\d:")
_CODE_PREFIX = re.compile(r"^(\d{3})(?:[ -]|$)", re.MULTILINE)
_CODE_TEXT = {code: str(code) for code in range(200, 600)}
#: An e-mail address in a reply ("<report@spamcop.net>", "bob@blocked.example"): its words
#: ("spamcop", "blocked") are taken out before the text is read for the server's reason.
_ADDRESS = re.compile(r"[^\s<>()\[\]{}\"',;:@]*@[\w-]+(?:\.[\w-]+)*")
#: An IPv4 address ("Your IP(192.0.2.1) is filtered") is a name as well: without it, the
#: words around it read as the phrase they are ("your ip is filtered"), with a network
#: length or port ("192.0.2.0/24", "192.0.2.1:25"). Documentation often masks the last
#: octets ("211.xxx.xxx.xxx"). IPv6 addresses are not taken out.
_IPV4 = re.compile(
    r"(?<![\w.*])\d{1,3}(?:\.(?:\d{1,3}|x{1,3}|\*{1,3})){3}(?:/\d{1,2}|:\d{1,5})?(?![\w*]|\.\w)"
)
#: Host names and URLs are names too ("example.invalid>: Recipient address" is not "invalid
#: recipient address"); only the name of a block list in them is kept (_rules.without_names).
_without_names = _rules.without_names
# The rule tables as the hot path reads them (module globals: no attribute lookups per call).
_INDEXES = _rules.INDEXES
_STRONG_RANKS = _rules.STRONG_RANKS
_NO_RANK = _rules.NO_RANK
_RANK_CATEGORY = tuple(rule.category for rule in _rules.WORDS)
_HINTS = {category: hint_for(category) for category in Category}
#: rank of a word rule -> {enhanced subject: category}, from _rules.BY_RULE_AND_SUBJECT.
_BY_RANK_AND_SUBJECT: dict[int, dict[int, Category]] = {}
for (_name, _subject), _category in _rules.BY_RULE_AND_SUBJECT.items():
    _BY_RANK_AND_SUBJECT.setdefault(_rules.RANK[_name], {})[_subject] = _category
_AUTH_ONLY_CODES = _rules.AUTH_ONLY_CODES
_ADDRESS_SUBJECT = _rules.ADDRESS_SUBJECT
_NO_ADDRESS_PHASES = _rules.NO_ADDRESS_PHASES
_CODE_OVER_WORDS = _rules.CODE_OVER_WORDS


class Classification(NamedTuple):
    """What a reply means: the result of :func:`classify` (an immutable named tuple)."""

    category: Category
    permanent: bool
    enhanced: str | None
    retry_after: float | None
    hint: str

    @property
    def error_class(self) -> type[ReplyError]:
        """The error class for this category (its permanence is decided per instance)."""
        return category_class(self.category)


#: Builds a Classification from its five fields without the named tuple's Python-level
#: ``__new__`` (the fields are in order already).
_new_classification = tuple.__new__


def _check_code(code: object) -> int:
    if isinstance(code, bool) or not isinstance(code, int):
        raise ProtocolError(f"reply code must be an int, not {type(code).__name__}")
    if not 200 <= code <= 599:
        raise ProtocolError(f"reply code {code} is outside 200-599")
    return code


@functools.lru_cache(maxsize=1024)
def _enhanced_parts(enhanced: str) -> tuple[int, int, int]:
    status_class, subject, detail = enhanced.split(".")
    return int(status_class), int(subject), int(detail)


def _by_words(rank: int, enhanced: str | None) -> Category:
    """Steps 1 and 3: the word rule's category, unless the enhanced subject settles its
    reason otherwise (:data:`smtp_guard._rules.BY_RULE_AND_SUBJECT`)."""
    by_subject = _BY_RANK_AND_SUBJECT.get(rank)
    if by_subject is not None and enhanced is not None:
        refined = by_subject.get(_enhanced_parts(enhanced)[1])
        if refined is not None:
            return refined
    return _RANK_CATEGORY[rank]


def _by_enhanced(code: int, enhanced: str, phase: Phase | None) -> Category | None:
    """Step 2: the registry meaning of the enhanced status code, where it is specific."""
    status_class, subject, detail = _enhanced_parts(enhanced)
    if subject == _ADDRESS_SUBJECT and phase in _NO_ADDRESS_PHASES:
        return None  # no address given yet: the code and the phase decide (step 5)
    found = _rules.ENHANCED.get((subject, detail))
    if found is not None and (found[1] is None or code in found[1]):
        return found[0]
    for v_class, v_subject, first, last, category in _rules.VENDOR_ENHANCED:
        if (status_class, subject) == (v_class, v_subject) and first <= detail <= last:
            return category
    if enhanced == _rules.GREYLIST_ENHANCED and code in (450, 451) and phase in _GREYLIST_PHASES:
        return Category.GREYLISTED
    return None


def _by_subject(code: int, enhanced: str, phase: Phase | None) -> Category | None:
    """Step 4: the enhanced class and subject, where the basic code says little."""
    status_class, subject, _ = _enhanced_parts(enhanced)
    refines = code in _rules.GENERIC_CODES or subject in _rules.OVERRIDING_SUBJECTS
    if status_class != code // 100 or not refines:
        return None
    if subject == _ADDRESS_SUBJECT and phase in _NO_ADDRESS_PHASES:
        return None
    if phase is not None:
        by_phase = _rules.ENHANCED_SUBJECT_BY_PHASE.get((phase, code, subject))
        if by_phase is not None:
            return by_phase
    return _rules.ENHANCED_SUBJECT.get((status_class, subject))


def _by_code(code: int, phase: Phase | None) -> Category:
    """Step 5: the basic code, refined by the phase."""
    if phase is not None:
        by_phase = _rules.BY_PHASE_AND_CODE.get((phase, code))
        if by_phase is not None:
            return by_phase
    return _rules.BY_CODE.get(code, Category.OTHER)


def _decide(code: int, enhanced: str | None, tokens: list[bytes], phase: Phase | None) -> Category:
    """Apply the five steps of :mod:`smtp_guard._rules` in order; the first that decides wins."""
    # Success and intermediate replies (2xx, 3xx) name no error: no word rule applies to them.
    reply_class = code // 100
    if reply_class >= 4:
        found_index = _INDEXES.get((reply_class, phase)) or _rules.index(reply_class, phase)
        rank = found_index.best_rank(tokens)
        if rank < _STRONG_RANKS:  # 1. unmistakable words
            return _by_words(rank, enhanced)
    else:
        rank = _NO_RANK
    found = _by_enhanced(code, enhanced, phase) if enhanced is not None else None  # 2.
    if found is None and rank < _NO_RANK:  # 3. the server's other words
        found = _by_words(rank, enhanced)
    if found is None and enhanced is not None:  # 4. enhanced class and subject
        found = _by_subject(code, enhanced, phase)
    return found if found is not None else _by_code(code, phase)  # 5. the basic code


def _narrowed(code: int, enhanced: str | None, found: Category, phase: Phase | None) -> Category:
    """A basic code narrower than the words found keeps its meaning
    (:data:`smtp_guard._rules.CODE_OVER_WORDS`), unless a security or policy status (X.7.x)
    says the refusal is one ("501 5.7.1 EHLO rejected: your IP has no PTR record")."""
    phases, category, overridden = _CODE_OVER_WORDS[code]
    if found not in overridden or (phases is not None and phase not in phases):
        return found
    if enhanced is not None and _enhanced_parts(enhanced)[1] == 7:
        return found
    return category


def _is_552_for_too_many_recipients(code: int, category: Category, phase: Phase | None) -> bool:
    """RFC 5321 4.5.3.1.10: a 552 answering RCPT for too many recipients is to be treated as
    a 452 (transient): send the remaining recipients in another transaction."""
    return code == 552 and phase is Phase.RCPT and category is Category.TOO_MANY_RECIPIENTS


def classify(code: int, text: str | bytes, phase: Phase | str | None = None) -> Classification:
    """Classify one reply. ``text`` may still start with its enhanced status code.

    >>> found = classify(550, "5.1.1 <bob@example.com>: Recipient address rejected: User unknown")
    >>> found.category, found.permanent, found.enhanced
    (<Category.MAILBOX_UNKNOWN: 'mailbox_unknown'>, True, '5.1.1')
    >>> classify(451, "4.7.1 Greylisted, please try again in 300 seconds", "rcpt").retry_after
    300.0

    Whole reply lines are accepted too ("550-5.1.1 ...\n550 5.1.1 ..."): a leading reply
    code equal to ``code`` is taken off each line.

    Raises ProtocolError if ``code`` is not an int in 200-599, ValueError for an unknown phase.
    """
    if type(code) is not int or not 200 <= code <= 599:
        code = _check_code(code)  # raises the clear ProtocolError
    coerced = _PHASES.get(phase) if isinstance(phase, str) else phase
    if coerced is None and phase is not None:
        coerced = Phase.coerce(phase)  # another spelling, or a clear ValueError
    if coerced is None and code in _AUTH_ONLY_CODES:
        coerced = Phase.AUTH  # RFC 4954: these codes answer AUTH only
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if text.startswith(_CODE_TEXT[code]):
        text = _without_code(code, text)
    enhanced, body = split_enhanced(text)
    lowered = body.lower()
    if "@" in lowered:  # the words of an address are a name, not the server's reason
        lowered = _without_addresses(lowered)
    if "." in lowered:  # nor are the words of a host name or URL
        lowered = _without_names(lowered)
        # nor an IP address ("your ip (192.0.2.1) is filtered"). The phrases that read across
        # one name an IP or a host, so only a text holding "ip" or "host" (also inside other
        # words) is searched for one: the search costs a sixth of a classification.
        if "ip" in lowered or "host" in lowered:
            lowered = _IPV4.sub(" ", lowered)
    tokens = _words_of(lowered)
    category = _decide(code, enhanced, tokens, coerced)
    if code in _CODE_OVER_WORDS:
        category = _narrowed(code, enhanced, category, coerced)
    # Only a text naming a wait can hold a retry hint: an ASCII text without a unit word or a
    # clock time is not scanned for one (the answer would be None).
    might_wait = (
        not _UNIT_WORDS.isdisjoint(tokens)
        or not lowered.isascii()
        or (body.count(":") >= 2 and _CLOCK_MARK.search(body) is not None)  # hh:mm:ss
    )
    return _new_classification(
        Classification,
        (
            category,
            code >= 500
            and not (code == 552 and _is_552_for_too_many_recipients(code, category, coerced)),
            enhanced,
            parse_retry_after(body) if might_wait else None,
            _HINTS[category],
        ),
    )


def _without_addresses(lowered: str) -> str:
    """The text with its e-mail addresses replaced by a space."""
    # The pattern starts with an optional run, so a search of the whole text tries it at
    # every character (microseconds for a long reply). An address holds no space and the
    # pattern looks at nothing around it: the pieces between spaces, searched one by one and
    # only where they hold an "@", give the same text.
    return " ".join(
        [_ADDRESS.sub(" ", piece) if "@" in piece else piece for piece in lowered.split(" ")]
    )


def _without_code(code: int, text: str) -> str:
    """The text without the reply code, if a caller passed whole reply lines ("550-...")."""
    if not text.startswith(str(code)):
        return text
    prefix = str(code)
    return _CODE_PREFIX.sub(lambda m: "" if m.group(1) == prefix else m.group(0), text)


def error_from_reply(
    code: int,
    text: str | bytes,
    phase: Phase | str | None = None,
    recipient: str | None = None,
    *,
    sender: str | None = None,
) -> ReplyError:
    """Build the typed error for a reply, e.g. ``error_from_reply(550, "5.1.1 No such user")``.

    The error keeps the server's text as received in ``message`` and without the enhanced
    status in ``text``.
    """
    message = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    coerced = Phase.coerce(phase)
    found = classify(code, message, coerced)
    _, body = split_enhanced(_without_code(code, message))
    return found.error_class(
        code,
        message,
        enhanced=found.enhanced,
        text=body,
        category=found.category,
        phase=coerced,
        recipient=recipient,
        sender=sender,
        permanent=found.permanent,
        retry_after=found.retry_after,
        hint=found.hint,
    )
