"""The classifier's rules as tables, in the order they are applied.

:func:`smtp_guard.classify` reads a reply in five steps; the first step that decides wins:

1. ``STRONG_WORDS``: the server's own words when they name the reason unmistakably
   ("greylisted", "over quota", "blocked using Spamhaus", "SPF"). Real servers attach
   enhanced codes loosely (``552 5.1.1 ... mailbox is full``, ``550 5.7.1 No such user``,
   Google's ``4.7.29`` for "not sent over TLS"), so these words outrank the enhanced code.
2. ``ENHANCED``: the RFC 3463 enhanced status, by subject and detail, read against the IANA
   "SMTP Enhanced Status Codes" registry (RFC 5248). Catch-all details (``X.0.0``,
   ``X.7.0``, ``X.7.1``, ...) are not listed: they say nothing the next steps do not.
3. ``WEAK_WORDS``: the server's words for the common reasons that carry no better code
   ("relay not permitted", "syntax error", "try again later", "denied", ...).
   Where a rule's words name only what was refused, the enhanced subject says why
   (``BY_RULE_AND_SUBJECT``, for strong rules too): Postfix's "Sender address rejected" with
   a security or policy status (X.7.x) is a policy refusal, with an addressing one (X.1.x) a
   bad address.
4. ``ENHANCED_SUBJECT``: what is left of the enhanced code, its class and subject, for the
   basic codes that say little by themselves (``GENERIC_CODES``: 450, 451, 550, 553, 554;
   for any code when the subject is content (6) or policy (7)), refined by the phase
   (``ENHANCED_SUBJECT_BY_PHASE``: a 550 X.1.x answering RCPT refuses the mailbox).
   A 551 with X.1.1 is left to step 5, which keeps RFC 5321's user-not-local.
   At the greeting and EHLO no mail address has been given, so an addressing status (X.1.x)
   there is left to step 5 too, where a 550 or 553 is a policy refusal of the client's name.
5. ``BY_CODE``: the basic reply code (RFC 5321 4.2.2 and 4.2.3, RFC 4954 for AUTH, RFC 7504
   for 521/556), refined by the phase of the dialogue (``BY_PHASE_AND_CODE``).

Last, a basic code narrower than the words found keeps its meaning (``CODE_OVER_WORDS``): a
551 is "user not local" whatever it says of the user, a 501 answering EHLO a malformed name.

A word rule is a list of phrases (see :class:`WordRule` for their small syntax), restricted
to reply classes (4xx, 5xx) and phases where it means what it says. Within a step, the rule
listed first wins. A reply is read in one pass: its text is cut into words once, one set
intersection finds the words any applicable phrase is filed under, and only those phrases
are compared (:mod:`smtp_guard._wordindex`, ``PhraseIndex.best_rank``). A longer phrase is
filed under its word least frequent in real replies, so common words lead to few
comparisons. Chinese and Japanese text is cut one ideograph or kana per word, so their
phrases are found inside unspaced sentences. Phrases come from the replies in ``tests/data``
(dev rows only), provider documentation in several languages, the RFCs, the default replies
of Postfix, Exim, Sendmail and qmail, and the bounce-phrase lexicons of sisimai
(``lib/sisimai/reason/*.rb``, gathered from real bounces).

Before a reply is read, the names in it are taken out: e-mail addresses, host names and URLs
(:data:`URL_OR_HOST`). "<bob@spamcop.net>", "mx.example.invalid>: Recipient address" and
"https://support.google.com/mail/?p=UnsolicitedRateLimitError" name things, not reasons. The
one exception is the name of a DNS block list or reputation service inside a host name or URL
(:data:`LIST_NAMES`, "zen.spamhaus.org"): naming the list is the reason.

How refusals are told apart. RFC 3463 gives a security or policy refusal one subject, X.7.x,
whose catch-all details (X.7.0 "other security status", X.7.1 "delivery not authorized,
message refused") say nothing about why; RFC 5321's 550/554 say no more. Which of the
categories below applies is therefore read from the server's words alone, and only from
explicit ones, because each category tells the sender to do something different
(:mod:`smtp_guard._hints`): ask for delisting, fix the content, relay elsewhere, or read the
server's text. A word that only suggests a reason decides nothing; the refusal then stays the
general one, ``POLICY_REJECTED``.

* ``BLOCKLISTED`` (the sending IP or domain is on a list; delisting is the fix) only with a
  listing cue: the name of a DNSBL/RBL or reputation service (Spamhaus, SpamCop, Barracuda,
  SORBS, Cloudmark, Proofpoint's ipcheck, ... as Postfix's ``reject_rbl_client`` reply "blocked
  using zen.spamhaus.org" names it), "blacklisted", "blocklisted", "listed in/on/at/by",
  "removal from this list"/"delist" (Microsoft's "banned sending IP ... To request removal
  from this list"), the "reputation" of the sending IP, or a block of dynamic, dial-up or
  residential IP ranges (Spamhaus PBL, Microsoft's "not authorized to send email directly";
  Comcast's BL/ES codes, AOL's RTR:DU and Yahoo's TSS09/TSS11 are those providers' documented
  codes for these). A block of the sending IP or host itself by the receiving provider ("Your
  IP has been blocked", "Client host [...] blocked", "no access for this ip") is a list of its
  own: asking it to unblock, or sending through another server, is the fix. At the greeting
  and EHLO only the connecting host is known, so a block or a spam verdict there is one too.
  A list of refused senders, the provider's or the recipient's own ("Blocked Senders",
  qmail's badmailfrom, "User in blacklist", "sender blocked": ``sender_listed``), is one as
  well, and so is the provider's block of a sender for its conduct ("blocked due to
  complaints"). "Client host rejected", "Access denied", "Connection refused" and other
  refusals that name no list and no block stay ``POLICY_REJECTED``. (Before batch 7 of the
  corpus these blocks were read as policy; independent labellers read them as listings, see
  tests/data/README.md.)
* ``SPAM_REJECTED`` (the message was judged as spam; the content is the fix) only with a
  content cue: "spam", "junk", "bulk", "unsolicited", "suspicious content/links",
  "malware", "virus", "phishing", a content filter, a URI block list (SURBL, URIBL).
* ``RELAY_DENIED`` only with the words of relaying ("relay access denied", "relaying
  requires authentication", or qmail's ``rcpthosts``, the file of the domains it relays for,
  named in its default reply).
* ``POLICY_REJECTED`` is every other X.7.x refusal (including a recipient's refusal that
  names no list, a missing PTR record, a sender the server could not verify), and what
  550/554 mean when their words name no better reason.

Words that call the sending host itself a spam source ("known spammer", "open proxy") are a
reputation listing, not a verdict on the message. A listing cue outranks a spam cue
("blocked using Spamhaus ... spam"), except a URI block list, which lists the message's
links ("example.net blacklisted in multi.uribl.com"); a rate or volume cue ("too many
messages") outranks a spam cue; the server's own failures (``own_failure``), the sender
authentication words (SPF, DKIM, DMARC), a named public block list (``named_list``) and a
list of refused senders (``sender_listed``) come before the rest.

Mailbox states. RFC 3463's X.2.1 is "mailbox disabled", but servers send 4.2.1 and 4.2.0 for
a busy or throttled mailbox ("450 4.2.1 Mailbox busy, try again later", Gmail's "4.2.1 ...
receiving mail too quickly"): X.2.1 reads as disabled only on a 5xx, and a transient mailbox
status with no better words is RFC 5321's 450 "mailbox busy". The server's words for a busy
mailbox ("busy", "locked", "temporarily unavailable", Exchange's 432 4.3.2 "recipient thread
limit exceeded") outrank any enhanced code; words of throttling ("too quickly", "rate") come
first. A bare "quota exceeded" is the mailbox's storage quota unless the status is a policy
one (X.7.x): then it is the sender's sending quota (Google's "550 5.7.1 Email quota exceeded"),
see :data:`BY_RULE_AND_SUBJECT`.

Sans-IO: data only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from types import MappingProxyType

from smtp_guard._enums import Category as C
from smtp_guard._enums import Phase as P
from smtp_guard._wordindex import PhraseIndex

# The phrase syntax and the words it reads, as the rules' tests use them (an explicit export).
from smtp_guard._wordindex import expand as expand  # noqa: PLC0414
from smtp_guard._wordindex import words_of as words_of  # noqa: PLC0414

__all__ = [
    "AUTH_ONLY_CODES",
    "BY_CODE",
    "BY_PHASE_AND_CODE",
    "BY_RULE_AND_SUBJECT",
    "ENHANCED",
    "ENHANCED_SUBJECT",
    "ENHANCED_SUBJECT_BY_PHASE",
    "GENERIC_CODES",
    "LIST_NAMES",
    "NO_ADDRESS_PHASES",
    "OVERRIDING_SUBJECTS",
    "STRONG_WORDS",
    "URL_OR_HOST",
    "VENDOR_ENHANCED",
    "WEAK_WORDS",
    "WORDS",
    "WordRule",
    "without_names",
]

ANY_CLASS = frozenset({4, 5})
TRANSIENT = frozenset({4})
PERMANENT = frozenset({5})
#: ``None`` stands for "phase not known" in a rule's phase set.
NOT_MAIL: frozenset[P | None] = frozenset({None, P.RCPT, P.DATA, P.MESSAGE})
NOT_AUTH: frozenset[P | None] = frozenset(
    {None, P.CONNECT, P.EHLO, P.STARTTLS, P.MAIL, P.RCPT, P.DATA, P.MESSAGE, P.QUIT}
)
AT_AUTH: frozenset[P | None] = frozenset({None, P.AUTH})
AT_CONNECT: frozenset[P | None] = frozenset({P.CONNECT, P.EHLO})
NOT_CONNECT: frozenset[P | None] = frozenset(
    {None, P.STARTTLS, P.AUTH, P.MAIL, P.RCPT, P.DATA, P.MESSAGE, P.QUIT}
)


@dataclass(frozen=True, slots=True)
class WordRule:
    """The server's words for one reason, as phrases.

    A phrase is words separated by spaces; ``[a]`` or ``[a|b]`` is an optional word, ``{a|b}``
    one of several (``{email address|domain}``: each choice may be several words). Case and
    punctuation do not matter: phrases and replies are both cut into the same words
    (:func:`smtp_guard._wordindex.words_of`), so "Helo/EHLO" reads as ``helo ehlo`` and
    "doesn't" as ``doesn t``.
    """

    name: str
    category: C
    phrases: tuple[str, ...]
    classes: frozenset[int] = ANY_CLASS  #: first digits of the reply codes it applies to
    phases: frozenset[P | None] | None = None  #: phases it applies to; None: any


# --------------------------------------------------------------------------- 1. strong words

STRONG_WORDS: tuple[WordRule, ...] = (
    # The order matters: the first rule that matched decides. More specific reasons first.
    WordRule(
        "greylisted",
        C.GREYLISTED,
        (
            "greylisted",
            "greylisting",
            "greylist",
            "graylisted",
            "graylisting",
            "graylist",
            "{grey|gray} {listed|listing}",
        ),
        TRANSIENT,
    ),
    WordRule(
        # The server's own tools failed: its signing of outgoing mail (DKIM), its virus
        # scanner, its DNS while checking the sender. A local error, not the sender's
        # records or content.
        "own_failure",
        C.SERVER_ERROR,
        (
            "signing {failed|failure|error}",
            "failed to sign",
            "problem running",
            "{virus|content} scanner {error|failure|failed|unavailable|not available}",
            "{anti virus|antivirus|virus scan|virus scanners|spam filter|content filter}"
            " {unavailable|failed|offline|failure|error}",
            "temporary dns {error|failure}",
            "dns [is] {not available|unavailable}",
        ),
    ),
    WordRule(
        "sender_auth",
        C.SENDER_AUTH_FAILED,
        (
            "spf",
            "dkim",
            "dmarc",
            "domainkeys",
            "sender policy framework",
            "unauthenticated email",
            "sender is unauthenticated",
            "authentication checks",
            "is not allowed to send mail",
            "not authorized to send in the name of",
            "domain owner discourages",  # policyd-spf's reply to an SPF softfail
            "remote ip check error",
        ),
    ),
    WordRule(
        "sequence_specific",
        C.BAD_SEQUENCE,
        (
            "may not be repeated",
            "no commands allowed to pipeline",
            "{helo|ehlo|hello|mail|rcpt} [command] first",
            "need {mail|rcpt|helo|ehlo}",
            "nested mail",
            "already authenticated",
            "bad sequence",
            "out of sequence",
            "sequence error",
            "must precede",
            "no identity changes",
            "sender not yet given",
            "{sender|recipient} already {given|specified}",
            # before the TLS rules: "454 TLS not available due to temporary reason: TLS
            # already active" is a second STARTTLS
            "{tls|starttls} already {active|started|running|in use}",
            # The command the server still waits for, named: go-smtp's "Missing RCPT TO
            # command", "Please introduce yourself first" (no HELO/EHLO yet).
            "missing {mail|rcpt|helo|ehlo} [from|to] command",
            "introduce yourself",
            "[transaction is] already in progress",
            # Postfix's reply to DATA when no recipient was accepted, whatever phase it is
            # filed under
            "error no valid recipients",
            "not following [the] [smtp] protocol",
            "{must|should} wait for [my|the] {reply|response|greeting|banner}",
        ),
    ),
    WordRule(
        # Before the next rule: "not supported" is for good, whatever else the text says.
        "tls_unsupported",
        C.NOT_IMPLEMENTED,
        ("{tls|starttls} not supported",),
    ),
    WordRule(
        # RFC 3207's 454 "TLS not available due to temporary reason": for now, not for good.
        "tls_unavailable_now",
        C.SERVICE_UNAVAILABLE,
        ("{tls|starttls} not available due to [a] temporary reason",),
    ),
    WordRule(
        # A bare "454 TLS not available" (aiosmtpd without a certificate) names no reason:
        # independent labellers read it as the server not offering TLS. After the rule above,
        # whose longer phrase holds this one.
        "tls_unavailable",
        C.NOT_IMPLEMENTED,
        ("{tls|starttls} not available",),
    ),
    WordRule(
        # The receiving server's check of the sender (Exim's "Sender verify failed", a
        # callout; Postfix's reject_unverified_sender, "Sender address rejected: unverified
        # address") failed: its policy refuses unverifiable senders, whatever the check met
        # on the way (a TLS failure, an unknown user at the sender's domain).
        "sender_verification",
        C.POLICY_REJECTED,
        (
            "sender verify failed",
            "sender verification failed",
            "verification failed for",
            "sender address rejected unverified address",
            "as a valid sender",
        ),
    ),
    WordRule(
        # DATA with no recipient accepted (Postfix's "554 5.5.1 Error: no valid recipients"
        # answering DATA); answering RCPT, the same words report the recipients refused.
        "no_recipient_at_data",
        C.BAD_SEQUENCE,
        ("no valid recipients", "at least one [valid] recipient"),
        ANY_CLASS,
        frozenset({P.DATA}),
    ),
    WordRule(
        "tls_required",
        C.TLS_REQUIRED,
        (
            "starttls",
            "tls",
            "ssl",
            "sslv3",
            "encryption [is] {required|needed}",
            "requires encryption",
            "must be {sent|send} {with|using} [an] encryption",
            "lack of security",
        ),
    ),
    WordRule(
        "reverse_dns",
        C.POLICY_REJECTED,
        (
            "ptr",
            "reverse dns",
            "reverse hostname",
            "rdns",
            "reverse look",
            "cannot find your hostname",
            "helo command rejected",
            "bad helo",
            "helohost",
            # A refused HELO/EHLO name (Haraka's helo.checks, "HELO should be a FQDN"): the
            # sending host's identity, like its reverse DNS.
            "{helo|ehlo} {must|should|name|hostname is}",
            "{helo|ehlo} [is] {dynamic|forged|bogus|invalid}",
            "in {helo|ehlo}",
            "invalid {helo|ehlo}",
        ),
    ),
    WordRule(
        # A public DNS block list named: whether it lists the sending IP or the sender's
        # domain ("Sender address [...] blocked using dbl.spamhaus.org"), delisting is the fix.
        "named_list",
        C.BLOCKLISTED,
        ("blocked using", "spamhaus", "spamcop", "sorbs", "barracudacentral", "dnsbl", "dnsbls"),
    ),
    WordRule(
        # A list of refused senders, the provider's or the recipient's own ("Blocked
        # Senders", qmail's badmailfrom, "User in blacklist"): independent labellers read it
        # as a listing, and asking to be taken off it (or sending from another address) is
        # the fix, as for a DNSBL.
        "sender_listed",
        C.BLOCKLISTED,
        (
            "sender is blacklisted",
            "{email address|domain} has been {blocked|blacklisted}",
            "badmailfrom",
            "envelope blocked",
            "envelope sender has been denied",
            "sender address blocked",
            "blocked by [the] recipient",
            "blocked senders",
            "block policy",
            "sender is spammer",
            "address that has been blacklisted",
            "user in blacklist",
            "in my blacklist",
            "registered as [a] spammer",
            "{user's|users} reject list",
            "no access for this {domain|ip|address}",
            "mail from your location",
            "ip in prison",
        ),
    ),
    WordRule(
        "sender_blocked",
        C.POLICY_REJECTED,
        (
            "sender denied",
            "denies the sender",
            "not owned by user",
            "delivery restriction",
            "sender [was] not authenticated",
            "not in allowed-senders",
            "not in [the] {whitelist|allowlist}",
            "not {whitelisted|allowlisted}",
            "illegal attachment",
            "{attachment|file} {type|extension|name} [is] {forbidden|blocked|not allowed}",
            "attachment extension is forbidden",
            "forbidden attachment",
            "executable attachment",
            "sender rejected",
            "batv",
            "backscatter protection",
            "bogus mail from",
            "empty envelope senders",
            "null sender is not allowed",
            "third party dsns",
            "not a registered gateway user",
            "email address is not verified",
            "returned mail not accepted",
            "rule imposed",
            "sender not pre approved",
            "sender address rejected access denied",
            "{permission|not allowed|not authorized} to send as",
            "sendasdenied",
            "rst {authrequired|notauthorized}",
            # the recipient's own refusal of this sender
            "{doesn't|does not} want your {mail|email|e-mail|message|messages}",
            "{doesn't|does not} wish to receive",
            "{does not|doesn't} accept {mail|email|messages} from you",
        ),
    ),
    WordRule(
        "sender_domain",
        C.BAD_ADDRESS,
        (
            "unresolvable",
            "must resolve",
            "sender address rejected: domain not found",
            "domain of sender address",
            "from: domain is invalid",
            "invalid recipient address",
            "invalid address",
            "sender address rejected undeliverable address",
            "malformed local part",
            "local part too long",
            "{path|domain} too long",
            "domain cannot exceed",
            # an address defect named outweighs a generic syntax status (501 5.5.2)
            "{sender|recipient|e mail|email} address required",
            "domain name required",
            "sender domain {not found|does not exist|doesn't exist|unknown|invalid}",
            "valid sender domain",
            "unknown sender [address|domain]",
            "single label {domain|domains}",
        ),
        ANY_CLASS,
        NOT_CONNECT,  # no address has been given at the greeting or in answer to EHLO
    ),
    WordRule(
        # A URI block list lists the links in the message, not the sender: the content is
        # the fix, whatever listing words come with it ("example.net blacklisted in
        # multi.uribl.com", Haraka's data.uribl reply).
        "uri_lists",
        C.SPAM_REJECTED,
        (
            "uribl",
            "surbl",
            "{blocked|banned|blocklisted|blacklisted|listed} {url|urls|uri|uris|link|links}",
            "{url|urls|uri|uris|link|links} [is|are] {blocklisted|blacklisted|listed}",
        ),
    ),
    WordRule(
        "blocklisted",
        C.BLOCKLISTED,
        (
            "spamhaus",
            "barracuda",
            "rbl",
            "dnsbl",
            "blocked using",
            "blacklist",
            "blacklisted",
            "{black|block} {list|listed}",
            "blocklist",
            "blocklisted",
            "black ip",
            "pbl",
            "sbl",
            "xbl",
            "cloudmark",
            "spamcop",
            "sorbs",
            "banned sending ip",
            "dialup",
            "dynamic ip",
            "transient ip",
            "reputation database",
            "ip [address] [is] {listed|blacklisted|banned}",
            "ip [address] has been {listed|blacklisted|banned}",
            "(bl)",
            "ipcheck",
            "{is|are|was|been} listed {in|on|at|by}",
            "uceprotect",
            "spamrats",
            "psbl",
            "mailspike",
            "abuseat",
            "invaluement",
            "abusix",
            "backscatterer",
            "ordb",
            "njabl",
            "dsbl",
            "rhsbl",
            "blackhole",
            "known spammer",
            "spam source",
            "rbls",
            "dnsbls",
            "blocklists",
            "blacklists",
            "smtp server of your isp",
            "open proxy",
            "looks suspiciously like spammer",
            "dynamic ips",
            "residential ip",
            "spam statistics",
            "removal from this list",
            "{request|requesting} removal",
            "delist",
            "delisting",
            "delisted",
            "barracudacentral",
            "senderscore",
            "senderbase",
            "talosintelligence",
            "proofpoint",
            # AOL's (RTR:DU) and Yahoo's [TSS09]/[TSS11] ("permanently deferred"): codes their
            # postmaster pages document as a dynamic IP range and a poor reputation of the IP.
            "rtr du",
            "{tss09|tss11}",
            # Comcast's block codes (postmaster.comcast.net): BLxxxxxx lists, ESxxxxxx dynamic IPs
            "{bl000000|bl000001|bl000010|bl000011|bl000100|bl000101|bl000110|bl000111}",
            "{es000001|es000010}",
            "sperrliste",
            "{schwarze|schwarzen} liste",
            "liste noire",
            "{lista negra|lista nera}",
            "{czarna|czarnej} {lista|liście}",
            "{černé|cerne} {listině|listine}",
            "blacklistu",
            "{черный|чёрный|черном|чёрном} {список|списке}",
        ),
    ),
    WordRule(
        "rate_quota",
        C.RATE_LIMITED,
        (
            "submission quota",
            "sending quota",
            "{email|e-mail|message|messages|send|outbound} quota",
            "sending limit {exceeded|reached}",
            "{reached|exceeded} [your|the|its] [daily] sending limit",
            "daily [user] [sending] {limit|quota}",
            "daily smtp",
            "your daily limit",
            "relay limit",
            "this hour",
            "per hour",
            "receive limit",
            "exceeded permitted limits",
            "daily message limit",
            "{message|messages|email|emails} per {second|minute|hour|day}",
            "send rate exceeded",
            "sending rate",
            "hourly {send|sending|message} {rate|limit}",
            "per 24 hours",
            "{in|within} [the] [last] 24 hours",
            "{rcpt|rcpts|recipients} per {minute|hour|day}",
            "submissionquotaexceededexception",
        ),
    ),
    WordRule(
        "insufficient_storage",
        C.INSUFFICIENT_STORAGE,
        (
            "insufficient [system] {storage|resources}",
            "insufficient disk space",
            "mail system full",
            "system storage",
        ),
    ),
    WordRule(
        "mailbox_full",
        C.MAILBOX_FULL,
        (
            "mailbox [is] full",
            "overquota",
            "over quota",
            "out of storage",
            "storage {space|limit|quota}",
            "disk quota",
            "disk is full",
            "too many messages on the server",
            "speicher",
            "speicherplatz",
            "speichervolumen",
            "boite du destinataire pleine",
            "{boite|boîte} [aux lettres] pleine",
            "postfach [ist] voll",
            "{schránka|schranka} [je] {plná|plna}",
            "{plná|plna} {schránka|schranka}",
            "ящик переполнен",
            "{buzón|buzon} lleno",
            "casella [di posta] piena",
            "メールボックスがいっぱい",
            "{空间|容量}已满",
            "가득 {찼습니다|참}",
            "skrzynka [jest] {pełna|przepełniona}",
            "exceeding {its|their} [mailbox] quota",
            "disc quota",
            "does not have enough space",
            "full mailbox",
            "over disk quota",
            "mailbox exceeded the local limit",
            "exceeded its disk space limit",
            "quota usage exceeded",
            "mailbox size limit",
            "userdisk quota",
            "domaindisk quota",
            "mailfolder is full",
            "not enough storage space",
            "over the allowed quota",
            "quota violation",
            "reached disk quota",
            "exceed maximum allowed storage",
            "space has been used up",
            "quotaexceededexception",
            "mapiexceptionshutoffquotaexceeded",
            "quota {überschritten|ueberschritten|dépassé|depasse|excedida|excedido}",
            "quota {superata|przekroczona|překročena}",
            "{cuota|cota} excedida",
            "caixa [postal|de correio] cheia",
            "{mailbox|postvak|postbus} [is] vol",
            "переполнен",
            "квота превышена",
            "превышена квота",
            "邮箱已满",
            "邮箱空间不足",
        ),
    ),
    WordRule(
        "quota_exceeded",
        C.MAILBOX_FULL,
        (
            # Whose quota: a mailbox's (X.2.2, 552) unless the enhanced status is a policy
            # one (X.7.x), where it is the sender's sending quota (QUOTA_BY_SUBJECT).
            "quota [limit] exceeded",
            "exceeded [the|his|her|their] quota",
        ),
    ),
    WordRule(
        "line_too_long",
        C.SYNTAX_ERROR,
        ("line [is] too long",),
    ),
    WordRule(
        "message_too_large",
        C.MESSAGE_TOO_LARGE,
        (
            "too {large|big}",
            "{message|attachment|mail} is too long",
            "message size",
            "size {limit|limits|exceeds|exceeded}",
            "exceeds [the] [fixed] maximum [message] size",
            "maximum {email|message} size",
            "too much mail data",
            "message length exceeds",
            "number of attachments",
            "header size",
            "taille limite",
            "zu {groß|gross}",
            "příliš {velká|velký|velkou}",
            "trop {volumineux|gros}",
            "demasiado grande",
            "troppo grande",
            "muito grande",
            "{zbyt|za} {duża|duży}",
            "слишком {большое|большой}",
            "邮件过大",
        ),
    ),
    WordRule(
        "ip_reputation",
        C.BLOCKLISTED,
        (
            "reputation",
            "unsolicited mail originating from your ip",
            # Microsoft's wording for an IP in a dynamic (residential) range.
            "not authorized to send email directly",
        ),
        PERMANENT,
    ),
    WordRule(
        "rate_limited",
        C.RATE_LIMITED,
        (
            "too {many|frequent} {connections|connects|sessions|messages|mails}",
            "number of sessions",
            "too many concurrent sessions",
            "too many concurrent [smtp] {connections|sessions}",
            "concurrent {connections|sessions} [limit]",
            "{connection|connections|session|sessions} limit",
            "too many [smtp] connections",
            "zu viele {verbindungen|nachrichten|mails|e mails}",
            "trop de {messages|courriels|mails}",
            "demasiadas conexiones",
            "demasiados {mensajes|correos}",
            "troppe connessioni",
            "troppi messaggi",
            "příliš mnoho {zpráv|spojení|připojení}",
            "слишком много {соединений|подключений|писем|сообщений}",
            "频率过高",
            "过于频繁",
            "发送频率",
            "hl {icc|ifc}",
            "cxcnct",  # Cox: too many connections from the IP
            "mi {dmc|sfq}",
            "too quickly",
            "too fast",
            "rate limit",
            "rate limited",
            "rate limiting",
            "ratelimit",
            "ratelimited",
            "frequency limited",
            "at a rate",
            "unusual rate",
            "excessive volume",
            "unexpected volume",
            "temporarily deferred",
            "{max|maximum} [number] [of] {message|messages} per {session|connection}",
            "{message|messages} per {session|connection}",
            "throttle",
            "throttled",
            "throttling",
            "slow down",
            "trop de connexions",
            "sent too {many|much}",
            "quota for sending",
            "exceeded its quota",
            "too much {email|mail}",
            "too many emails",
            "to many {mails|messages|emails|connections}",  # a common misspelling of "too"
            "short period of time",
            "can only send",
            "too many requests",
            "{submission|sending|message} rate",
            "number of messages [has] exceeded [the] {administrative|configured|allowed|sending}"
            " limit",
            "sender rate",
        ),
    ),
    WordRule(
        "mailbox_busy",
        C.MAILBOX_BUSY,
        (
            "{mailbox|recipient|user|account|destination} [is] [currently|temporarily] busy",
            "{mailbox|folder|user} [is] [currently|temporarily] {locked|in use}",
            "mailbox [is] temporarily {unavailable|blocked}",
            "{mailbox|recipient|user|destination} [is] [currently|temporarily] unavailable",
            "{mailbox|recipient|user|destination} [is] [currently|temporarily] not available",
            "waiting for [a] lock",
            "lock timeout",
            # Exchange's store driver: one recipient's deliveries are throttled so that the
            # other mailboxes of its database are served ("recipient thread limit exceeded").
            "thread limit",
            "concurrent {delivery|deliveries}",
        ),
        TRANSIENT,
        NOT_MAIL,
    ),
    WordRule(
        "too_many_recipients",
        C.TOO_MANY_RECIPIENTS,
        (
            "too many {recipients|rcpt}",
            "{recipient|recipients} limit",
            "maximum [number] [of] recipients",
            "multiple destination domains per transaction",
            "separate transaction",
            "reciplimit",
            "allow rcpt",
            "zu viele empfänger",
            "trop de destinataires",
            "demasiados destinatarios",
            "troppi destinatari",
            "příliš mnoho příjemců",
            "слишком много получателей",
            "rp drc",
        ),
    ),
    WordRule(
        "header_policy",
        C.POLICY_REJECTED,
        (
            "rfc 5322",
            "rfc5322",
            "rfc 2822",
            "rfc2822",
            "rfc 822",
            "rfc822",
            "not rfc compliant",
            "message header",
            "from: header",
            "message-id: header",
            "header field",
            "disallowed header",
            "duplicate headers",
            "message is malformed",
            "malformed {message|mail}",
            "header error",
            "multiple addresses",
        ),
        PERMANENT,
        NOT_MAIL,
    ),
    WordRule(
        # A block of the sending IP or host itself by the receiving provider: a list of its
        # own, and asking it to unblock (or sending through another server) is the fix, as for
        # a DNSBL. After the rate words: "mail sent from your IP address has been blocked"
        # for an "unusual rate" is a rate limit (Google's 421 4.7.0).
        "ip_blocked",
        C.BLOCKLISTED,
        (
            "{ip|ip address|host} {is|was} [temporarily] {blocked|filtered|banned}",
            "{ip|ip address|host} has been [temporarily] {blocked|filtered|banned}",
            "{blocked|banned|filtered} {ip|ip address|host}",
            "client host blocked",
            "not accepted from this ip",
            "zombie",  # Trend Micro's ERS: the IP is a known botnet member
            "naughty",  # qpsmtpd's naughty plugin: the IP misbehaved before, refused for days
            "cxbl",  # Cox's code for an IP it blocks (its postmaster error-code list)
            # The provider's block of a sender for its conduct (MailChannels' "[SB01] Your
            # email address has been blocked due to complaints", Cisco ESA's "Sender blocked");
            # a recipient's own refusal of a sender is sender_blocked, above.
            "sender blocked",
            "{blocked|banned|suspended} {due to|for|because of} complaints",
        ),
    ),
    WordRule(
        # At the greeting and EHLO only the connecting host is known: no sender, recipient
        # or message yet. A block or a spam verdict there is about the host's IP.
        "greeting_block",
        C.BLOCKLISTED,
        (
            "blocked",
            "banned",
            "filtered",
            "spam",
            "spammer",
            "spamming",
            "unsolicited",
            "junk",
        ),
        ANY_CLASS,
        AT_CONNECT,
    ),
    WordRule(
        "spam",
        C.SPAM_REJECTED,
        (
            "spam",
            "spammy",
            "looks like spam",
            "unsolicited",
            "junk mail",
            "virus",
            "viruses",
            "malware",
            "content {filter|denied|rejected}",
            "antispam",
            "anti-spam",
            "message filtered",
            "quarantine",
            "quarantined",
            "nature of the content",
            "nevyžádaná",
            "nevyžádanou",
            "nevyzadana",
            "нежелательная",
            "нежелательной",
            "спам",
            "{вирус|вирусы|вирусом}",
            "uce",
            "phishing",
            "phish",
            "rejected due to content",
            "{refused|rejected|blocked} by [the] [virus|content|spam] scanner",
            "{blocked|rejected|refused} {due to|because of} its content",
            "bulk mail",
            "spamassassin",
            "spamprofiler",
            "unacceptable content",
            "bulk advertising",
            "banned content",
            "mail content",
            "recurrent pattern",
            "bulk email",
            "bulk e-mail",
            "potential security issue",
            "malicious",
            "infected",
            "suspicious {content|link|links|url|urls|attachment|attachments}",
            "{indésirable|indesirable|indésirables|indesirables}",
            "pourriel",
            "no deseado",
            "indesiderata",
            "indesejada",
            "{niechciana|niechcianą}",
            "ongewenste",
            "垃圾邮件",
            "dt spm",
        ),
    ),
    WordRule(
        "verification_pending",
        C.MAILBOX_UNAVAILABLE,
        ("unverified address", "address verification in progress", "verification in progress"),
    ),
    WordRule(
        "extension_disabled",
        C.NOT_IMPLEMENTED,
        (
            "{smtputf8|8bitmime|binarymime|pipelining|chunking|bdat|vrfy|expn|etrn|dsn|size"
            "|requiretls} [is|has been] {disabled|not enabled|not available}",
            "{authentication|auth} not {enabled|available|supported|allowed}",
        ),
    ),
    WordRule(
        "relay_denied",
        C.RELAY_DENIED,
        (
            "{relay|relaying} [access] [is] {denied|prohibited}",
            "{relay|relaying} [is] not {permitted|allowed}",
            "relaying {requires|required}",
            "relaying {through|via} this",
            "no {relay|relaying} [is] {permitted|allowed}",
            "unable to relay",
            "not {permitted|allowed|configured} to [let] [you] relay",
            "open relay",
            "as a relay",
            "list of allowed {hosts|rcpthosts}",
            "allowed rcpthosts",
            "denies relay",
            "unauthorized relay",
            "credentials for relay",
            "mail relay denied",
            "we do not relay",
            "insecure mail relay",
            "not allowed to relay",
            "relay through this machine",
            "{relay|relaying} disabled",
            "relay operation {rejected|denied|refused}",
            "{relay|relaying|relais|relayage} {verweigert|refusé|interdit|denegado|negado|negato}",
            "{relay|relaying} nicht {erlaubt|gestattet}",
            "{relay|relaying} {není|neni|nie jest} {povolen|povoleno|dozwolony|dozwolone}",
            "{relay|relaying} {no|não|nao|non} {permitido|consentito}",
            "{пересылка|ретрансляция|релей} {запрещена|запрещено|запрещен}",
        ),
    ),
    WordRule(
        # Line endings and characters SMTP does not allow (RFC 5321 2.3.8, 4.1.1.4): a
        # malformed transmission, not a policy about the content.
        "transmission_syntax",
        C.SYNTAX_ERROR,
        (
            "stray {linefeeds|linefeed}",
            "bare {lf|lfs|linefeed|linefeeds|line feed|cr}",
            "invalid characters",
        ),
    ),
    WordRule(
        "user_not_local",
        C.USER_NOT_LOCAL,
        (
            "user [is] not local",
            "not local please try",
            "no longer on [this|the] server",
        ),
        PERMANENT,
    ),
    WordRule(
        "mailbox_disabled",
        C.MAILBOX_DISABLED,
        (
            "disabled",
            "deactivated",
            "suspended",
            "discontinued",
            "inactive",
            "{mailbox|account|user} [is|was] {closed|locked|blocked}",
            "no longer valid",
            "recipient account is blocked",
            "{account|mailbox|user} [is] {not authorized|not allowed|not permitted|isn t allowed}"
            " to receive",
            "account isblocked",
            "banned recipient",
            "archived recipient",
            "destinataire {archivee|archivée}",
            "compte du destinataire est {bloque|bloqué}",
            "policy rejection on the target address",
            "deaktiviert",
            "gesperrt",
            "no longer accepts mail",
            "{temporary|temporarily} locked",
            "frozen",
            "suspend the service",
            "{désactivé|désactivée|desactive|desactivee|suspendu|suspendue}",
            "{desactivada|suspendida|deshabilitada|desativada|suspensa}",
            "{disattivata|disattivato|sospesa|sospeso}",
            "{zablokowane|zawieszone|zablokowana|zawieszona}",
            "{zablokována|zablokovana|deaktivována|deaktivovana}",
            "{ящик|аккаунт|пользователь|адрес} {заблокирован|отключен}",
            "已停用",
            "已冻结",
            "被冻结",
            "已被锁定",
        ),
        ANY_CLASS,
        NOT_MAIL,
    ),
    WordRule(
        "mailbox_unknown",
        C.MAILBOX_UNKNOWN,
        (
            "{user|username} [is] unknown",
            "unknown {user|recipient|mailbox|alias|address}",
            "unknown local {part|user|recipient|mailbox}",
            "unknown or illegal {alias|user|recipient}",
            "recipient [e mail|email] {address|adress} unknown",
            "not in [the] recipient list",
            "unknown {adress|recipient address}",
            "no such {user|mailbox|recipient|account|person|address}",
            "user {not found|doesn't exist|does not exist}",
            "{mailbox|account|recipient|addressee} {not found|unknown}",
            "{account|mailbox|address|user} {does not exist|doesn't exist}",
            "you tried to reach does not exist",
            "trying to reach {doesn't|does not} exist",
            "no mailbox",
            "invalid {recipient|mailbox|user}",
            "{recipient|mailbox|user|addressee} [is] invalid",
            "recipient {verification|verify} failed",
            "not a valid {user|mailbox|recipient}",
            "unrouteable address",
            "not listed in",
            "this user doesn't have a",
            "bad destination mailbox",
            "recipient rejected",
            "recipient address rejected: access denied",
            "destinataire {invalide|inconnu}",
            "utilisateur inconnu",
            "n'existe pas",
            "nicht bekannt",
            "existiert nicht",
            "unbekannt",
            "neexistuje",
            "neexistující",
            "не существует",
            "нет такого",
            "usuario desconocido",
            "no existe",
            "utente sconosciuto",
            "nie istnieje",
            "hasn't got the service",
            "not our customer",
            "{recipient|email|e-mail|address|mailbox|user} {does not exist|doesn't exist}",
            "address unknown",
            "unknown {email|e-mail} [address]",
            "{email|e-mail} address [is] unknown",
            "not a known user",
            "does not exist here",
            "no such user here",
            "marked as invalid",
            "address not present in directory",
            "can't accept user",
            "destination addresses were unknown",
            "email address could not be found",
            "is not an active address",
            "mailbox invalid",
            "mailbox not present",
            "no account by that name",
            "nessun utente simile",
            "no mail box available",
            "recipient address rejected: invalid user",
            "userunknown",
            "recipient not exist",
            "badrcptto",
            "envelope recipient has been denied",
            "email name is not found",
            "no one at this address",
            "validrcptto",
            "badrecipientto",
            "user not exist",
            "user not known",
            "unknown virtual user",
            "non existent user",
            "nonexistent user",
            "not [a] user of this server",
            "no {correct|valid} recipients",
            "{don't|doesn't} exists",
            "{recipnotfound|exrecipnotfound|recipientnotfound}",
            "{account|mailbox|address|user} [has] [been] {deleted|removed}",
            "{address|email address|e-mail address} not found",
            "{recipient|address|user|mailbox} [is] not valid",
            "{nonexistent|non-existent} {address|mailbox|recipient|account}",
            "undeliverable address",
            "{address|recipient|mailbox|user|account} {couldn't|could not|cannot} be found",
            "you entered {couldn't|could not} be found",
            "{is|are} not exist",
            "{usuario|destinatario|buzón|buzon|cuenta} no {encontrado|encontrada}",
            "{utilisateur|destinataire|adresse} non {trouvé|trouvée|trouve|trouvee}",
            "{utente|destinatario|indirizzo} non trovato",
            "{usuário|destinatário|conta|endereço} {não|nao} {encontrado|encontrada}",
            "{mailbox|adresse} nicht gefunden",
            "{gebruiker|ontvanger|adres} niet gevonden",
            "nie znaleziono {użytkownika|odbiorcy|adresata}",
            "{uživatel|uzivatel|příjemce|prijemce} {nenalezen|nebyl nalezen}",
            "{schránka|schranka} {nenalezena|nebyla nalezena}",
            "unbekannter {empfänger|benutzer|nutzer}",
            "{postfach|mailbox|empfänger|benutzer|adresse|konto} nicht vorhanden",
            "nie ma takiego {użytkownika|adresu|odbiorcy|konta}",
            "ismeretlen {felhasználó|címzett}",
            "{utilizator|destinatar|adresa} {inexistent|inexistentă|inexistenta|necunoscut}",
            "adresse {email|e mail|mail|électronique|electronique} {inconnue|inexistante}",
            "宛先不明",
            "unbekannte {empfängeradresse|adresse|e mail adresse}",
            "{postfach|empfänger|benutzer|konto} nicht gefunden",
            "{ungültige|ungueltige} {empfängeradresse|empfaengeradresse}",
            "{adresse|boîte|boite|compte} [aux lettres] {inconnue|inconnu|introuvable}",
            "{adresse|boîte|boite|compte} [aux lettres] {inexistante|inexistant}",
            "{destinataire|utilisateur} introuvable",
            "{destinataire|utilisateur} {inexistant|inexistante}",
            "{destinatario|dirección|direccion|cuenta|buzón|buzon} {desconocido|desconocida}",
            "{destinatario|dirección|direccion|cuenta|buzón|buzon} inexistente",
            "usuario inexistente",
            "{usuário|usuario|utilizador|destinatário|conta|endereço} {desconhecido|inexistente}",
            "{usuário|usuario|destinatário|destinatario|conta|endereço|endereco} {não|nao} existe",
            "{utente|indirizzo|casella|destinatario} {inesistente|sconosciuto}",
            "{utente|indirizzo|casella|destinatario} non esiste",
            "{onbekende|ongeldige} {gebruiker|ontvanger}",
            "{gebruiker|ontvanger|adres} onbekend",
            "{gebruiker|adres|ontvanger|mailbox|e mailadres} bestaat niet",
            "nieznany {użytkownik|adres|odbiorca}",
            "{użytkownik|odbiorca} nieznany",
            "{neznámý|neznamy} {uživatel|uzivatel|příjemce|prijemce|adresát}",
            "{neznámá|neznama} adresa",
            "{neznámy|neznamy} {používateľ|pouzivatel|príjemca}",
            "{пользователь|получатель|адресат|ящик|адрес} не найден",
            "неизвестный {пользователь|адрес|получатель}",
            "несуществующий {адрес|пользователь|ящик|получатель}",
            "{користувач|адреса|скринька|отримувач} не існує",
            "{користувача|адресата|отримувача} не знайдено",
            "{kullanıcı|kullanici|alıcı|alici} bulunamadı",
            "{okänd|ukendt|ukjent} {mottagare|modtager|mottaker|användare|bruger|bruker}",
            "{användaren|adressen|mottagaren} finns inte",
            "{brugeren|adressen|modtageren} findes ikke",
            "{brukeren|adressen|mottakeren} finnes ikke",
            "用户不存在",
            "收件人不存在",
            "邮箱不存在",
            "帐户不存在",
            "账户不存在",
            "地址不存在",
            "用戶不存在",
        ),
        ANY_CLASS,
        NOT_AUTH,
    ),
)


# --------------------------------------------------------------------------- 3. weak words

WEAK_WORDS: tuple[WordRule, ...] = (
    WordRule(
        "not_implemented",
        C.NOT_IMPLEMENTED,
        (
            "not implemented",
            "unimplemented",
            "unsupported",
            "not supported",
            "{unrecognized|unrecognised} authentication",
            "{unknown|unsupported} {authentication|auth} {method|mechanism|type}",
        ),
    ),
    WordRule(
        "auth_temporary",
        C.AUTH_TEMPORARY,
        (
            "auth",
            "authentication",
            "authenticate",
            "login",
            "log in",
            "credential",
            "credentials",
            "password",
        ),
        TRANSIENT,
        AT_AUTH,
    ),
    WordRule(
        "auth_failed",
        C.AUTH_FAILED,
        (
            "authentication {failed|unsuccessful}",
            "authentication credentials invalid",
            "{invalid|bad} credentials",
            "username and password",
            "password",
            "incorrect authentication",
            "{auth|authentication} {error|aborted|failure}",
            "failed to authenticate",
            "log in",
            "login",
            "authentification invalide",
            "application-specific",
        ),
        PERMANENT,
        AT_AUTH,
    ),
    WordRule(
        "auth_refused",
        C.AUTH_FAILED,
        ("denied", "refused", "rejected", "not allowed", "failed"),
        PERMANENT,
        frozenset({P.AUTH}),  # a refusal in answer to AUTH is a refused login
    ),
    WordRule(
        # A login the server no longer takes, whatever command it answers.
        "credentials_expired",
        C.AUTH_FAILED,
        ("credentials no longer valid", "{re authenticate|reauthenticate}"),
    ),
    WordRule(
        "auth_required",
        C.AUTH_REQUIRED,
        (
            "{authentication|auth} [is] required",
            "authentification requise",
            "must authenticate",
            "must be authenticated",
            "not authenticated",
            "unauthenticated commands",
            "smtp authentication",
            "{login|log in} first",
            # POP-before-SMTP (Japanese ISPs): "Please receive your mail before sending"
            "receive your mail before sending",
            "pop before smtp",
            "unauthenticated {senders|users|clients} [are] not {allowed|permitted|accepted}",
            "not logged in",
        ),
    ),
    WordRule(
        "host_unknown",
        C.HOST_UNKNOWN,
        (
            "host unknown",
            "host not found",
            "domain not found",
            "no such domain",
            "unknown domain",
            "domain [name] {does not|doesn't} exist",
            "nonexistent domain",
            "find the recipient domain",
            "nxdomain",
            "dns {resolving|resolution} {error|failure|failed}",
            "no mx",
            "domain name not found",
            "host or domain name not found",
            "domain {could not|couldn't|cannot} be found",
            "{домен|domain|domaine|dominio} {не найден|nicht gefunden|introuvable|inexistant}",
            "{dominio|domínio} {no encontrado|non trovato|não encontrado|inexistente}",
        ),
        ANY_CLASS,
        NOT_MAIL,
    ),
    WordRule(
        "sender_domain_at_mail",
        C.BAD_ADDRESS,
        (
            "no mx",
            "no mx servers",
            "domain not found",
            "host not found",
            "no such domain",
            # in answer to MAIL FROM, what does not exist is the sender (see recipient_gone)
            "{does not|doesn't|doesnt|no longer} exist",
            "not exist",
            "{домен|domain|domaine|dominio} {не найден|nicht gefunden|introuvable|inexistant}",
        ),
        ANY_CLASS,
        frozenset({P.MAIL}),  # in answer to MAIL FROM, a missing domain is the sender's
    ),
    WordRule(
        "bad_address",
        C.BAD_ADDRESS,
        (
            "invalid address",
            "address syntax",
            "malformed address",
            "not a valid rfc 5321 address",
            "must contain a domain",
            "invalid {sender|mailfrom}",
            "invalid mail from",
            "mail from invalid",
            "emetteur invalide",
            "domain not found",
            "single label {domain|domains}",
            "reserved by rfc",
            "mailbox name not allowed",
            "need fully qualified address",
            "fully qualified address",
            "illegal address",
            "sender domain must exist",
            "missing domain",
            "invalid domain [name]",
            "domain name required",
            "address required",
            "{address|sender|recipient} is required",
            "{sender|sender address|address} must be specified",
            "fully qualified",
            "bad {address|recipient address|sender address}",
            "improper [recipient|sender] address",
            "must be a valid domain",
            # Exim's parser: 'malformed address: ... "@" or "." expected after "x"'
            "expected after",
            "reserved domain",
            "unknown tld",
            "unroutable sender address",
        ),
        ANY_CLASS,
        NOT_CONNECT,
    ),
    WordRule(
        # Postfix's prefix for any restriction that matched the sender: it names what was
        # refused, not why. Its status says why: 5.1.8 "Domain not found" (an address), 5.7.1
        # from an access map ("Sender address rejected: <the admin's reason>", a policy; see
        # BY_RULE_AND_SUBJECT). The reasons of the rule above come first.
        "sender_refused",
        C.BAD_ADDRESS,
        ("sender address rejected",),
        ANY_CLASS,
        NOT_CONNECT,
    ),
    WordRule(
        "recipient_gone",
        C.MAILBOX_UNKNOWN,
        (
            "{does not|doesn't|doesnt|did not|no longer} exist",
            "not exist",
            "no longer exists",
            "存在しません",
            "존재하지 {않습니다|않는|않음}",
        ),
        ANY_CLASS,
        frozenset({None, P.RCPT}),
    ),
    WordRule(
        "too_many_unrecognized",
        C.SYNTAX_ERROR,
        ("too many unrecognized commands", "protocol violation", "protocol error"),
    ),
    WordRule(
        "syntax_error",
        C.SYNTAX_ERROR,
        (
            "syntax",
            "invalid command",
            "{can't|cannot} decode",
            "base64",
            "must be enclosed",
            "argument",
            "arguments",
            "parse error",
            "parsing error",
            "{unable to|cannot|can t} parse",
        ),
    ),
    WordRule(
        "mailbox_unavailable",
        C.MAILBOX_UNAVAILABLE,
        (
            "mailbox [is] [temporarily] unavailable",
            "mailbox [is] not available",
            "account [is] [temporarily] unavailable",
        ),
        # Issue 2's seed list: a 450 "mailbox unavailable" is RFC 5321's busy mailbox, though
        # independent labellers read "450 4.2.1 Mailbox temporarily unavailable" as unavailable.
        PERMANENT,
    ),
    WordRule(
        "mailbox_unsure",
        C.MAILBOX_UNAVAILABLE,
        ("ambiguous",),
    ),
    WordRule(
        "loop_or_expired",
        C.OTHER,
        ("mail loop", "loop detected", "hop", "hops", "hop count", "looping"),
    ),
    WordRule(
        # A message the sending side kept retrying until it expired: the destination stayed
        # unavailable (Exchange's "4.4.7 QUEUE.Expired", "5.4.300 Message expired").
        "expired",
        C.SERVICE_UNAVAILABLE,
        ("message expired", "queue expired", "unable to deliver in"),
    ),
    WordRule(
        "server_error",
        C.SERVER_ERROR,
        (
            "local error",
            "temporary [system|server|local] {problem|error|failure}",
            "internal [server] error",
            "system error",
            "out of memory",
            "queue unavailable",
            "unable to queue",
            "database",
            "agent busy",
            "ended early",
            "trouble",
            "incorrectly configured",
            "temporarily rejected",
        ),
    ),
    WordRule(
        "connect_refused",
        C.POLICY_REJECTED,
        (
            # ("blocked" at the greeting is a block of the host: greeting_block, above)
            "denied",
            "refused",
            "refuse",
            "rejected",
            "reject",
            "not allowed",
            "policy",
            "policies",
            "forbidden",
            "restricted",
            "not authorised",
            "transport rule",
            "mail flow rule",
            "denial",
            "closed mailing list",
            "members only list",
            "not subscribed to this group",
            "mass mailer",
        ),
        ANY_CLASS,
        AT_CONNECT,
    ),
    WordRule(
        "service_unavailable",
        C.SERVICE_UNAVAILABLE,
        (
            "service [is] not available",
            "service [is] [temporarily] unavailable",
            "not accepting {connections|network|mail}",
            "closing {connection|transmission}",
            "try reconnecting",
            "connection {expired|dropped|reset}",
            "connection timed out",
            "timeout",
            "timed out",
            "server [is] [too] busy",
            "temporarily unavailable",
            "service {refused|refuse}",
            "unable to process connection",
            "not ready",
            "shutting down",
            "too much load",
            "overloaded",
            "load [is] too high",
            "session closed",
            "vorübergehend nicht verfügbar",
            "temporairement indisponible",
            "temporalmente no disponible",
            "temporaneamente non disponibile",
            "temporariamente indisponível",
            "{dočasně|docasne} {nedostupná|nedostupný|nedostupné|nedostupna|nedostupny}",
            "временно {недоступен|недоступна|недоступно|недоступны}",
        ),
        # RFC 5321's 421. On a 5xx they are Postfix's prefix of a block ("Service
        # unavailable; Client host [...] blocked"), which says nothing of its own.
        TRANSIENT,
    ),
    WordRule(
        "greylist_soft",
        C.GREYLISTED,
        (
            "try [again] later",
            "please try later",
            "retry later",
            "versuchen sie es später [erneut|nochmal|noch einmal]",
            "{essayer|réessayer|reessayer} plus tard",
            "{inténtelo|intentelo|intente|intentar} [de nuevo] más tarde",
            "riprovare più tardi",
            "tente novamente mais tarde",
            "zkuste [to] [znovu] později",
            "spróbuj [ponownie] później",
            "попробуйте [еще|ещё] [раз] позже",
        ),
        TRANSIENT,
        # Content filters (rspamd, rmilter, Exim's DATA ACL) greylist after the final dot too.
        frozenset({None, P.MAIL, P.RCPT, P.DATA, P.MESSAGE}),
    ),
    WordRule(
        "policy",
        C.POLICY_REJECTED,
        (
            "policy",
            "policies",
            "not allowed",
            "{isn t|aren t} allowed",
            "prohibited",
            "not permitted",
            "not accepted",
            "refused",
            "denied",
            "blocked",
            "rejected by",
            "administrative",
            "spoof",
            "spoofed",
            "spoofing",
            "not authorized",
            "rejecting",
            # The same refusals in the languages servers answer in (the weak rule: any
            # better reason found earlier still decides).
            "{abgelehnt|verweigert|blockiert|unzulässig}",
            "nicht {erlaubt|gestattet|zugelassen}",
            "{refusé|refusée|rejeté|rejetée|rejete|rejetee|interdit|interdite|bloqué|bloquée}",
            "{non|pas} {autorisé|autorisée|autorise|autorisee}",
            "{rechazado|rechazada|denegado|denegada|bloqueado|bloqueada|prohibido|prohibida}",
            "no {permitido|permitida|autorizado|autorizada}",
            "{rifiutato|rifiutata|respinto|respinta|negato|negata|bloccato|bloccata|vietato}",
            "non {consentito|consentita|permesso|autorizzato}",
            "{rejeitado|rejeitada|recusado|recusada|negado|negada|proibido}",
            "{não|nao} {permitido|autorizado}",
            "{odmítnuta|odmítnut|odmítnuto|odmitnuta|odmitnut|odmitnuto|zamítnuta|zamítnut|zamítnuto}",
            "{zakázáno|zakazano|zakázán}",
            "{není|neni} {povolen|povoleno|povolena}",
            "{odrzucona|odrzucony|odrzucone|odmowa|niedozwolone|zabronione}",
            "{отклонено|отклонена|отклонен|отклонён|запрещено|запрещена|запрещен|отказано}",
            "{заблокирован|заблокировано|заблокирована}",
            "{geweigerd|afgewezen|geblokkeerd}",
            "niet toegestaan",
        ),
    ),
)

#: Every word rule, strong first, in the order of precedence.
WORDS: tuple[WordRule, ...] = STRONG_WORDS + WEAK_WORDS


# --------------------------------------------------------------------------- 2. enhanced codes

#: (subject, detail) -> (category, reply codes it applies to or None for any). The registry's
#: catch-all details (X.0.0, X.1.0, X.2.0, X.3.0, X.4.0, X.5.0, X.5.1, X.6.0, X.7.0, X.7.1)
#: are left to the words and the basic code. Detail meanings: RFC 3463 unless noted.
_AUTH_CODES = frozenset({454, 500, 501, 530, 534, 535, 538})
_PERMANENT_CODES = frozenset(range(500, 600))
_TRANSIENT_CODES = frozenset(range(400, 500))
_NOT_551 = frozenset(range(200, 600)) - {551}
# Where the basic code itself is precise (502, 503, 504, 53x), a syntax detail does not override.
_SYNTAX_CODES = frozenset({451, 500, 501, 550, 553, 554, 555})
ENHANCED: MappingProxyType[tuple[int, int], tuple[C, frozenset[int] | None]] = MappingProxyType(
    {
        # Bad destination mailbox address. Not on a 551: RFC 5321's "User not local; please
        # try <forward-path>" names where the user is (and at RCPT, CODE_OVER_WORDS keeps it
        # over words saying unknown).
        (1, 1): (C.MAILBOX_UNKNOWN, _NOT_551),
        (1, 2): (C.HOST_UNKNOWN, None),  # Bad destination system address
        (1, 3): (C.BAD_ADDRESS, None),  # Bad destination mailbox address syntax
        (1, 4): (C.MAILBOX_UNAVAILABLE, None),  # Destination mailbox address ambiguous
        # Destination mailbox has moved, no forwarding address: the user is no longer here
        # (UserNotLocal's "ask the recipient for their new address").
        (1, 6): (C.USER_NOT_LOCAL, None),
        (1, 7): (C.BAD_ADDRESS, None),  # Bad sender's mailbox address syntax
        (1, 8): (C.BAD_ADDRESS, None),  # Bad sender's system address
        (1, 10): (C.DOMAIN_NOT_ACCEPTING, None),  # Recipient address has null MX (RFC 7505)
        # Mailbox disabled, not accepting messages. Only on a 5xx: a transient "disabled"
        # mailbox is a busy or throttled one (450 4.2.1 "Mailbox busy", Gmail's 4.2.1 for
        # "receiving mail too quickly"), left to the words and then to the subject (4, 2).
        (2, 1): (C.MAILBOX_DISABLED, _PERMANENT_CODES),
        (2, 2): (C.MAILBOX_FULL, None),  # Mailbox full
        (2, 3): (C.MESSAGE_TOO_LARGE, None),  # Message length exceeds administrative limit
        (3, 1): (C.INSUFFICIENT_STORAGE, None),  # Mail system full
        (3, 2): (C.SERVICE_UNAVAILABLE, None),  # System not accepting network messages
        (3, 3): (C.NOT_IMPLEMENTED, None),  # System not capable of selected features
        (3, 4): (C.MESSAGE_TOO_LARGE, None),  # Message too big for system
        (3, 5): (C.SERVER_ERROR, None),  # System incorrectly configured
        (4, 1): (C.SERVICE_UNAVAILABLE, _TRANSIENT_CODES),  # No answer from host
        (4, 2): (C.SERVICE_UNAVAILABLE, None),  # Bad connection
        (4, 3): (C.SERVER_ERROR, None),  # Directory server failure
        (4, 4): (C.HOST_UNKNOWN, None),  # Unable to route
        (4, 5): (C.SERVICE_UNAVAILABLE, None),  # Mail system congestion
        (4, 6): (C.OTHER, None),  # Routing loop detected
        (4, 7): (C.SERVICE_UNAVAILABLE, None),  # Delivery time expired: never reachable
        (5, 2): (C.SYNTAX_ERROR, _SYNTAX_CODES),  # Syntax error
        (5, 3): (C.TOO_MANY_RECIPIENTS, None),  # Too many recipients
        (5, 4): (C.SYNTAX_ERROR, _SYNTAX_CODES),  # Invalid command arguments
        (5, 5): (C.NOT_IMPLEMENTED, None),  # Wrong protocol version
        (5, 6): (C.SYNTAX_ERROR, None),  # Authentication exchange line too long (RFC 4954)
        (6, 1): (C.POLICY_REJECTED, None),  # Media not supported
        (6, 7): (C.BAD_ADDRESS, None),  # Non-ASCII addresses not permitted (RFC 6531)
        (7, 2): (C.POLICY_REJECTED, None),  # Mailing list expansion prohibited
        (7, 4): (C.NOT_IMPLEMENTED, None),  # Security features not supported
        (7, 8): (C.AUTH_FAILED, _AUTH_CODES),  # Authentication credentials invalid (RFC 4954)
        (7, 9): (C.AUTH_FAILED, _AUTH_CODES),  # Authentication mechanism too weak (RFC 4954)
        (7, 10): (C.TLS_REQUIRED, None),  # Encryption needed (RFC 5248)
        (7, 11): (C.TLS_REQUIRED, frozenset({454, 530, 538, 554})),  # Encryption required
        (7, 12): (C.AUTH_FAILED, _AUTH_CODES),  # A password transition is needed (RFC 4954)
        (7, 14): (C.AUTH_FAILED, _AUTH_CODES),  # Trust relationship required (RFC 5248)
        (7, 17): (C.MAILBOX_UNAVAILABLE, None),  # Mailbox owner has changed (RFC 7293)
        (7, 18): (C.MAILBOX_UNAVAILABLE, None),  # Domain owner has changed (RFC 7293)
        (7, 20): (C.SENDER_AUTH_FAILED, None),  # No passing DKIM signature (RFC 7372)
        (7, 21): (C.SENDER_AUTH_FAILED, None),  # No acceptable DKIM signature (RFC 7372)
        (7, 22): (C.SENDER_AUTH_FAILED, None),  # No valid author-matched DKIM (RFC 7372)
        (7, 23): (C.SENDER_AUTH_FAILED, None),  # SPF validation failed (RFC 7372)
        (7, 24): (C.SENDER_AUTH_FAILED, None),  # SPF validation error (RFC 7372)
        (7, 25): (C.POLICY_REJECTED, None),  # Reverse DNS validation failed (RFC 7372)
        (7, 26): (C.SENDER_AUTH_FAILED, None),  # Multiple authentication checks failed
        (7, 27): (C.BAD_ADDRESS, None),  # Sender address has null MX (RFC 7505)
        (7, 28): (C.RATE_LIMITED, None),  # Mail flood detected (IANA registry)
        (7, 29): (C.SENDER_AUTH_FAILED, None),  # ARC validation failure (RFC 8617)
        (7, 30): (C.TLS_REQUIRED, None),  # REQUIRETLS support required (RFC 8689)
    }
)

#: Detail ranges one large provider documents outside the registry:
#: (class, subject, first detail, last detail) -> category.
VENDOR_ENHANCED: tuple[tuple[int, int, int, int, C], ...] = (
    # Exchange Online: "451 4.7.500-699 Access denied, please try again later" and
    # "4.7.850-899": the sending IP is throttled while its traffic is evaluated.
    (4, 7, 500, 699, C.RATE_LIMITED),
    (4, 7, 850, 899, C.RATE_LIMITED),
)

#: X.7.1 "Delivery not authorized" on a 450/451 is how greylisting servers answer.
GREYLIST_ENHANCED = "4.7.1"

#: Word rules whose reason the enhanced subject settles: (rule name, subject) -> category,
#: for strong and weak rules alike (a step-2 detail still comes first).
#: A bare "quota exceeded" is a mailbox's storage quota, but with a security or policy
#: status (X.7.x) it is the sender's sending quota (Google's "550 5.7.1 Email quota
#: exceeded"); a mailbox's is X.2.2 (RFC 3463).
#: "Sender address rejected" only names what was refused. RFC 3463 gives addressing
#: X.1.x and security or policy X.7.x: with X.7.x the sender was refused by policy.
#: Postfix's access maps answer "554 5.7.1 <x@y>: Sender address rejected: <the admin's
#: reason>" (access(5), access_map_reject_code, default 5.7.1 status). Its address checks
#: send X.1.x (reject_unknown_sender_domain: "4.1.8/5.1.8 ... Domain not found").
BY_RULE_AND_SUBJECT: MappingProxyType[tuple[str, int], C] = MappingProxyType(
    {
        ("quota_exceeded", 7): C.RATE_LIMITED,
        ("sender_refused", 7): C.POLICY_REJECTED,
    }
)


# --------------------------------------------------------------------------- names, not reasons

#: Host names and URLs in a reply are names ("mx.example.invalid", "https://.../?p=Blocked"),
#: and are taken out before it is read, like e-mail addresses. A host name is dotted labels
#: ending in a common generic top-level domain or a two-letter country code; with only two
#: labels, not a code that is also an English word (so that "full.No more mail", a sentence
#: missing its space, keeps its words). Exchange's dotted tokens ("RESOLVER.ADR.RecipNotFound")
#: end in no such domain and are kept.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_GENERIC_TLDS = (
    "com|net|org|edu|gov|mil|int|arpa|info|biz|name|pro|mobi|asia|xyz|io"
    "|invalid|test|example|localhost|local|lan|internal"
)
_WORD_LIKE_CC = "no|in|is|it|at|be|to|we|my|me|do|so|us|as|an|am|by|go|he|if|of|on|or|up|hi|ok"
_PATH = r"""(?:[/?#][^\s<>"'()\[\]]*)?"""
URL_OR_HOST = re.compile(
    r"""(?:https?|ftp)://[^\s<>"'()\[\]]+|www\.[^\s<>"'()\[\]]+"""
    rf"|(?<![\w.@-])(?:(?:{_LABEL}\.){{2,}}(?:{_GENERIC_TLDS}|[a-z]{{2}})"
    rf"|{_LABEL}\.(?:{_GENERIC_TLDS}|(?!(?:{_WORD_LIKE_CC})(?![a-z]))[a-z]{{2}}))"
    rf"(?![\w-]){_PATH}"
)
#: The words of a host name or URL that are kept: they name a DNS block list or a reputation
#: service, and naming it is the server's reason ("blocked using zen.spamhaus.org").
LIST_NAMES = frozenset(
    {
        "spamhaus", "spamcop", "barracuda", "barracudacentral", "sorbs", "uceprotect",
        "spamrats", "psbl", "mailspike", "abuseat", "invaluement", "abusix", "backscatterer",
        "cloudmark", "senderscore", "senderbase", "talosintelligence", "dnsbl", "rbl",
        "blocklist", "blacklist", "surbl", "uribl", "ipcheck", "proofpoint", "ordb", "njabl",
        "dsbl", "rhsbl",
    }
)  # fmt: skip
_NAME_WORD = re.compile(r"[a-z0-9]+")
_DOT_LETTER = re.compile(r"\.[a-z]")
#: The runs of an ASCII word that _NAME_WORD finds, cut in C: a byte table keeps a-z and 0-9.
_NAME_WORD_BYTES = bytes(b if 0x61 <= b <= 0x7A or 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LIST_NAMES_BYTES = frozenset(name.encode() for name in LIST_NAMES)


def _list_names_in(found: re.Match[str]) -> str:
    kept = [word for word in _NAME_WORD.findall(found.group()) if word in LIST_NAMES]
    return " {} ".format(" ".join(kept)) if kept else " "


def _without_names_in(word: str) -> str:
    """One word (no white space) with its host names and URLs taken out."""
    if _DOT_LETTER.search(word) is None:
        return word
    # A list name in a name is one of the word's runs of letters and digits: in a word with
    # none (most), each name found goes whole, a plain replacement without a call per name.
    if word.isascii() and _LIST_NAMES_BYTES.isdisjoint(
        word.encode().translate(_NAME_WORD_BYTES).split()
    ):
        return URL_OR_HOST.sub(" ", word)
    return URL_OR_HOST.sub(_list_names_in, word)


def without_names(lowered: str) -> str:
    """A lower-cased text with its host names and URLs taken out, except the words in them
    that name a block list: ``"blocked using zen.spamhaus.org"`` -> ``"blocked using
    spamhaus "``."""
    # Every host name and URL has a dot followed by a letter; most replies have none (a dot
    # ends a sentence or sits inside "5.7.1"), and a search for one costs far less than the
    # full pattern. Names hold no white space, so only the words with such a dot are matched
    # (half the cost of matching the whole text); the words are joined by single spaces again,
    # which is how words_of would separate them anyway.
    if _DOT_LETTER.search(lowered) is None:
        return lowered
    return " ".join([_without_names_in(word) if "." in word else word for word in lowered.split()])


# --------------------------------------------------------------------------- 4. class + subject

#: Basic codes that say little by themselves; for these the enhanced class and subject refine.
GENERIC_CODES = frozenset({450, 451, 550, 553, 554})
#: Subjects that refine any basic code: content (6) and security or policy (7) say more than,
#: say, 552's "exceeded storage allocation" (a 552 5.7.0 is a policy refusal).
OVERRIDING_SUBJECTS = frozenset({6, 7})

ENHANCED_SUBJECT: MappingProxyType[tuple[int, int], C] = MappingProxyType(
    {
        (5, 1): C.BAD_ADDRESS,  # Addressing status
        (5, 2): C.MAILBOX_UNAVAILABLE,  # Mailbox status
        (4, 2): C.MAILBOX_BUSY,  # a transient mailbox status: RFC 5321's 450 "mailbox busy"
        (5, 3): C.SERVER_ERROR,  # Mail system status
        (4, 3): C.SERVER_ERROR,
        (5, 6): C.POLICY_REJECTED,  # Message content or media status
        (5, 7): C.POLICY_REJECTED,  # Security or policy status
    }
)


#: Phases where no mail address has been given yet (the greeting, EHLO): an addressing status
#: (X.1.x, RFC 3463) or a 553 "mailbox name not allowed" there cannot be about one, and is read
#: as the refusal of the client's name it is (like the word rules, see NOT_CONNECT).
NO_ADDRESS_PHASES: frozenset[P | None] = AT_CONNECT
ADDRESS_SUBJECT = 1

#: Where the phase says whose address an addressing status is about: a 550 answering RCPT TO
#: with an unspecific X.1.x ("550 5.1.0 Address rejected") refuses the recipient's mailbox.
#: Keyed by (phase, basic code, subject).
ENHANCED_SUBJECT_BY_PHASE: MappingProxyType[tuple[P, int, int], C] = MappingProxyType(
    {
        (P.RCPT, 550, 1): C.MAILBOX_UNKNOWN,
    }
)


# --------------------------------------------------------------------------- 5. basic code

#: RFC 5321 4.2.2/4.2.3, RFC 4954 (432, 454, 530, 534, 535, 538), RFC 7504 (521, 556).
BY_CODE: MappingProxyType[int, C] = MappingProxyType(
    {
        421: C.SERVICE_UNAVAILABLE,  # Service not available, closing transmission channel
        432: C.AUTH_REQUIRED,  # A password transition is needed (RFC 4954)
        450: C.MAILBOX_BUSY,  # Requested mail action not taken: mailbox unavailable (busy)
        451: C.SERVER_ERROR,  # Requested action aborted: local error in processing
        452: C.INSUFFICIENT_STORAGE,  # Requested action not taken: insufficient system storage
        454: C.AUTH_TEMPORARY,  # Temporary authentication failure (RFC 4954)
        455: C.NOT_IMPLEMENTED,  # Server unable to accommodate parameters
        500: C.SYNTAX_ERROR,  # Syntax error, command unrecognized
        501: C.SYNTAX_ERROR,  # Syntax error in parameters or arguments
        502: C.NOT_IMPLEMENTED,  # Command not implemented
        503: C.BAD_SEQUENCE,  # Bad sequence of commands
        504: C.NOT_IMPLEMENTED,  # Command parameter not implemented
        521: C.DOMAIN_NOT_ACCEPTING,  # Host does not accept mail (RFC 7504)
        530: C.AUTH_REQUIRED,  # Authentication required (RFC 4954)
        534: C.AUTH_FAILED,  # Authentication mechanism is too weak (RFC 4954)
        535: C.AUTH_FAILED,  # Authentication credentials invalid (RFC 4954)
        538: C.TLS_REQUIRED,  # Encryption required for requested mechanism (RFC 4954)
        550: C.MAILBOX_UNAVAILABLE,  # Requested action not taken: mailbox unavailable
        551: C.USER_NOT_LOCAL,  # User not local; please try <forward-path>
        552: C.STORAGE_EXCEEDED,  # Requested mail action aborted: exceeded storage allocation
        553: C.BAD_ADDRESS,  # Requested action not taken: mailbox name not allowed
        554: C.POLICY_REJECTED,  # Transaction failed / No SMTP service here
        555: C.NOT_IMPLEMENTED,  # MAIL FROM/RCPT TO parameters not recognized or implemented
        556: C.DOMAIN_NOT_ACCEPTING,  # Domain does not accept mail (RFC 7504)
    }
)

#: Basic codes narrower than some of the server's words (RFC 5321 4.2.2): code -> (phases
#: where it applies, None for any; its category; the categories of words it overrides).
#: 551 is "User not local; please try <forward-path>": a server that answers 551 with "user
#: unknown" says the user is not hosted here, whatever its words (issue 2's seed list maps
#: 551 to UserNotLocal). 501 answering EHLO is "syntax error in parameters": the only
#: parameter is the client's name, malformed, not refused by policy ("501 EHLO Invalid
#: domain address"). 503 is "bad sequence of commands", whatever protocol words it uses.
CODE_OVER_WORDS: MappingProxyType[int, tuple[frozenset[P | None] | None, C, frozenset[C]]] = (
    MappingProxyType(
        {
            551: (
                frozenset({None, P.RCPT}),
                C.USER_NOT_LOCAL,
                frozenset({C.MAILBOX_UNKNOWN, C.MAILBOX_UNAVAILABLE}),
            ),
            501: (
                frozenset({P.EHLO}),
                C.SYNTAX_ERROR,
                frozenset({C.POLICY_REJECTED, C.BAD_ADDRESS}),
            ),
            # 503 is "bad sequence of commands": a "protocol violation" it names is one.
            503: (None, C.BAD_SEQUENCE, frozenset({C.SYNTAX_ERROR})),
        }
    )
)

#: Codes RFC 4954 defines only as answers to AUTH (534 mechanism too weak, 535 credentials
#: invalid, 538 encryption required for the mechanism): when the phase is not known, such a
#: reply is read as answering AUTH ("535 5.7.139 Authentication unsuccessful,
#: SmtpClientAuthentication is disabled" is a refused login, not a disabled mailbox). Not 432:
#: Exchange sends it for its store driver ("432 4.3.2 STOREDRV.Deliver; recipient thread limit
#: exceeded"), not only for RFC 4954's password transition.
AUTH_ONLY_CODES = frozenset({534, 535, 538})

#: Where the phase changes what a basic code means.
BY_PHASE_AND_CODE: MappingProxyType[tuple[P, int], C] = MappingProxyType(
    {
        (P.AUTH, 450): C.AUTH_TEMPORARY,  # a transient failure while logging in
        (P.AUTH, 451): C.AUTH_TEMPORARY,
        (P.AUTH, 550): C.AUTH_FAILED,  # some servers refuse a login with 550
        (P.AUTH, 554): C.AUTH_FAILED,
        (P.STARTTLS, 454): C.SERVICE_UNAVAILABLE,  # TLS not available (RFC 3207)
        (P.MAIL, 550): C.POLICY_REJECTED,  # the sender was refused, not a mailbox
        (P.MAIL, 554): C.POLICY_REJECTED,
        (P.CONNECT, 554): C.SERVICE_UNAVAILABLE,  # "No SMTP service here" (RFC 5321 3.1)
        (P.CONNECT, 550): C.POLICY_REJECTED,
        # RFC 5321 3.1 answers a refused greeting with 421; a 451 there means the same.
        (P.CONNECT, 451): C.SERVICE_UNAVAILABLE,
        # A 550 is "mailbox unavailable" only where a mailbox is named (RCPT); in answer to
        # EHLO, DATA or the message itself it is RFC 5321 4.2.3's "command rejected for
        # policy reasons" (Haraka's helo checks, a refused bounce, "550 message rejected").
        (P.EHLO, 550): C.POLICY_REJECTED,
        # 553 is "mailbox name not allowed", but no mailbox is named at the greeting or EHLO.
        (P.CONNECT, 553): C.POLICY_REJECTED,
        (P.EHLO, 553): C.POLICY_REJECTED,
        (P.DATA, 550): C.POLICY_REJECTED,
        # Nor is a 553 ("mailbox name not allowed") about a mailbox after DATA.
        (P.DATA, 553): C.POLICY_REJECTED,
        (P.MESSAGE, 553): C.POLICY_REJECTED,
        (P.MESSAGE, 550): C.POLICY_REJECTED,
    }
)


# --------------------------------------------------------------------------- one scan

#: Precedence of each rule (lower first).
RANK: MappingProxyType[str, int] = MappingProxyType({r.name: i for i, r in enumerate(WORDS)})
#: Ranks below this are strong rules (step 1); the weak rules follow them in :data:`WORDS`.
STRONG_RANKS = len(STRONG_WORDS)
#: The rank :meth:`PhraseIndex.best_rank` returns when no rule's phrase occurs.
NO_RANK = len(WORDS)


def applies(rule: WordRule, reply_class: int, phase: P | None) -> bool:
    """Whether ``rule`` speaks about replies of this class (4 or 5) in this phase."""
    return reply_class in rule.classes and (rule.phases is None or phase in rule.phases)


@functools.cache
def index(reply_class: int, phase: P | None) -> PhraseIndex:
    """The phrases of the rules that apply to this reply class and phase, by rank (built once,
    on first use; :mod:`smtp_guard._wordindex` files them for lookup)."""
    built = PhraseIndex.build(
        (
            (RANK[rule.name], phrase)
            for rule in WORDS
            if applies(rule, reply_class, phase)
            for phrase in rule.phrases
        ),
        NO_RANK,
    )
    INDEXES[reply_class, phase] = built
    return built


#: The indexes built so far, by (reply class, phase): one dictionary lookup on the hot path.
INDEXES: dict[tuple[int, P | None], PhraseIndex] = {}


def best_rule(words: list[bytes], reply_class: int, phase: P | None) -> WordRule | None:
    """The rule of highest precedence one of whose phrases occurs in ``words``."""
    best = (INDEXES.get((reply_class, phase)) or index(reply_class, phase)).best_rank(words)
    return WORDS[best] if best < NO_RANK else None
