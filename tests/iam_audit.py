"""What each function's code calls on AWS, against what its template role grants.

Statically: every AWS SDK operation the code in shared/src/aws calls (read off the source against
the SDK crates' own operation lists) must be granted to at least one function's role, so a new
call without a grant fails here even before a test exercises it.

Dynamically:
Run after the whole-stack tests, against the emulators they used (AWS_ENDPOINT_URL and
AWS_ENDPOINT_URL_SQS): the emulator (scripts/moto_server.py) counted every call each function's
principal made. This fails when a function was refused a call anywhere in the run — also where
the code swallowed the error (a lost attempt record, an alert not sent) and no test would have
noticed — except the deliberate refusals of tests named for them (principals whose name starts
with `Outside`). It prints, per function, the actions its code called and the granted actions
no test exercised, so a grant nothing uses is seen.

    .venv/bin/python tests/iam_audit.py
"""
import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.request

from cfnlint.decode import cfn_yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def calls():
    endpoints = {os.environ["AWS_ENDPOINT_URL"], os.environ.get("AWS_ENDPOINT_URL_SQS", os.environ["AWS_ENDPOINT_URL"])}
    out = []
    for endpoint in endpoints:
        with urllib.request.urlopen(f"{endpoint}/tidings-emulator/iam") as response:
            out.extend(json.load(response))
    return out


def granted_actions():
    template = cfn_yaml.load(str(ROOT / "infra" / "template.yaml"))
    resources = template["Resources"]
    grants = {}
    for name, res in resources.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        role = res["Properties"]["Role"]["Fn::GetAtt"][0]
        actions = set()
        for policy in resources[role]["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                actions.update(a for a in listed if not a.startswith("logs:"))
        grants[name] = actions
    return grants


# The SDK crates whose operations the code may call, and the IAM service prefix of each.
SERVICES = {"aws-sdk-dynamodb": "dynamodb", "aws-sdk-sqs": "sqs", "aws-sdk-sesv2": "ses"}


def sdk_operations():
    """snake_case operation name -> IAM action, from the SDK crates' `src/operation/` modules."""
    metadata = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"], cwd=ROOT,
                                         check=True, capture_output=True, text=True).stdout)
    operations = {}
    for package in metadata["packages"]:
        prefix = SERVICES.get(package["name"])
        if prefix is None:
            continue
        for module in (pathlib.Path(package["manifest_path"]).parent / "src" / "operation").iterdir():
            if module.is_dir():
                action = "".join(part.capitalize() for part in module.name.split("_"))
                if prefix == "sqs" and action.endswith("Batch"):
                    action = action[: -len("Batch")]  # SQS authorizes a batch as its single action
                operations.setdefault(module.name, f"{prefix}:{action}")
    return operations


def called_actions():
    """The IAM actions of the SDK calls in the adapters' code (`.operation()` on a client)."""
    operations = sdk_operations()
    called = {}
    for source in (ROOT / "shared" / "src" / "aws").rglob("*.rs"):
        for match in re.finditer(r"\.\s*([a-z_]+)\(\)", source.read_text()):
            action = operations.get(match.group(1))
            if action:
                called.setdefault(action, source.relative_to(ROOT).as_posix())
    return called


def main():
    grants = granted_actions()
    granted_anywhere = set().union(*grants.values())
    called = called_actions()
    ungranted = {a: where for a, where in called.items() if a not in granted_anywhere}
    print(f"the code calls {len(called)} AWS actions: {sorted(called)}")
    for action, where in sorted(ungranted.items()):
        print(f"NOT GRANTED: {where} calls {action}, which no function's role allows")
    used = collections.defaultdict(collections.Counter)
    refused = []
    for call in calls():
        function = call["principal"].rsplit("-", 1)[0]
        if function.startswith("Outside"):
            continue
        if call["allowed"]:
            used[function][call["action"]] += call["count"]
        else:
            refused.append(call)
    for function in sorted(grants):
        print(f"{function}: called {dict(sorted(used[function].items()))}")
        idle = sorted(grants[function] - set(used[function]))
        if idle:
            print(f"  granted, not called in this run: {idle}")
    if not used:
        print("no function made a call: did the whole-stack tests run against these emulators?")
        return 1
    for call in refused:
        print(f"REFUSED: {call['principal']} {call['action']} on {call['resource']} ({call['count']}x)")
    return 1 if refused or ungranted else 0


if __name__ == "__main__":
    sys.exit(main())
