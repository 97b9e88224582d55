"""Send one message from a script, and say what happened to each recipient.

    SMTP_HOST=127.0.0.1 SMTP_PORT=2525 python examples/plain_script.py alice@example.com bob@...

Settings come from the environment: SMTP_HOST (default localhost), SMTP_PORT (default 25),
SMTP_USER / SMTP_PASSWORD (optional; then STARTTLS is required), MAIL_FROM, SMTP_ATTEMPTS
(default 3: transient failures are retried with backoff within 30 s). Exit status: 0 when
every recipient got the message, 1 when some were refused, 2 when nothing was sent.
"""

from __future__ import annotations

import os
import sys
from email.message import EmailMessage

from smtp_guard.client import send_sync
from smtp_guard.errors import RecipientsRefused, SMTPGuardError
from smtp_guard.policy import RetryPolicy


def build_message(sender: str, recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Hello from smtp_guard"
    message.set_content("This message was sent with smtp_guard.\n")
    return message


def main(argv: list[str]) -> int:
    recipients = argv or ["someone@example.com"]
    sender = os.environ.get("MAIL_FROM", "script@example.com")
    try:
        result = send_sync(
            build_message(sender, recipients),
            hostname=os.environ.get("SMTP_HOST", "localhost"),
            port=int(os.environ.get("SMTP_PORT", "25")),
            username=os.environ.get("SMTP_USER") or None,
            password=os.environ.get("SMTP_PASSWORD") or None,
            timeout=10,
            policy=RetryPolicy(attempts=int(os.environ.get("SMTP_ATTEMPTS", "3")), deadline=30.0),
        )
    except RecipientsRefused as error:  # nobody got it: say why, per recipient
        for rcpt, why in error.refused.items():
            print(f"REFUSED   {rcpt}: {why.code} {why.text} -- {why.hint}")
        return 2
    except SMTPGuardError as error:  # the whole message failed (connection, auth, ...)
        kind = "permanent" if error.permanent else "transient, try again later"
        print(f"NOT SENT  ({type(error).__name__}, {kind}): {error}")
        return 2
    for rcpt in result.delivered:
        print(f"DELIVERED {rcpt}")
    for rcpt, why in result.refused.items():
        print(f"REFUSED   {rcpt}: {why.code} {why.text} -- {why.hint}")
    return 1 if result.refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
