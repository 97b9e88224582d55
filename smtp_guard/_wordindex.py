"""The engine under the word rules: a reply's words looked up among the rules' phrases.

:mod:`smtp_guard._rules` states the rules as tables to be read next to the RFCs; this module
makes reading a reply against them cheap. A reply is read in one pass: its text is cut into
words once (:func:`words_of`), one set intersection finds the words any phrase is filed under,
and only the phrases filed under those are compared (:meth:`PhraseIndex.best_rank`). A
longer phrase is filed under its word least frequent in real replies, so common words lead to
few comparisons. Which word a phrase is filed under changes only the speed of the lookup,
never its answer: a phrase occurs in a reply only if all its words do.

Phrases use the small syntax of :class:`smtp_guard._rules.WordRule` (:func:`expand`).

Sans-IO: no I/O and no asyncio.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PhraseIndex", "expand", "words_of"]

# A word is a run of letters and digits; everything else separates words. Replies are cut
# as UTF-8 bytes with one byte table (bytes.translate, far faster than a regular expression):
# ASCII punctuation and controls become spaces, bytes of other scripts stay in their words.
_SEPARATOR_BYTES = bytes(
    byte if byte >= 0x80 or chr(byte).isalnum() else 0x20 for byte in range(256)
)
# Punctuation of other scripts that real replies use between words.
_WIDE_PUNCTUATION = {
    ord(c): " "
    for c in "\u2018\u2019\u201c\u201d\u00ab\u00bb\u2013\u2014\u2026\u00a0\u3001\u3002\uff0c\uff1a"
}
# Chinese and Japanese write words without spaces between them: each ideograph or kana is
# taken as a word of its own, so a phrase such as "用户不存在" (no such user) is found inside
# a longer sentence as the sequence of its characters.
_CJK = re.compile("([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff])")


def words_of(lowered: str) -> list[bytes]:
    """The words of a lower-cased text, as UTF-8 byte strings."""
    if lowered.isascii():
        return lowered.encode().translate(_SEPARATOR_BYTES).split()
    lowered = _CJK.sub(r" \1 ", lowered.translate(_WIDE_PUNCTUATION))
    return lowered.encode("utf-8", "surrogatepass").translate(_SEPARATOR_BYTES).split()


_CHOICE = re.compile(r"\[([^\]]*)\]|\{([^}]*)\}|([^\s\[\]{}]+)")


@functools.cache
def expand(phrase: str) -> tuple[tuple[bytes, ...], ...]:
    """Every word sequence a phrase stands for, e.g. ``"mailbox [is] full"`` ->
    ``((b"mailbox", b"is", b"full"), (b"mailbox", b"full"))``."""
    sequences: list[tuple[bytes, ...]] = [()]
    for optional, one_of, word in _CHOICE.findall(phrase.lower()):
        if word:
            choices = [tuple(words_of(word))]
        else:
            choices = [tuple(words_of(c)) for c in (optional or one_of).split("|")]
            if optional:
                choices.append(())
        sequences = [seq + choice for seq in sequences for choice in choices]
    return tuple(seq for seq in sequences if seq)


# The words of real replies that phrases contain, most frequent first: the words shared by at
# least four of the dev replies in tests/data (counted once per reply). A longer phrase is
# filed under its word least frequent in replies (a word not listed is the rarest), so that a
# reply's common words lead to few comparisons; ties go to the word fewest phrases contain.
_REPLY_WORDS_TEXT = """
    to not mail message for is address this from rejected the error ip your a please has
    recipient user sender spam messages domain of email blocked too denied in mailbox
    been smtp and service try access exceeded go policy or no host by invalid many relay
    spf again that authentication you our connection unavailable client sent unknown be
    later account quota sending temporarily accepted due found send de limit t allowed
    as rate valid rfc server command list refused cannot are system helo on does size
    senders limited rcpt failed required temporary first over recipients was content
    must at connections using id name local bad dns disabled check closing limits
    requires dkim per reach delivery block spamhaus will deferred syntax reverse have an
    greylisted storage authenticate find hostname header data tried reputation reject
    black errors exceeds dmarc bulk originating time full problem unauthenticated tls
    daily authenticated permitted commands listed authorized here envelope refuse
    password expired unusual out space trying virus unrecognized unsolicited 5322
    transaction ehlo 5321 domains their exist addresses frequency violation checks
    available banned need servers doesn much loop verification
"""
_REPLY_WORDS = _REPLY_WORDS_TEXT.split()
_REPLY_FREQUENCY = {word.encode(): len(_REPLY_WORDS) - i for i, word in enumerate(_REPLY_WORDS)}


@dataclass(frozen=True, slots=True)
class PhraseIndex:
    """Phrases with their ranks (lower wins), filed for lookup; see :meth:`best_rank`."""

    key_words: frozenset[bytes]  #: every word a phrase is filed under
    #: key word -> (rank of the one-word phrase, or ``no_rank``; (rank, " longer phrase "), ...).
    #: A longer phrase is kept as text (its UTF-8 bytes read as Latin-1, one character per
    #: byte) and looked for in the reply's words joined the same way: ``in`` on str costs a
    #: fifth of ``in`` on bytes (CPython 3.11), and byte for byte the answer is the same.
    entries: dict[bytes, tuple[int, tuple[tuple[int, str], ...]]]
    no_rank: int  #: what :meth:`best_rank` returns when no phrase occurs

    @classmethod
    def build(cls, ranked_phrases: Iterable[tuple[int, str]], no_rank: int) -> PhraseIndex:
        """File each ``(rank, phrase)``; every rank is below ``no_rank``."""
        sequences = [(rank, words) for rank, phrase in ranked_phrases for words in expand(phrase)]
        counts: dict[bytes, int] = {}
        for _, words in sequences:
            for word in set(words):
                counts[word] = counts.get(word, 0) + 1
        single: dict[bytes, int] = {}
        longer: dict[bytes, set[tuple[int, str]]] = {}
        for rank, words in sequences:
            if len(words) == 1:
                single[words[0]] = min(rank, single.get(words[0], rank))
            else:
                key = min(
                    words,
                    key=lambda w: (_REPLY_FREQUENCY.get(w, 0), counts.get(w, 0), -len(w)),
                )
                whole = (b" %s " % b" ".join(words)).decode("latin-1")
                longer.setdefault(key, set()).add((rank, whole))
        keys = frozenset(single) | frozenset(longer)
        # Within a rank the shorter phrases come first: they are the more general, so the
        # likelier to be found, and finding one ends the search for that rank.
        entries = {
            key: (
                single.get(key, no_rank),
                tuple(sorted(longer.get(key, ()), key=lambda p: (p[0], len(p[1])))),
            )
            for key in keys
        }
        return cls(keys, entries, no_rank)

    def best_rank(self, words: list[bytes]) -> int:
        """The best (lowest) rank of a phrase that occurs in ``words``, or ``no_rank``.

        One set intersection (in C) finds the words phrases are filed under; the one-word
        phrases are settled first (a lookup each), then the longer phrases filed under the
        words found are looked for in the joined words, best rank first, only while they could
        still rank better.
        """
        starts = self.key_words.intersection(words)
        best = self.no_rank
        if not starts:
            return best
        entries = self.entries
        pending = []
        for word in starts:
            rank, longer = entries[word]
            if rank < best:  # noqa: PLR1730 - a comparison costs less than a call in this loop
                best = rank
            if longer:
                pending.append(longer)
        if pending:
            joined = f" {b' '.join(words).decode('latin-1')} "
            for longer in pending:
                for rank, whole in longer:
                    if rank >= best:
                        break
                    if whole in joined:
                        best = rank
                        break
        return best
