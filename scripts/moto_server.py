"""The AWS-API emulator (moto server), with deletes from its SQS queues made safe for
concurrent requests.

moto's server answers requests on several threads, and its SQS queue deletes a message by
building a new list of the queue's messages and putting it in place of the old one, without
the queue's lock. A delete racing another delete brings the other's message back (received
again once its visibility timeout ends: delivered twice), and a delete racing a send drops the
sent message. Real SQS does neither. Here a delete holds the queue's own lock, the one its
sends already take. (Receives are left as they are: they change messages in place, and the
deployed stack's emulated event sources receive one at a time per queue.)

Usage is moto_server's: `python scripts/moto_server.py -H 127.0.0.1 -p PORT`.
"""

import functools
import sys

from moto.server import main
from moto.sqs import models

_delete_message = models.Queue.delete_message


@functools.wraps(_delete_message)
def _delete_message_under_lock(queue, receipt_handle):
    with queue._messages_lock:
        return _delete_message(queue, receipt_handle)


models.Queue.delete_message = _delete_message_under_lock

if __name__ == "__main__":
    sys.exit(main())
