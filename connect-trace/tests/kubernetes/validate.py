"""Validates Kubernetes manifests strictly, with no cluster.

Built-in kinds are checked against the API server's schemas that
kubernetes-validate ships (its strict variant: unknown fields are errors),
for each Kubernetes version given. Prometheus Operator kinds are checked
against the operator's models, generated from its CRDs
(cloudcoil-models-prometheus-operator), with unknown fields refused as well.
A kind with no schema is an error, not a warning.

Usage: validate.py VERSION[,VERSION...] FILE...
Prints one line per resource and version; exits 1 if any fails.
"""

import sys

import cloudcoil.pydantic
import yaml

# The models accept unknown fields; refuse them, as the API server's strict
# field validation does. Set before the models are imported, so that every
# model class inherits it.
cloudcoil.pydantic.BaseModel.model_config["extra"] = "forbid"

import kubernetes_validate.utils as kubernetes  # noqa: E402
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator  # noqa: E402

OPERATOR_API = "monitoring.coreos.com/v1"


def check(resource, versions):
    """Yields (ok, what) for each check of one resource."""
    kind = resource.get("kind")
    name = "%s/%s" % (kind, resource.get("metadata", {}).get("name"))
    if resource.get("apiVersion") == OPERATOR_API:
        model = getattr(prometheus_operator, kind or "", None)
        if model is None:
            yield False, "%s: no Prometheus Operator model" % name
            return
        try:
            model.model_validate(resource)
            yield True, "%s against the Prometheus Operator CRD models" % name
        except Exception as error:  # pydantic's ValidationError lists every field
            yield False, "%s: %s" % (name, " ".join(str(error).split()))
        return
    for version in versions:
        try:
            kubernetes.validate(resource, version, strict=True)
            yield True, "%s against Kubernetes %s (strict)" % (name, version)
        except kubernetes.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            yield False, "%s against Kubernetes %s: %s: %s" % (name, version, path, error.message)
        except kubernetes.SchemaNotFoundError as error:
            yield False, "%s: %s" % (name, error.message)


def main():
    versions = sys.argv[1].split(",")
    failed = False
    for filename in sys.argv[2:]:
        with open(filename) as stream:
            resources = [doc for doc in yaml.safe_load_all(stream) if doc]
        if not resources:
            print("FAIL %s: no resource" % filename)
            failed = True
        for resource in resources:
            for ok, what in check(resource, versions):
                print("%s %s: %s" % ("ok" if ok else "FAIL", filename, what))
                failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
