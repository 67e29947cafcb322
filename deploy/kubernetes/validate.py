#!/usr/bin/env python3
"""Validates the manifests in this directory against the Kubernetes schemas (the
kubernetes-validate package, strict: unknown fields are errors) and the Multus
NetworkAttachmentDefinition CRD's schema, which kubernetes-validate does not carry.

Prints one JSON line per finding the Rust test checks further:
  {"cni_config": "..."}      the config of each NetworkAttachmentDefinition
  {"daemon_args": [...]}     the arguments each container gives `umacvlan daemon`
Exit 1 on any validation error.
"""
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"

# openAPIV3Schema of network-attachment-definitions.k8s.cni.cncf.io (Multus, v1), tightened:
# spec may hold only config, and config must be a string.
NAD_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "k8s.cni.cncf.io/v1"},
        "kind": {"const": "NetworkAttachmentDefinition"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"config": {"type": "string"}},
        },
    },
}


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    errors = 0
    for path in sorted(here.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            what = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                if doc.get("kind") == "NetworkAttachmentDefinition":
                    jsonschema.validate(doc, NAD_SCHEMA)
                    print(json.dumps({"cni_config": doc["spec"]["config"]}))
                else:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                spec = doc.get("spec", {}).get("template", {}).get("spec", {})
                for c in spec.get("containers", []):
                    cmd = c.get("command", [])
                    if cmd[:2] == ["/usr/bin/umacvlan", "daemon"]:
                        print(json.dumps({"daemon_args": cmd[2:]}))
            except Exception as e:  # every validator error names the field
                print(f"{what}: {e}", file=sys.stderr)
                errors += 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
