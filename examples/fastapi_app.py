"""A FastAPI route that sends a message and answers with each recipient's outcome.

    SMTP_HOST=127.0.0.1 SMTP_PORT=2525 uvicorn examples.fastapi_app:app

``POST /send`` with ``{"to": ["a@example.com"], "subject": "...", "body": "..."}`` answers 200
with ``{"delivered": [...], "refused": {address: {...}}}`` when at least one recipient got it;
503 with a ``Retry-After`` header when the failure was transient (try again later); 502 when the
mail server refused it for good; 422 for bad input (nothing was sent).
"""

from __future__ import annotations

import math
import os
from email.message import EmailMessage
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from smtp_guard.client import send
from smtp_guard.errors import InvalidInput, RecipientsRefused, ReplyError, SMTPGuardError
from smtp_guard.policy import RetryPolicy

app = FastAPI(title="smtp_guard example")

#: Short in-request retries: a web request should not wait minutes. Longer waits: a queue.
POLICY = RetryPolicy(attempts=2, deadline=10.0)


class Mail(BaseModel):
    to: list[str]
    subject: str = "Hello"
    body: str = ""


def describe(error: SMTPGuardError) -> dict[str, Any]:
    """What a client of this API needs to know about one error."""
    reply = error if isinstance(error, ReplyError) else None
    return {
        "error": type(error).__name__,
        "code": reply.code if reply else None,
        "enhanced": reply.enhanced if reply else None,
        "permanent": error.permanent,
        "retry_after": error.retry_after,
        "hint": error.hint,
    }


@app.post("/send")
async def send_mail(mail: Mail) -> JSONResponse:
    message = EmailMessage()
    message["From"] = os.environ.get("MAIL_FROM", "app@example.com")
    message["Subject"] = mail.subject
    message.set_content(mail.body)
    try:
        result = await send(
            message,
            recipients=mail.to,
            hostname=os.environ.get("SMTP_HOST", "localhost"),
            port=int(os.environ.get("SMTP_PORT", "25")),
            timeout=10,
            policy=POLICY,
        )
    except InvalidInput as error:
        return JSONResponse({"detail": str(error)}, status_code=422)
    except RecipientsRefused as error:
        refused = {r: describe(e) for r, e in error.refused.items()}
        return _failure(error, {"delivered": [], "refused": refused})
    except SMTPGuardError as error:
        return _failure(error, {"delivered": [], "error": describe(error)})
    return JSONResponse(
        {
            "delivered": list(result.delivered),
            "refused": {r: describe(e) for r, e in result.refused.items()},
        }
    )


def _failure(error: SMTPGuardError, body: dict[str, Any]) -> JSONResponse:
    if error.permanent:
        return JSONResponse(body, status_code=502)
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(error.retry_after))
    return JSONResponse(body, status_code=503, headers=headers)
