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
- DynamoDB key sizes on every call: moto refuses a partition key over 2,048 bytes or a sort key
  over 1,024 on writes only; AWS refuses them on reads too (GetItem, BatchGetItem, Query,
  UpdateItem, DeleteItem, transactions), with a ValidationException.

Every single-item DynamoDB write (PutItem, UpdateItem, DeleteItem, refused conditions included:
AWS bills those too) is counted by the item's partition key: `GET
/tidings-emulator/item-writes?prefix=PACE%23` lists the counts of the keys with that prefix, so a
test can measure the write units a feature costs an item (one item takes about 1,000 a second).

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

# --- DynamoDB: key sizes on reads as on writes --------------------------------------------------

_KEY_LIMITS = {"HASH": 2048, "RANGE": 1024}
_KEYED_CALLS = {"GetItem", "DeleteItem", "UpdateItem", "BatchGetItem", "TransactGetItems", "TransactWriteItems", "Query"}


def _keys_of(operation, request):
    """(table, key attributes) of each item a DynamoDB call names by key."""
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        yield request.get("TableName"), request.get("Key", {})
    elif operation == "BatchGetItem":
        for table, ask in request.get("RequestItems", {}).items():
            for key in ask.get("Keys", []):
                yield table, key
    elif operation in ("TransactGetItems", "TransactWriteItems"):
        for item in request.get("TransactItems", []):
            for part in item.values():
                if "Key" in part:
                    yield part.get("TableName"), part["Key"]
    elif operation == "Query":
        # The key condition's values (a partition key, a sort key's prefix or bound), held to
        # the larger limit: which attribute each names is the expression's.
        condition = request.get("KeyConditionExpression", "")
        for name, value in request.get("ExpressionAttributeValues", {}).items():
            if name in condition:
                yield None, {name: value}


def _value_bytes(value):
    (kind, data), = value.items()
    return len(data.encode()) if kind == "S" else len(data) if kind == "B" else len(str(data))


def _limit(table_name, attribute, environ):
    """The size AWS allows a key attribute: 1,024 bytes for the table's sort key, 2,048 else."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    scope = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[-1].split("/")
    region = scope[2] if len(scope) > 2 else "us-east-1"
    try:
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(table_name)
    except Exception:  # an unknown table: moto answers that itself
        return _KEY_LIMITS["HASH"]
    return _KEY_LIMITS["RANGE"] if attribute == table.range_key_attr else _KEY_LIMITS["HASH"]


def dynamodb_key_too_long(environ, body):
    """A ValidationException as AWS answers a call naming a key over its size, else None."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not target.startswith("DynamoDB_20120810."):
        return None
    operation = target.split(".", 1)[1]
    if operation not in _KEYED_CALLS:
        return None
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return None
    for table, key in _keys_of(operation, request):
        for attribute, value in key.items():
            if not (isinstance(value, dict) and len(value) == 1):
                continue
            size = _value_bytes(value)
            limit = _limit(table, attribute, environ) if table else _KEY_LIMITS["HASH"]
            if size > limit:
                kind = "range" if limit == _KEY_LIMITS["RANGE"] else "hash"
                return json.dumps({
                    "__type": "com.amazon.coral.validate#ValidationException",
                    "message": f"One or more parameter values were invalid: Aggregated size of all {kind} keys has exceeded the size limit of {limit} bytes",
                })
    return None


# --- DynamoDB: single-item writes counted by partition key ---------------------------------------

_item_writes = {}


def count_item_write(environ, body):
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    operation = target.split(".", 1)[-1] if target.startswith("DynamoDB_20120810.") else None
    if operation not in ("PutItem", "UpdateItem", "DeleteItem"):
        return
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return
    key = request.get("Key") or request.get("Item") or {}
    partition = key.get("PK", {}).get("S")
    if partition is not None:
        _item_writes[partition] = _item_writes.get(partition, 0) + 1


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
        count_item_write(environ, body)
        too_long = dynamodb_key_too_long(environ, body)
        if too_long is not None:
            return _answer(start_response, "400 Bad Request", too_long, (("Content-Type", "application/x-amz-json-1.0"),))
        return super().__call__(environ, start_response)

    def own_route(self, environ, path, body, start_response):
        method = environ.get("REQUEST_METHOD")
        if path == "/tidings-emulator/principals" and method == "POST":
            emulated_iam.register(json.loads(body))
            return _answer(start_response, "200 OK", "{}")
        if path == "/tidings-emulator/iam" and method == "GET":
            return _answer(start_response, "200 OK", json.dumps(emulated_iam.audit()))
        if path == "/tidings-emulator/item-writes" and method == "GET":
            from urllib.parse import parse_qs

            prefix = parse_qs(environ.get("QUERY_STRING", "")).get("prefix", [""])[0]
            counts = {key: n for key, n in _item_writes.items() if key.startswith(prefix)}
            return _answer(start_response, "200 OK", json.dumps(counts))
        if path == "/tidings-emulator/in-flight-cap" and method == "POST":
            request = json.loads(body)
            name = request["queue_url"].rstrip("/").rsplit("/", 1)[-1]
            _in_flight_caps[name] = int(request["cap"])
            return _answer(start_response, "200 OK", "{}")
        return _answer(start_response, "404 Not Found", json.dumps({"message": f"no route {method} {path}"}))


moto.server.DomainDispatcherApplication = Enforcing

if __name__ == "__main__":
    sys.exit(moto.server.main())
