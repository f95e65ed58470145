"""Verifies a webhook Tidings delivered with the Standard Webhooks reference library (PyPI
`standardwebhooks`), independently of Tidings' own verifier.

    python tests/verify_standard_webhooks.py <whsec_secret> <body file> <headers json file>
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, body_path, headers_path = sys.argv[1:4]
with open(body_path, "rb") as body, open(headers_path) as headers:
    Webhook(secret).verify(body.read(), json.load(headers))
print("verified")
