"""Verifies a webhook Tidings delivered independently of Tidings' own verifier: the Standard
Webhooks headers with the reference library (PyPI `standardwebhooks`), and, when the headers
carry one, `X-iZettle-Signature` with the Python standard library (HMAC-SHA256 over the
envelope's `timestamp + "." + payload`, hex).

    python tests/verify_standard_webhooks.py <whsec_secret> <body file> <headers json file>
"""
import base64
import hashlib
import hmac
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, body_path, headers_path = sys.argv[1:4]
with open(body_path, "rb") as body_file, open(headers_path) as headers_file:
    body, headers = body_file.read(), json.load(headers_file)
Webhook(secret).verify(body, headers)
zettle = {k.lower(): v for k, v in headers.items()}.get("x-izettle-signature")
if zettle is not None:
    envelope = json.loads(body)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{envelope['timestamp']}.{envelope['payload']}".encode()
    expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, zettle):
        sys.exit("X-iZettle-Signature does not match")
    print("verified X-iZettle-Signature")
print("verified")
