"""The emulator the AWS tests run against (scripts/moto_server.py) keeps an SQS queue whole
when a send and a delete, or two deletes, meet.

The race is made to happen, not waited for: the first delete is held in the middle of building
the queue's new list of messages while a second request runs. Plain moto loses the sent message
(or brings back the other delete's message); the patched emulator makes the second request wait
for the first delete, so nothing is lost and nothing comes back.

Run with the project's .venv: `.venv/bin/python tests/emulator_check.py`.
"""

import importlib.util
import pathlib
import threading

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sqs import models

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_emulator():
    spec = importlib.util.spec_from_file_location("moto_server", ROOT / "scripts" / "moto_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # patches moto's SQS on import; does not start a server


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


def main():
    load_emulator()
    checks = [a_send_during_a_delete_is_kept, a_delete_during_a_delete_stays_deleted]
    for check in checks:
        backend = models.SQSBackend("us-east-1", DEFAULT_ACCOUNT_ID)
        check(backend)
        print(f"ok  {check.__name__.replace('_', ' ')}")


if __name__ == "__main__":
    main()
