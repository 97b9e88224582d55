"""One actionable English sentence per category, for the developer or operator.

These are the ``hint`` of every classification and error. User-facing, localized texts
for people using a mail app live in the gettext catalogs (see :func:`smtp_guard.explain`).
"""

from __future__ import annotations

from types import MappingProxyType

from smtp_guard._enums import Category

HINTS: MappingProxyType[Category, str] = MappingProxyType(
    {
        Category.AUTH_REQUIRED: (
            "Log in before sending: pass username and password (or an OAuth token) for this server."
        ),
        Category.AUTH_FAILED: (
            "Check the username and password (or app password/token); do not retry with the "
            "same credentials."
        ),
        Category.AUTH_TEMPORARY: (
            "The server could not check the credentials right now; retry later with the same "
            "credentials."
        ),
        Category.TLS_REQUIRED: (
            "Enable encryption: use start_tls=True (port 587) or use_tls=True (port 465)."
        ),
        Category.MAILBOX_UNAVAILABLE: (
            "The recipient's mailbox cannot take mail now; check the address or ask the "
            "recipient for another one."
        ),
        Category.MAILBOX_UNKNOWN: (
            "The address does not exist; fix the spelling or remove it from your list."
        ),
        Category.MAILBOX_DISABLED: (
            "The mailbox is disabled or closed; remove the address or ask for a new one."
        ),
        Category.MAILBOX_BUSY: "The mailbox is busy or locked; retry later.",
        Category.USER_NOT_LOCAL: (
            "The user is not hosted here; resend to err.forward_path if the server named one, "
            "else ask the recipient for their new address."
        ),
        Category.STORAGE_EXCEEDED: (
            "The message exceeds a storage limit; send a smaller message or try again later."
        ),
        Category.MAILBOX_FULL: (
            "The recipient's mailbox is over quota; they must free space before mail can arrive."
        ),
        Category.MESSAGE_TOO_LARGE: (
            "The message is over the server's size limit; shrink attachments or send a link."
        ),
        Category.INSUFFICIENT_STORAGE: (
            "The server is out of storage for now; retry later, possibly with fewer recipients."
        ),
        Category.TOO_MANY_RECIPIENTS: (
            "Too many recipients in one transaction; send the rest in another transaction."
        ),
        Category.RATE_LIMITED: (
            "You are sending too fast for this server; slow down and retry after "
            "err.retry_after seconds, or a few minutes if it is None."
        ),
        Category.GREYLISTED: (
            "The server greylisted this sender; retry the same message in a few minutes "
            "(it is normally accepted then)."
        ),
        Category.SPAM_REJECTED: (
            "The content was judged as spam; review the message content, links and sending "
            "reputation."
        ),
        Category.POLICY_REJECTED: (
            "The server's policy refused the message; read the server's text for the reason "
            "or contact its postmaster."
        ),
        Category.SENDER_AUTH_FAILED: (
            "SPF, DKIM or DMARC checks failed; fix the sending domain's DNS records and signing."
        ),
        Category.RELAY_DENIED: (
            "This server will not relay for you; authenticate or send through your own "
            "provider's server."
        ),
        Category.BLOCKLISTED: (
            "Your IP, domain or sender is listed or blocked by this provider; request "
            "delisting or unblocking, or send through another server."
        ),
        Category.DOMAIN_NOT_ACCEPTING: (
            "The recipient's domain does not accept mail; check the domain in the address."
        ),
        Category.HOST_UNKNOWN: (
            "The recipient's domain or mail host could not be found; check the domain spelling "
            "and its MX records."
        ),
        Category.SERVICE_UNAVAILABLE: (
            "The server is closing the connection or unavailable; retry later, on a new connection."
        ),
        Category.SERVER_ERROR: "The server had a local error; retry later.",
        Category.SYNTAX_ERROR: (
            "The server did not understand a command or argument; check the addresses and "
            "options sent."
        ),
        Category.BAD_ADDRESS: (
            "The address is not valid for this server; fix its syntax or use another address."
        ),
        Category.BAD_SEQUENCE: (
            "Commands came in the wrong order (for example RCPT before MAIL, or MAIL before "
            "AUTH); report it as a bug in the sending code."
        ),
        Category.NOT_IMPLEMENTED: (
            "The server does not support a command or option used; turn that option off."
        ),
        Category.OTHER: (
            "The server refused with an unrecognised reply; read its text and contact its "
            "postmaster if unclear."
        ),
    }
)


def hint_for(category: Category) -> str:
    """The developer-facing hint for ``category``."""
    return HINTS[category]
