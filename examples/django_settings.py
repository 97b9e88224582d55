"""The settings a Django project adds to use smtp_guard (paste into settings.py).

Every ``EMAIL_*`` setting keeps the meaning it has for Django's own SMTP backend. Values are
read from the environment here so the example runs against a local test server.
"""

from __future__ import annotations

import os

EMAIL_BACKEND = "smtp_guard.contrib.django.EmailBackend"
EMAIL_HOST = os.environ.get("SMTP_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("SMTP_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("SMTP_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("SMTP_STARTTLS", "0") == "1"  # STARTTLS (port 587)
EMAIL_USE_SSL = False  # TLS from the first byte (port 465)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = os.environ.get("MAIL_FROM", "webmaster@example.com")

# smtp_guard's own: how transient failures are retried inside one send_messages() call.
SMTP_GUARD_POLICY = {"attempts": 3, "deadline": 20.0, "max_wait": 5.0}
# Only for a trusted relay on the same host: allow a login without TLS.
SMTP_GUARD_ALLOW_INSECURE_AUTH = False
