#!/usr/bin/env python3
"""Regenerates tests/sim/data/stripe.json from Stripe's official OpenAPI description and fixtures.

The Stripe simulator serves every list endpoint of the spec that returns the account's own data,
validates request parameters exactly as the spec describes them (names, nesting, types, enums,
required, what may be emptied with "") and builds new objects from Stripe's own example objects,
so that every field the real API returns is present.

Per object the output gives (see `catalogue_entry`): its collection and item paths and the item's
path parameter, the parent object and parent path parameter of a nested list, the id prefix and
length (from the example object's id), which operations exist (list, retrieve, create, update,
delete) with their query and body parameter trees, how the list's query filters apply, the example
object used as the template, the fields a create leaves null when their parameter is not given,
the fields of the object's schema the example leaves out (set once a write names them), and the
event types Stripe emits for it (from the event type enum of `POST /v1/webhook_endpoints`'
`enabled_events`).

Every list endpoint of the spec is either served or named in LEFT_OUT with the reason; an endpoint
that is neither (a newer spec) stops the script, so nothing is dropped silently.

Usage: python3 extract_stripe.py /path/to/spec3.yaml /path/to/fixtures3.json > stripe.json
(the reference copies live in the project's shared reference directory, stripe/spec3.2023-09-12.yaml
and stripe/fixtures3.2023-09-12.json). Needs PyYAML.
"""
import json
import sys

import yaml

# List endpoints that are not served, with why. Mirrored in the module docs of src/stripe.rs.
LEFT_OUT = {
    "/v1/events": "served apart: the account's event log, not a catalogue object",
    "/v1/test_helpers/test_clocks": "test helper (simulated time), not account data",
    "/v1/country_specs": "Stripe's reference data per country, not account data",
    "/v1/exchange_rates": "Stripe's currency rates, not account data",
    "/v1/tax_codes": "Stripe's catalogue of product tax codes, not account data",
    "/v1/reporting/report_types": "Stripe's catalogue of report types, not account data",
    "/v1/apps/secrets": "secrets of installed apps, listed per app user (`scope` required); "
    "credentials, not business records",
    "/v1/balance/history": "the older name of /v1/balance_transactions (same records)",
    "/v1/linked_accounts": "the older name of /v1/financial_connections/accounts",
    "/v1/linked_accounts/{account}/owners":
        "the older name of /v1/financial_connections/accounts/{account}/owners",
    "/v1/accounts/{account}/people": "the other name of /v1/accounts/{account}/persons",
    "/v1/customers/{customer}/subscriptions":
        "the same records as /v1/subscriptions?customer=",
    "/v1/customers/{customer}/payment_methods":
        "the same records as /v1/payment_methods?customer=",
    "/v1/charges/{charge}/refunds": "the same records as /v1/refunds?charge=",
    "/v1/invoices/upcoming/lines": "a preview computed on request, nothing stored",
    "/v1/credit_notes/preview/lines": "a preview computed on request, nothing stored",
    "/v1/customers/{customer}/sources":
        "legacy Sources API, a list mixing bank_account, card and source objects",
    "/v1/customers/{customer}/cards": "legacy Sources API (deprecated in the spec)",
    "/v1/customers/{customer}/bank_accounts": "legacy Sources API (deprecated in the spec)",
    "/v1/sources/{source}/source_transactions":
        "legacy Sources API; sources themselves cannot be listed",
    "/v1/accounts/{account}/external_accounts":
        "a connected account's payout destinations, a list mixing bank_account and card",
    "/v1/accounts/{account}/capabilities":
        "one entry per capability name (ids like card_payments), the account's settings; "
        "the account object carries them in `capabilities`",
    "/v1/tax/calculations/{calculation}/line_items":
        "tax calculations cannot be listed, so their lines cannot be reached",
    "/v1/tax/transactions/{transaction}/line_items":
        "tax transactions cannot be listed, so their lines cannot be reached",
}

# Event type prefixes that are not the object's name (Stripe's event names, from the enum).
EVENT_PREFIX = {
    "subscription": "customer.subscription",
    "dispute": "charge.dispute",
    "tax_id": "customer.tax_id",
    "fee_refund": "application_fee.refund",
}
# A created charge is reported as `charge.succeeded` (there is no `charge.created`).
EVENT_OVERRIDE = {("charge", "created"): "charge.succeeded"}

# Id prefixes the example objects get wrong: the example invoice line is an upcoming one (`il_tmp_`).
ID_PREFIX = {"line_item": "il_"}

# The field of a nested record naming its parent, where it is not the parent object's name.
PARENT_FIELD = {"fee_refund": "fee"}

# Query parameters every list has; not filters.
PAGING = {"limit", "starting_after", "ending_before", "expand"}

# The operations the events log needs (kept as before: method and path -> parameters).
EVENT_OPS = [("get", "/v1/events"), ("get", "/v1/events/{id}")]


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


def operation(op, spec):
    """An operation's query parameters (path parameters are the route's) and form body."""
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
    return entry


def list_object(op):
    """The object type a list operation returns, or None when it is not a list."""
    content = op["responses"]["200"]["content"].get("application/json", {})
    props = content.get("schema", {}).get("properties", {})
    if props.get("object", {}).get("enum") != ["list"] or "data" not in props:
        return None
    items = props["data"].get("items", {})
    if "$ref" in items:
        return items["$ref"].split("/")[-1]
    return "|".join(b.get("$ref", "?").split("/")[-1] for b in items.get("anyOf", []))


def path_params(path):
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]


def id_shape(obj, template):
    """Id prefix (up to the last `_`) and the number of characters after it."""
    i = template["id"].rfind("_")
    return ID_PREFIX.get(obj, template["id"][: i + 1]), len(template["id"]) - i - 1


def filters(query_node, template, parent_param):
    """How each list query parameter applies: equal (same-named field), range (gt/gte/lt/lte on
    a same-named timestamp), within (`ids` -> `id`: one of), or ignored (accepted, not applied)."""
    out = {"equal": [], "range": [], "within": {}, "ignored": []}
    for name, node in query_node["p"].items():
        if name in PAGING or name == "created" or name == parent_param:
            continue
        kinds = {b["t"] for b in node.get("of", [])} if node["t"] == "any" else {node["t"]}
        if node["t"] in ("string", "boolean", "integer") and name in template:
            out["equal"].append(name)
        elif kinds == {"object", "integer"} and name in template:
            out["range"].append(name)
        elif node["t"] == "array" and name.endswith("s") and name[:-1] in template:
            out["within"][name] = name[:-1]
        else:
            out["ignored"].append(name)
    return out


def event_types(obj, enum):
    """created/updated/deleted -> the event type Stripe emits, or None when it emits none."""
    candidates = [EVENT_PREFIX.get(obj), obj, obj.replace(".", "_")]
    prefix = next((c for c in candidates
                   if c and any(e.startswith(c + ".") for e in enum)), None)
    out = {}
    for verb in ("created", "updated", "deleted"):
        name = EVENT_OVERRIDE.get((obj, verb)) or (prefix and f"{prefix}.{verb}")
        out[verb] = name if name in enum else None
    return out


def shape(path):
    """A path with its parameter names blanked: `/v1/transfers/{id}/reversals/{id}` and
    `/v1/transfers/{transfer}/reversals/{id}` are the same route."""
    return "/".join("{}" if seg.startswith("{") else seg for seg in path.split("/"))


def item_path(spec, collection):
    """`/v1/things/{thing}` under a collection, if the spec has one."""
    want = shape(collection) + "/{}"
    return next((path for path in spec["paths"] if shape(path) == want), None)


def unset_on_create(spec, obj, create, template):
    """Fields a create sets from a same-named optional parameter and that are null when it is
    not given (a coupon created without `name` has `name: null`, not the example's name)."""
    if create is None or "body" not in create:
        return []
    props = spec["components"]["schemas"][obj].get("properties", {})
    return [name for name in create["body"]["p"]
            if name in template and name != "metadata" and props.get(name, {}).get("nullable")]


# Fields Stripe includes only when asked for with `expand[]` ("This field is not included by
# default", Stripe's API reference), which a create or update parameter of the same name sets
# without making them appear; only those that are write parameters matter here.
INCLUDABLE = {
    "customer": {"cash_balance", "tax"},
    "price": {"currency_options", "tiers"},
    "plan": {"tiers"},
    "coupon": {"applies_to", "currency_options"},
    "checkout.session": {"line_items"},
    "payment_link": {"line_items"},
    "quote": {"line_items"},
}


def is_list(spec, schema):
    """Whether a property holds a list object (`{object: "list", data: [...]}`)."""
    for alt in [schema] + schema.get("anyOf", []):
        if "$ref" in alt:
            alt = spec["components"]["schemas"][alt["$ref"].rsplit("/", 1)[-1]]
        if alt.get("properties", {}).get("object", {}).get("enum") == ["list"]:
            return True
    return False


def absent_fields(spec, obj, template):
    """Properties of the object's schema that its example leaves out: optional ones Stripe
    returns once they are set (a terminal configuration's `tipping`), which a create or update
    may set; not embedded lists nor fields included only when expanded."""
    props = spec["components"]["schemas"][obj].get("properties", {})
    return [name for name, schema in props.items()
            if name not in template and name not in INCLUDABLE.get(obj, ())
            and not is_list(spec, schema)]


def catalogue_entry(spec, fixtures, enum, collection, obj, parents):
    template = fixtures[obj]
    item = item_path(spec, collection)
    methods = spec["paths"][collection]
    ops = {"list": operation(methods["get"], spec)}
    if "post" in methods:
        ops["create"] = operation(methods["post"], spec)
    if item:
        for method, name in (("get", "retrieve"), ("post", "update"), ("delete", "delete")):
            if method in spec["paths"][item]:
                ops[name] = operation(spec["paths"][item][method], spec)
    parent = parent_param = parent_field = None
    params = path_params(collection)
    if params:
        parent_param = params[-1]
        parent_collection = collection[: collection.index("/{")]
        parent = parents[parent_collection]
        parent_field = next((f for f in (PARENT_FIELD.get(obj), parent, parent_param)
                             if f and f != "id" and f in template), None)
    name = obj if parent is None else f"{parent}.{collection.rsplit('/', 1)[-1]}"
    prefix, length = id_shape(obj, template)
    return {
        "name": name,
        "object": obj,
        "collection": collection,
        "item": item,
        "item_param": path_params(item)[-1] if item else None,
        "parent": parent,
        "parent_param": parent_param,
        "parent_field": parent_field,
        "id_prefix": prefix,
        "id_len": length,
        "ops": ops,
        "filters": filters(ops["list"]["query"], template, parent_param),
        "unset_on_create": unset_on_create(spec, obj, ops.get("create"), template),
        "absent_fields": absent_fields(spec, obj, template),
        "events": event_types(obj, enum),
        "template": template,
    }


def main():
    spec = yaml.load(open(sys.argv[1]), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    fixtures = json.load(open(sys.argv[2]))["resources"]
    enum = set(spec["paths"]["/v1/webhook_endpoints"]["post"]["requestBody"]["content"]
               ["application/x-www-form-urlencoded"]["schema"]["properties"]["enabled_events"]
               ["items"]["enum"])
    lists = {}
    for path, methods in spec["paths"].items():
        if "get" in methods and (obj := list_object(methods["get"])):
            lists[path] = obj
    unknown = sorted(p for p in lists if p not in LEFT_OUT and "|" in lists[p])
    if unknown:
        sys.exit(f"list endpoints of mixed objects not in LEFT_OUT: {unknown}")
    gone = sorted(p for p in LEFT_OUT if p not in lists)
    if gone:
        sys.exit(f"LEFT_OUT names endpoints the spec does not have: {gone}")
    served = sorted((p for p in lists if p not in LEFT_OUT), key=lambda p: (p.count("{"), p))
    parents = {}  # collection -> catalogue name, for nested lists
    objects = []
    for path in served:
        entry = catalogue_entry(spec, fixtures, enum, path, lists[path], parents)
        if entry["parent"] is None:
            parents[path] = entry["name"]
        objects.append(entry)
    out = {
        "source": "stripe/openapi spec3.yaml + fixtures3.json, info.version "
        + spec["info"]["version"],
        "api_version": spec["info"]["version"],
        "ops": {f"{m.upper()} {p}": operation(spec["paths"][p][m], spec) for m, p in EVENT_OPS},
        "objects": objects,
        "left_out": LEFT_OUT,
    }
    json.dump(out, sys.stdout, indent=None, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
