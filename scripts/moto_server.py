"""The AWS-API emulator (moto server), made no kinder than AWS where Tidings depends on it.

- IAM per principal (scripts/emulated_iam.py): a call signed with a registered function's access
  key is held against its template role and refused as AWS refuses it (AccessDenied). moto's own
  enforcement checks DynamoDB against resource `*` and ignores conditions, so it is not used.
- SQS receive order is not send order: a standard queue hands out messages in no promised order,
  and here in a random one, so nothing can lean on FIFO by accident.
- SQS's in-flight cap: a queue holding this many received, undeleted messages returns nothing to
  a long poll (and OverLimit to a short one), as AWS does at about 120,000. Scaled down for
  tests: `TIDINGS_EMULATOR_IN_FLIGHT_CAP` (default 120000), or per queue with
  `POST /tidings-emulator/in-flight-cap {"queue_url": ..., "cap": N}`.
- SQS deletes hold the queue's lock: plain moto builds a new message list without it, so a delete
  racing another delete brings the other's message back, and one racing a send drops the sent
  message. Real SQS does neither.
- Item and message sizes are moto's own, which match AWS (400 KB items, 1 MiB messages):
  tests/emulator_check.py shows both refused.

Every call a registered principal makes is counted: `GET /tidings-emulator/iam` lists them
(principal, action, resource, allowed, count), for tests/iam_audit.py.

Usage is moto_server's: `python scripts/moto_server.py -H 127.0.0.1 -p PORT`.
"""

import functools
import io
import json
import os
import random
import sys
import time

import moto.server
from moto.sqs import models
from moto.sqs.exceptions import SQSException

import emulated_iam

# --- SQS: deletes under the queue's lock -------------------------------------------------------

_delete_message = models.Queue.delete_message


@functools.wraps(_delete_message)
def _delete_message_under_lock(queue, receipt_handle):
    with queue._messages_lock:
        return _delete_message(queue, receipt_handle)


models.Queue.delete_message = _delete_message_under_lock

# --- SQS: no receive order ---------------------------------------------------------------------


def _visible_in_no_order(queue):
    now = models.unix_time_millis()
    ready = [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]
    random.shuffle(ready)
    return ready


models.Queue.messages = property(_visible_in_no_order)

# --- SQS: the in-flight cap --------------------------------------------------------------------

DEFAULT_IN_FLIGHT_CAP = int(os.environ.get("TIDINGS_EMULATOR_IN_FLIGHT_CAP", "120000"))
_in_flight_caps = {}  # queue name -> cap


def in_flight(queue):
    now = models.unix_time_millis()
    return sum(1 for m in queue._messages if m.visible_at >= now)


_receive_message = models.SQSBackend.receive_message


@functools.wraps(_receive_message)
def _receive_under_cap(backend, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs):
    queue = backend.get_queue(queue_name)
    cap = _in_flight_caps.get(queue.name, DEFAULT_IN_FLIGHT_CAP)
    held = in_flight(queue)
    if held >= cap:
        if not wait_seconds_timeout:
            raise SQSException("OverLimit", f"The queue holds its limit of {cap} messages in flight.")
        # A long poll returns nothing, without an error: what AWS does past the cap.
        time.sleep(min(wait_seconds_timeout, 1))
        return []
    # Never more than the cap leaves: at most what is left under it.
    count = min(count, cap - held)
    return _receive_message(backend, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs)


models.SQSBackend.receive_message = _receive_under_cap

# --- The emulator's own routes, and IAM in front of every call ---------------------------------


def _answer(start_response, status, body, headers=(("Content-Type", "application/json"),)):
    data = body.encode() if isinstance(body, str) else body
    start_response(status, list(headers) + [("Content-Length", str(len(data)))])
    return [data]


class Enforcing(moto.server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if path.startswith("/tidings-emulator/"):
            return self.own_route(environ, path, body, start_response)
        refused = emulated_iam.check(environ, body)
        if refused is not None:
            status, headers, text = refused
            return _answer(start_response, status, text, headers)
        return super().__call__(environ, start_response)

    def own_route(self, environ, path, body, start_response):
        method = environ.get("REQUEST_METHOD")
        if path == "/tidings-emulator/principals" and method == "POST":
            emulated_iam.register(json.loads(body))
            return _answer(start_response, "200 OK", "{}")
        if path == "/tidings-emulator/iam" and method == "GET":
            return _answer(start_response, "200 OK", json.dumps(emulated_iam.audit()))
        if path == "/tidings-emulator/in-flight-cap" and method == "POST":
            request = json.loads(body)
            name = request["queue_url"].rstrip("/").rsplit("/", 1)[-1]
            _in_flight_caps[name] = int(request["cap"])
            return _answer(start_response, "200 OK", "{}")
        return _answer(start_response, "404 Not Found", json.dumps({"message": f"no route {method} {path}"}))


moto.server.DomainDispatcherApplication = Enforcing

if __name__ == "__main__":
    sys.exit(moto.server.main())
