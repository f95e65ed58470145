"""IAM for the AWS-API emulator: each signed call held against the policy of the principal whose
access key signed it, as AWS evaluates an identity-based policy (an explicit Deny wins, then an
Allow whose action, resource and conditions all match, else an implicit deny).

A principal is registered with `POST /tidings-emulator/principals` (tests/emulated_deploy.py
registers one per function of a deployment, with its template role's statements resolved). Calls
signed with any other key are the operator's and are allowed, as an administrator's are.

What a call is, read off the request the way AWS reads it:
- DynamoDB (JSON, `X-Amz-Target: DynamoDB_20120810.<Op>`): `dynamodb:<Op>` on the table named by
  `TableName` (`/index/<IndexName>` for a query of an index); batch and transaction calls are
  held once for each table and each kind of item they touch.
- SQS (JSON `X-Amz-Target: AmazonSQS.<Op>`, or the query protocol's `Action=`): `sqs:<Op>` on
  the queue of `QueueUrl` (`QueueName` for GetQueueUrl); a `…Batch` call is its single action.
- SES v2 (`POST /v2/email/outbound-emails`): `ses:SendEmail` on the sender's identity, with the
  `ses:FromAddress` condition key.
"""

import fnmatch
import json
import threading
import urllib.parse

REGION = "us-east-1"
ACCOUNT = "123456789012"

_principals = {}  # access key id -> {"name": ..., "role": ..., "statements": [...]}
_calls = {}  # (principal name, action, resource, allowed) -> count
_lock = threading.Lock()


def register(body):
    """`{access key id: {"name", "role", "statements"}}`: the principals of a deployment."""
    with _lock:
        _principals.update(body)


def audit():
    """Every call a registered principal made so far, allowed or not, with how often."""
    with _lock:
        return [{"principal": p, "action": a, "resource": r, "allowed": ok, "count": n}
                for (p, a, r, ok), n in sorted(_calls.items())]


def access_key(environ):
    auth = environ.get("HTTP_AUTHORIZATION", "")
    marker = "Credential="
    if marker not in auth:
        return None
    return auth.split(marker, 1)[1].split("/", 1)[0]


def principal_of(environ):
    key = access_key(environ)
    with _lock:
        return _principals.get(key) if key else None


def _queue_arn(url_or_name):
    name = url_or_name.rstrip("/").rsplit("/", 1)[-1]
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


def _table_arn(table, index=None):
    arn = table if table.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


_TRANSACT_ITEM_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                          "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}


def requested(environ, body):
    """The (action, resource, condition context) checks one request needs, or None when it is
    not a call this module knows (it then goes through unchecked)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    path = environ.get("PATH_INFO", "")
    if target.startswith("DynamoDB_"):
        op = target.split(".", 1)[1]
        data = json.loads(body or b"{}")
        if op in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{op}", _table_arn(t), {}) for t in data.get("RequestItems", {})]
        if op in ("TransactWriteItems", "TransactGetItems"):
            checks = []
            for item in data.get("TransactItems", []):
                (kind, spec), = item.items()
                checks.append((f"dynamodb:{_TRANSACT_ITEM_ACTIONS[kind]}", _table_arn(spec["TableName"]), {}))
            return checks
        if "TableName" in data:
            return [(f"dynamodb:{op}", _table_arn(data["TableName"], data.get("IndexName")), {})]
        return [(f"dynamodb:{op}", "*", {})]
    if target.startswith("AmazonSQS."):
        op = target.split(".", 1)[1]
        data = json.loads(body or b"{}")
        return [_sqs_check(op, data)]
    if path.startswith("/v2/email/outbound-emails") and environ.get("REQUEST_METHOD") == "POST":
        data = json.loads(body or b"{}")
        sender = data.get("FromEmailAddress", "")
        address = sender.rsplit("<", 1)[-1].rstrip(">").strip()
        return [("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{address}",
                 {"ses:FromAddress": address})]
    content_type = environ.get("CONTENT_TYPE", "")
    if "x-www-form-urlencoded" in content_type and body:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if "Action" in form and ("QueueUrl" in form or "QueueName" in form):
            return [_sqs_check(form["Action"], form)]
    return None


def _sqs_check(op, data):
    action = op[:-len("Batch")] if op.endswith("Batch") else op
    queue = data.get("QueueUrl") or data.get("QueueName") or "*"
    return (f"sqs:{action}", _queue_arn(queue) if queue != "*" else "*", {})


def _matches(patterns, value):
    if isinstance(patterns, str):
        patterns = [patterns]
    # Resource ARNs are case-sensitive; `*` and `?` are IAM's wildcards.
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _action_matches(patterns, action):
    if isinstance(patterns, str):
        patterns = [patterns]
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def _conditions_hold(conditions, context):
    for operator, tests in (conditions or {}).items():
        for key, wanted in tests.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            have = context.get(key)
            if have is None:
                # A condition on a key the request does not carry never holds (no ...IfExists here).
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = have in [str(w) for w in wanted]
            elif operator in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(have, str(w)) for w in wanted)
            elif operator == "StringNotEquals":
                ok = have not in [str(w) for w in wanted]
            else:
                raise ValueError(f"the emulated IAM does not know the condition operator {operator}")
            if not ok:
                return False
    return True


def allowed(statements, action, resource, context):
    allow = False
    for statement in statements:
        if not _action_matches(statement.get("Action", []), action):
            continue
        if not _matches(statement.get("Resource", []), resource):
            continue
        if not _conditions_hold(statement.get("Condition"), context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allow = True
    return allow


def check(environ, body):
    """None when the call may go on; else (status, headers, body) of AWS's refusal."""
    principal = principal_of(environ)
    if principal is None:
        return None
    checks = requested(environ, body)
    if checks is None:
        return None
    for action, resource, context in checks:
        ok = allowed(principal["statements"], action, resource, context)
        with _lock:
            key = (principal["name"], action, resource, ok)
            _calls[key] = _calls.get(key, 0) + 1
        if not ok:
            return refusal(environ, principal, action, resource)
    return None


def refusal(environ, principal, action, resource):
    who = f"arn:aws:sts::{ACCOUNT}:assumed-role/{principal['role']}/{principal['name']}"
    message = (f"User: {who} is not authorized to perform: {action} on resource: {resource} "
               f"because no identity-based policy allows the {action} action")
    if action.startswith("ses:"):
        return "403 Forbidden", [("Content-Type", "application/json"),
                                 ("x-amzn-ErrorType", "AccessDeniedException")], json.dumps({"message": message})
    if "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
        xml = ("<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
               f"<Message>{message}</Message></Error><RequestId>emulated</RequestId></ErrorResponse>")
        return "403 Forbidden", [("Content-Type", "text/xml")], xml
    headers = [("Content-Type", "application/x-amz-json-1.0")]
    if action.startswith("sqs:"):
        headers.append(("x-amzn-query-error", "AccessDenied;Sender"))
    body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", "message": message})
    return "400 Bad Request", headers, body
