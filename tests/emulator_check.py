"""The emulator the AWS tests run against (scripts/moto_server.py) is no kinder than AWS where
Tidings depends on it. Each check below makes the emulator behave as AWS does and fails on plain
moto:

- IAM: a call signed by a registered principal is held against its policy (actions, table and
  index resources, queues, the `ses:FromAddress` condition) and refused with AccessDenied;
- SQS hands messages out in no fixed order, and a queue at its in-flight cap returns nothing to
  a long poll and OverLimit to a short one;
- sizes: an SQS message over 1 MiB and a DynamoDB item over 400 KB are refused, and a key over
  DynamoDB's limits (a sort key over 1,024 bytes, a partition key over 2,048) on a read as on a
  write;
- an SQS queue stays whole when a send and a delete, or two deletes, meet.

The delete races:
The race is made to happen, not waited for: the first delete is held in the middle of building
the queue's new list of messages while a second request runs. Plain moto loses the sent message
(or brings back the other delete's message); the patched emulator makes the second request wait
for the first delete, so nothing is lost and nothing comes back.

Run with the project's .venv: `.venv/bin/python tests/emulator_check.py`.
"""

import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import botocore.exceptions

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_emulator():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("moto_server", ROOT / "scripts" / "moto_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # patches moto's SQS on import; does not start a server
    return module


def queue_with(backend, name, bodies):
    backend.create_queue(name, VisibilityTimeout="60")
    for body in bodies:
        backend.send_message(name, body)
    received = backend.receive_message(name, 10, 0, 60)
    return {m.body: m.receipt_handle for m in received}


def held_delete(backend, name, receipt, meanwhile):
    """Deletes `receipt`, running `meanwhile` on another thread once the delete has gone through
    the queue's messages and before it puts its new list in place. Waits at most 1 s for
    `meanwhile`: a request the queue's lock holds back cannot finish before the delete does."""
    walked, other_done = threading.Event(), threading.Event()
    deleting = threading.current_thread()

    class HeldList(list):
        def __iter__(self):
            i = 0
            while i < len(self):
                yield self[i]
                i += 1
            # The deleting thread's full walk (the rebuild's) ends here, once.
            if threading.current_thread() is deleting and not walked.is_set():
                walked.set()
                other_done.wait(1)

    def other():
        walked.wait(5)
        meanwhile()
        other_done.set()

    queue = backend.get_queue(name)
    queue._messages = HeldList(queue._messages)
    thread = threading.Thread(target=other)
    thread.start()
    backend.delete_message(name, receipt)
    thread.join(5)
    assert walked.is_set(), "the delete never walked the queue"


def bodies_in(backend, name):
    return sorted(m.body for m in backend.get_queue(name)._messages)


def a_send_during_a_delete_is_kept(backend):
    receipts = queue_with(backend, "send-during-delete", ["a", "b"])
    held_delete(backend, "send-during-delete", receipts["a"], lambda: backend.send_message("send-during-delete", "c"))
    assert bodies_in(backend, "send-during-delete") == ["b", "c"], bodies_in(backend, "send-during-delete")


def a_delete_during_a_delete_stays_deleted(backend):
    receipts = queue_with(backend, "delete-during-delete", ["a", "b", "c"])
    held_delete(
        backend,
        "delete-during-delete",
        receipts["a"],
        lambda: backend.delete_message("delete-during-delete", receipts["b"]),
    )
    assert bodies_in(backend, "delete-during-delete") == ["c"], bodies_in(backend, "delete-during-delete")


def messages_come_back_in_no_fixed_order(backend):
    backend.create_queue("order", VisibilityTimeout="60")
    sent = [str(i) for i in range(30)]
    for body in sent:
        backend.send_message("order", body)
    received = [m.body for _ in sent for m in backend.receive_message("order", 1, 0, 60)]
    assert sorted(received) == sorted(sent), received
    assert received != sent, "received in the order sent: the emulator is FIFO"


def a_queue_at_its_in_flight_cap_hands_out_nothing(backend, emulator):
    backend.create_queue("capped", VisibilityTimeout="60")
    emulator._in_flight_caps["capped"] = 5
    for i in range(10):
        backend.send_message("capped", str(i))
    first = backend.receive_message("capped", 10, 0, 60)
    assert len(first) == 5, f"{len(first)} received past a cap of 5"
    assert backend.receive_message("capped", 10, 1, 60) == [], "a long poll past the cap returned messages"
    try:
        backend.receive_message("capped", 10, 0, 60)
        raise AssertionError("a short poll past the cap did not fail with OverLimit")
    except emulator.SQSException as err:
        assert "OverLimit" in str(err.code if hasattr(err, "code") else err), err
    backend.delete_message("capped", first[0].receipt_handle)
    assert len(backend.receive_message("capped", 10, 0, 60)) == 1, "a deleted message did not free its place"


def an_sqs_message_over_1_mib_is_refused(backend):
    backend.create_queue("big")
    backend.send_message("big", "x" * (1024 * 1024))
    try:
        backend.send_message("big", "x" * (1024 * 1024 + 1))
        raise AssertionError("a message over 1 MiB was accepted")
    except Exception as err:  # moto's InvalidParameterValue
        assert "shorter than" in str(err) or "InvalidParameterValue" in repr(err), repr(err)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """scripts/moto_server.py as the tests run it, on a port of its own."""

    def __enter__(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "moto_server.py"), "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/").read()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the emulator did not start")

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()

    def client(self, service, key="operator"):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key="secret")

    def register(self, key, statements):
        body = json.dumps({key: {"name": "OutsideCheck-1", "role": "CheckRole", "statements": statements}}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/tidings-emulator/principals", data=body,
                                                      method="POST")).read()


def refused(call):
    try:
        call()
    except botocore.exceptions.ClientError as err:
        return err.response["Error"]["Code"]
    return None


def calls_outside_a_role_are_refused_as_aws_refuses_them(server):
    table_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
    server.client("dynamodb").create_table(
        TableName="t", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "G", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    sqs = server.client("sqs")
    mine = sqs.create_queue(QueueName="mine")["QueueUrl"]
    theirs = sqs.create_queue(QueueName="theirs")["QueueUrl"]
    server.client("sesv2").create_email_identity(EmailIdentity="alerts@example.com")
    server.register("AKIDCHECK", [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"], "Resource": table_arn},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:123456789012:mine"},
        {"Effect": "Allow", "Action": "ses:SendEmail", "Resource": "arn:aws:ses:us-east-1:123456789012:identity/*",
         "Condition": {"StringEquals": {"ses:FromAddress": "alerts@example.com"}}},
    ])
    dynamodb, sqs, ses = (server.client(s, "AKIDCHECK") for s in ("dynamodb", "sqs", "sesv2"))
    key = {"PK": {"S": "a"}}
    assert refused(lambda: dynamodb.put_item(TableName="t", Item={**key, "G": {"S": "g"}})) is None
    assert refused(lambda: dynamodb.get_item(TableName="t", Key=key)) is None
    assert refused(lambda: dynamodb.delete_item(TableName="t", Key=key)) == "AccessDeniedException"
    assert refused(lambda: dynamodb.query(TableName="t", IndexName="GSI1", KeyConditionExpression="G = :g",
                                          ExpressionAttributeValues={":g": {"S": "g"}})) == "AccessDeniedException", \
        "a grant on the table let through a query of its index"
    assert refused(lambda: dynamodb.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": key}}]})) \
        == "AccessDeniedException"
    assert refused(lambda: sqs.send_message(QueueUrl=mine, MessageBody="m")) is None
    assert refused(lambda: sqs.send_message(QueueUrl=theirs, MessageBody="m")) in ("AccessDenied", "AccessDeniedException")
    assert refused(lambda: sqs.send_message_batch(QueueUrl=theirs, Entries=[{"Id": "1", "MessageBody": "m"}])) \
        in ("AccessDenied", "AccessDeniedException")
    assert refused(lambda: sqs.receive_message(QueueUrl=mine)) in ("AccessDenied", "AccessDeniedException")
    mail = {"Destination": {"ToAddresses": ["ops@example.com"]},
            "Content": {"Simple": {"Subject": {"Data": "s"}, "Body": {"Text": {"Data": "b"}}}}}
    assert refused(lambda: ses.send_email(FromEmailAddress="alerts@example.com", **mail)) is None
    assert refused(lambda: ses.send_email(FromEmailAddress="other@example.com", **mail)) == "AccessDeniedException", \
        "the ses:FromAddress condition was ignored"
    # Nothing refused reached the emulator's state: the item is still there.
    assert server.client("dynamodb").get_item(TableName="t", Key=key).get("Item"), "a refused delete went through"
    audit = json.load(urllib.request.urlopen(f"{server.url}/tidings-emulator/iam"))
    assert any(not c["allowed"] and c["action"] == "dynamodb:DeleteItem" for c in audit), audit


def a_dynamodb_item_over_400_kb_is_refused(server):
    dynamodb = server.client("dynamodb")
    dynamodb.create_table(TableName="sizes", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}])
    dynamodb.put_item(TableName="sizes", Item={"PK": {"S": "fits"}, "v": {"S": "x" * 399_000}})
    code = refused(lambda: dynamodb.put_item(TableName="sizes", Item={"PK": {"S": "big"}, "v": {"S": "x" * 410_000}}))
    assert code == "ValidationException", code


def a_dynamodb_key_over_its_limit_is_refused_on_reads_too(server):
    dynamodb = server.client("dynamodb")
    dynamodb.create_table(TableName="keys", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"},
                                                {"AttributeName": "SK", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}])
    fits = {"PK": {"S": "p" * 2048}, "SK": {"S": "s" * 1024}}
    assert refused(lambda: dynamodb.get_item(TableName="keys", Key=fits)) is None, "keys at their limits are read"
    long_sort = {"PK": {"S": "p"}, "SK": {"S": "s" * 1025}}
    long_partition = {"PK": {"S": "p" * 2049}, "SK": {"S": "s"}}
    for name, call in [
        ("GetItem", lambda key: dynamodb.get_item(TableName="keys", Key=key)),
        ("BatchGetItem", lambda key: dynamodb.batch_get_item(RequestItems={"keys": {"Keys": [key]}})),
        ("DeleteItem", lambda key: dynamodb.delete_item(TableName="keys", Key=key)),
        ("UpdateItem", lambda key: dynamodb.update_item(TableName="keys", Key=key, UpdateExpression="SET v = :v",
                                                         ExpressionAttributeValues={":v": {"S": "v"}})),
    ]:
        for key in (long_sort, long_partition):
            code = refused(lambda: call(key))
            assert code == "ValidationException", f"{name}: {code}"
    code = refused(lambda: dynamodb.query(TableName="keys", KeyConditionExpression="PK = :p",
                                          ExpressionAttributeValues={":p": {"S": "p" * 2049}}))
    assert code == "ValidationException", f"Query: {code}"


def main():
    emulator = load_emulator()
    in_process = [
        a_send_during_a_delete_is_kept,
        a_delete_during_a_delete_stays_deleted,
        messages_come_back_in_no_fixed_order,
        an_sqs_message_over_1_mib_is_refused,
    ]
    for check in in_process:
        backend = models.SQSBackend("us-east-1", DEFAULT_ACCOUNT_ID)
        check(backend)
        print(f"ok  {check.__name__.replace('_', ' ')}")
    a_queue_at_its_in_flight_cap_hands_out_nothing(models.SQSBackend("us-east-1", DEFAULT_ACCOUNT_ID), emulator)
    print("ok  a queue at its in flight cap hands out nothing")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_ENDPOINT_URL_SQS", None)
    with Server() as server:
        for check in [calls_outside_a_role_are_refused_as_aws_refuses_them, a_dynamodb_item_over_400_kb_is_refused,
                      a_dynamodb_key_over_its_limit_is_refused_on_reads_too]:
            check(server)
            print(f"ok  {check.__name__.replace('_', ' ')}")


if __name__ == "__main__":
    main()
