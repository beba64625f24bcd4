"""Validate OCSF API Activity events (JSON lines, optionally gzip) against the OCSF 1.5.0 schema.

Usage: python ocsf_validate.py FILE [FILE...]      exit 0 if every event is valid, else 1.

The schema is the official OCSF 1.5.0 source as the PyPI package pydantic-ocsf ships it
(ocsf/schemas/v1_5_0.json; the package is pinned in requirements.txt). Its rules are applied as
written there: every attribute the class (api_activity, extending application, extending
base_event) marks `required` is present, recursively for the objects it holds (metadata.product,
metadata.version, api.operation...); `at_least_one` constraints hold; values have the
dictionary's base types; attributes with an enum take a listed value; no attribute is unknown to
the dictionary; class_uid / category_uid / type_uid agree. (The package's generated pydantic
models are not used: in 3.0.0 they type `http_request.http_method`, a string enum in the schema,
as an integer.)
"""
import gzip
import importlib.resources
import json
import sys

VERSION = "v1_5_0"
CLASS = "api_activity"


def load_schema():
    text = importlib.resources.files("ocsf").joinpath(f"schemas/{VERSION}.json").read_text()
    return json.loads(text)


SCHEMA = load_schema()
DICT = SCHEMA["dictionary"]["attributes"]
TYPES = SCHEMA["dictionary"].get("types", {}).get("attributes", {})
BASE_JSON = {
    "string_t": str,
    "integer_t": int,
    "long_t": int,
    "float_t": (int, float),
    "boolean_t": bool,
    "json_t": object,
    "object_t": dict,
}


def class_attributes(name):
    """Attributes of an event class with its ancestors' (the class's own override them)."""
    ev = SCHEMA["events"][name]
    attrs = {}
    if ev.get("extends"):
        attrs.update(class_attributes(ev["extends"]))
    for k, v in ev.get("attributes", {}).items():
        if k == "$include":
            continue
        attrs[k] = {**attrs.get(k, {}), **v}
    return attrs


def object_def(name):
    """An object's attributes and constraints, with those it extends."""
    ob = SCHEMA["objects"].get(name)
    if ob is None:
        return {}, {}
    attrs, constraints = {}, {}
    if ob.get("extends") and ob["extends"] in SCHEMA["objects"]:
        attrs, constraints = object_def(ob["extends"])
        attrs, constraints = dict(attrs), dict(constraints)
    for k, v in ob.get("attributes", {}).items():
        if k != "$include":
            attrs[k] = {**attrs.get(k, {}), **v}
    constraints.update(ob.get("constraints", {}))
    return attrs, constraints


def base_type(t):
    seen = 0
    while t not in BASE_JSON and t in TYPES and seen < 10:
        t = TYPES[t].get("type", "string_t")
        seen += 1
    return t


def check_value(path, name, spec, value, errors, depth):
    d = DICT.get(name, {})
    t = spec.get("type") or d.get("type")
    is_array = spec.get("is_array", d.get("is_array", False))
    if t is None:
        errors.append(f"{path}: attribute {name!r} is not in the OCSF dictionary")
        return
    values = value if is_array else [value]
    if is_array and not isinstance(value, list):
        errors.append(f"{path}: must be an array")
        return
    enum = spec.get("enum") or d.get("enum")
    for i, v in enumerate(values):
        p = f"{path}[{i}]" if is_array else path
        if t in SCHEMA["objects"] or t == "object":
            if not isinstance(v, dict):
                errors.append(f"{p}: must be an object ({t})")
            elif t != "object":
                check_object(p, t, v, errors, depth + 1)
            continue
        bt = base_type(t)
        py = BASE_JSON.get(bt, object)
        if py is int and (isinstance(v, bool) or not isinstance(v, int)):
            errors.append(f"{p}: must be an integer ({t})")
        elif py is not object and py is not int and not isinstance(v, py):
            errors.append(f"{p}: must be {bt} ({t})")
        # The *_uid classification enums are filled in per class by the schema compiler; they
        # are checked below, by their arithmetic.
        if name in ("class_uid", "category_uid", "type_uid"):
            enum = None
        if enum and isinstance(v, (int, str)) and not isinstance(v, bool) and str(v) not in enum:
            errors.append(f"{p}: {v!r} is not one of {sorted(enum)}")


def check_attrs(path, attrs, constraints, obj, errors, depth):
    for name, spec in attrs.items():
        if spec.get("requirement") == "required" and obj.get(name) in (None, "", []):
            errors.append(f"{path}.{name}: required by OCSF {SCHEMA['version']}")
    group = constraints.get("at_least_one")
    if group and not any(obj.get(a) not in (None, "", []) for a in group):
        errors.append(f"{path}: needs at least one of {group}")
    for name, value in obj.items():
        if depth > 8:
            break
        spec = attrs.get(name)
        if spec is None:
            if name in DICT:
                # A dictionary attribute the class or object does not list (e.g. from a profile).
                spec = {}
            else:
                errors.append(f"{path}.{name}: not an attribute of this class or object")
                continue
        check_value(f"{path}.{name}", name, spec, value, errors, depth)


def check_object(path, name, obj, errors, depth):
    attrs, constraints = object_def(name)
    check_attrs(path, attrs, constraints, obj, errors, depth)


def check_event(event):
    errors = []
    if not isinstance(event, dict):
        return ["event is not an object"]
    check_attrs("$", class_attributes(CLASS), {}, event, errors, 0)
    uid = SCHEMA["events"][CLASS].get("uid", 3)
    if event.get("category_uid") != 6 or event.get("class_uid") != 6000 + uid:
        errors.append("$: class_uid must be 6003 and category_uid 6 (API Activity)")
    act = event.get("activity_id")
    if isinstance(act, int) and event.get("type_uid") != event.get("class_uid", 0) * 100 + act:
        errors.append("$.type_uid: must be class_uid * 100 + activity_id")
    return errors


def lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def main(paths):
    bad = total = 0
    for path in paths:
        for n, line in lines(path):
            total += 1
            try:
                event = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: not JSON: {e}")
                bad += 1
                continue
            errors = check_event(event)
            if errors:
                bad += 1
                for e in errors:
                    print(f"{path}:{n}: {e}")
    print(f"{total} events, {bad} invalid (OCSF {SCHEMA['version']} {CLASS})")
    return 0 if total and not bad else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
