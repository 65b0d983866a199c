#!/usr/bin/env python3
"""Regenerates tests/sim/data/stripe.json from Stripe's official OpenAPI description and fixtures.

The Stripe simulator validates request parameters exactly as the published spec describes them
(names, nesting, types, enums, required, what may be emptied with "") and builds new objects from
Stripe's own example objects, so that every field the real API returns is present.

Usage: python3 extract_stripe.py /path/to/spec3.yaml /path/to/fixtures3.json > stripe.json
(the reference copies live in the project's shared reference directory, stripe/spec3.2023-09-12.yaml
and stripe/fixtures3.2023-09-12.json). Needs PyYAML.
"""
import json
import sys

import yaml

OPS = [
    ("get", "/v1/customers"), ("post", "/v1/customers"),
    ("get", "/v1/customers/{customer}"), ("post", "/v1/customers/{customer}"),
    ("delete", "/v1/customers/{customer}"),
    ("get", "/v1/products"), ("post", "/v1/products"),
    ("get", "/v1/products/{id}"), ("post", "/v1/products/{id}"), ("delete", "/v1/products/{id}"),
    ("get", "/v1/prices"), ("post", "/v1/prices"),
    ("get", "/v1/prices/{price}"), ("post", "/v1/prices/{price}"),
    ("get", "/v1/subscriptions"), ("post", "/v1/subscriptions"),
    ("get", "/v1/subscriptions/{subscription_exposed_id}"),
    ("post", "/v1/subscriptions/{subscription_exposed_id}"),
    ("delete", "/v1/subscriptions/{subscription_exposed_id}"),
    ("get", "/v1/invoices"), ("post", "/v1/invoices"),
    ("get", "/v1/invoices/{invoice}"), ("post", "/v1/invoices/{invoice}"),
    ("delete", "/v1/invoices/{invoice}"),
    ("get", "/v1/payment_intents"), ("post", "/v1/payment_intents"),
    ("get", "/v1/payment_intents/{intent}"), ("post", "/v1/payment_intents/{intent}"),
    ("get", "/v1/charges"), ("post", "/v1/charges"),
    ("get", "/v1/charges/{charge}"), ("post", "/v1/charges/{charge}"),
    ("get", "/v1/events"), ("get", "/v1/events/{id}"),
]
FIXTURES = ["customer", "product", "price", "subscription", "subscription_item", "invoice",
            "payment_intent", "charge", "event", "deleted_customer", "deleted_product",
            "deleted_invoice"]


def conv(s, spec):
    """One parameter schema -> compact node: t (type), p (properties), r (required),
    i (array items), e (enum), max (maxLength), empty (may be sent as "" to unset), of (alternatives)."""
    if "$ref" in s:
        name = s["$ref"].split("/")[-1]
        s = spec["components"]["schemas"][name]
    if "anyOf" in s:
        branches = s["anyOf"]
        is_empty = lambda b: b.get("enum") == [""]
        empty = any(is_empty(b) for b in branches)
        rest = [conv(b, spec) for b in branches if not is_empty(b)]
        node = rest[0] if len(rest) == 1 else {"t": "any", "of": rest}
        if empty:
            node = dict(node, empty=True)
        return node
    t = s.get("type", "string")
    if t == "object":
        props = s.get("properties") or {}
        if not props and s.get("additionalProperties") not in (None, False):
            return {"t": "map"}
        node = {"t": "object", "p": {k: conv(v, spec) for k, v in props.items()}}
        if s.get("required"):
            node["r"] = s["required"]
        return node
    if t == "array":
        return {"t": "array", "i": conv(s.get("items", {}), spec)}
    node = {"t": t}
    if "enum" in s:
        node["e"] = [v for v in s["enum"] if v != ""]
        if "" in s["enum"]:
            node["empty"] = True
    if "maxLength" in s:
        node["max"] = s["maxLength"]
    return node


def main():
    spec = yaml.load(open(sys.argv[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    fixtures = json.load(open(sys.argv[2]))["resources"]
    ops = {}
    for method, path in OPS:
        op = spec["paths"][path][method]
        query = {"t": "object", "p": {}}
        for p in op.get("parameters", []):
            if p["in"] == "query":
                query["p"][p["name"]] = conv(p["schema"], spec)
                if p.get("required"):
                    query.setdefault("r", []).append(p["name"])
        body = (op.get("requestBody", {}).get("content", {})
                .get("application/x-www-form-urlencoded", {}).get("schema"))
        entry = {"query": query}
        if body is not None:
            entry["body"] = conv(body, spec)
        ops[f"{method.upper()} {path}"] = entry
    out = {
        "source": "stripe/openapi spec3.yaml + fixtures3.json, info.version "
        + spec["info"]["version"],
        "api_version": spec["info"]["version"],
        "ops": ops,
        "fixtures": {k: fixtures[k] for k in FIXTURES},
    }
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
