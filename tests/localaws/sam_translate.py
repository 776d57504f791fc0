"""Translates the SAM template (template.yaml) into plain CloudFormation JSON, as CloudFormation's
SAM transform would, with aws-sam-translator (installed by scripts/setup into the infra venv).

Usage: sam_translate.py TEMPLATE CODE_S3_URI
CodeUri is the local workspace for `sam build`; a deployed stack needs the package in S3, so
every function's CodeUri is set to CODE_S3_URI first (as `sam package` would), and said so."""

import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template attaches no AWS managed policies, so nothing needs to be looked up in IAM."""

    def load(self):
        return {}


def main():
    path, code_uri = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    globals_fn = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        print(f"note: Globals.Function.CodeUri {globals_fn['CodeUri']!r} -> {code_uri} (what `sam package` does)", file=sys.stderr)
        globals_fn["CodeUri"] = code_uri
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            print(f"note: {name}.CodeUri -> {code_uri}", file=sys.stderr)
            resource["Properties"]["CodeUri"] = code_uri
    json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout, indent=1)


main()
