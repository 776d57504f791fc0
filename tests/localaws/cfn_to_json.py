"""Prints a CloudFormation YAML template as JSON, keeping intrinsic functions as
{"Fn::Sub": ...} / {"Ref": ...} objects (PyYAML comes with moto in the project venv)."""

import json
import sys

import yaml


class Loader(yaml.SafeLoader):
    pass


def _intrinsic(loader, tag_suffix, node):
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            # The short form "Resource.Attribute" is YAML-only; JSON takes ["Resource", "Attribute"].
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


Loader.add_multi_constructor("!", _intrinsic)

with open(sys.argv[1], encoding="utf-8") as f:
    json.dump(yaml.load(f, Loader=Loader), sys.stdout)
