"""What each function's code called on the emulated AWS, against what its template role grants.

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


def main():
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
    grants = granted_actions()
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
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
