#!/usr/bin/env python3
"""Checks a running otakey agent's HTTPS API against docs/openapi.json.

    python3 tests/api_check.py --spec docs/openapi.json --url https://127.0.0.1:PORT \
        --cafile CA.pem --token TOKEN [--read-token TOKEN2] [--device ID] [--campaign ID] \
        [--batch HEX16] [--mutate]
    python3 tests/api_check.py [--spec docs/openapi.json] --self-test

Prints one line per check, `ok: ...` or `FAILED: ...` (`skip: ...` for a check it has no value
for, `note: ...` for what the API contract leaves open) and exits 1 if any check failed.

Without --mutate it changes nothing on a correct server: the mutating calls it makes are the
ones that must be refused (401, 403, 400, 404, 405, 413). --mutate also creates a product batch
and, with --device, a one-device rotation campaign that it pauses, resumes and aborts, and
allows --device to claim again. --revoke ID revokes that device.

Importable: validate(schema, value, spec) returns the list of errors (empty when value is
valid) for the JSON-schema subset the spec uses (type, properties, required,
additionalProperties, items, enum, nullable, pattern, minimum/maximum, minLength/maxLength,
$ref into the spec). Python 3 standard library only.
"""
import argparse
import http.client
import json
import os
import re
import socket
import ssl
import sys
import urllib.parse

__all__ = ["validate", "resolve", "load_spec", "SchemaError"]

# Keywords that only document; everything else must be understood or validate() refuses it.
_IGNORED = {"description", "format", "default", "example", "title", "readOnly", "writeOnly",
            "deprecated", "externalDocs", "xml"}
_HANDLED = {"$ref", "type", "properties", "required", "additionalProperties", "items", "enum",
            "nullable", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems",
            "maxItems"}


class SchemaError(Exception):
    """The schema uses something this validator does not implement."""


def load_spec(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resolve(node, spec):
    """Follows $ref (local JSON pointers, "#/...") until a node without one."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SchemaError("unsupported $ref %r" % (ref,))
        cur = spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(cur, dict) or part not in cur:
                raise SchemaError("$ref %s does not resolve" % ref)
            cur = cur[part]
        node = cur
        seen += 1
        if seen > 64:
            raise SchemaError("$ref loop at %s" % ref)
    return node


def _type_ok(t, v):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        if isinstance(v, bool):
            return False
        return isinstance(v, int)  # strict: an integer is written without a fraction
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    raise SchemaError("unsupported type %r" % (t,))


_REGEX_CACHE = {}


def _regex(pattern):
    """An ECMA-262 pattern in Python: `$` ends the string only (Python's also matches before a
    final newline), `\\d` is ASCII only."""
    rx = _REGEX_CACHE.get(pattern)
    if rx is None:
        out, i, in_class = [], 0, False
        while i < len(pattern):
            ch = pattern[i]
            if ch == "\\":
                out.append(pattern[i:i + 2])
                i += 2
                continue
            if ch == "[" and not in_class:
                in_class = True
            elif ch == "]" and in_class:
                in_class = False
            elif ch == "$" and not in_class:
                ch = r"\Z"
            out.append(ch)
            i += 1
        rx = _REGEX_CACHE[pattern] = re.compile("".join(out), re.ASCII)
    return rx


def _same(a, b):
    """JSON equality: true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _show(v):
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def validate(schema, value, spec, where="$"):
    """Errors of value against schema (a list of strings; empty: valid)."""
    errors = []
    _validate(schema, value, spec, where, errors)
    return errors


def _validate(schema, value, spec, where, errors):
    schema = resolve(schema, spec)
    if not isinstance(schema, dict):
        raise SchemaError("%s: schema is not an object" % where)
    unknown = set(schema) - _HANDLED - _IGNORED
    unknown = {k for k in unknown if not k.startswith("x-")}
    if unknown:
        raise SchemaError("%s: unsupported keywords %s" % (where, ", ".join(sorted(unknown))))
    if value is None:
        if schema.get("nullable") is True:
            return
        if "type" in schema or "enum" in schema:
            errors.append("%s: null is not allowed" % where)
            return
    t = schema.get("type")
    if t is not None and not _type_ok(t, value):
        errors.append("%s: %s is not of type %s" % (where, _show(value), t))
        return
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        allowed = _show(schema["enum"])
        if len(allowed) > 60:
            allowed = "the %d values of the spec" % len(schema["enum"])
        errors.append("%s: %s is not one of %s" % (where, _show(value), allowed))
    if isinstance(value, str):
        if "pattern" in schema and _regex(schema["pattern"]).search(value) is None:
            errors.append("%s: %s does not match %s" % (where, _show(value), schema["pattern"]))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append("%s: shorter than %d" % (where, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (where, schema["maxLength"]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("%s: %s is below the minimum %s" % (where, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append("%s: %s is above the maximum %s" % (where, value, schema["maximum"]))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append("%s: required field %r is missing" % (where, name))
        extra = schema.get("additionalProperties", True)
        for name, v in value.items():
            sub = "%s.%s" % (where, name)
            if name in props:
                _validate(props[name], v, spec, sub, errors)
            elif extra is False:
                errors.append("%s: field %r is not in the spec" % (where, name))
            elif isinstance(extra, dict):
                _validate(extra, v, spec, sub, errors)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append("%s: more than %d items" % (where, schema["maxItems"]))
        if "items" in schema:
            for i, v in enumerate(value):
                _validate(schema["items"], v, spec, "%s[%d]" % (where, i), errors)


# ---------------------------------------------------------------------------------------------
# The spec's shape (used by the checker and checked by the self-test)

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def schema_ref(name):
    return {"$ref": "#/components/schemas/" + name}


def operations(spec):
    for path, item in spec["paths"].items():
        for m in METHODS:
            if m in item:
                yield path, m, item[m]


def response_of(spec, op, status):
    """(response object, its content dict) for status, or (None, None)."""
    r = op.get("responses", {}).get(str(status))
    if r is None:
        return None, None
    r = resolve(r, spec)
    return r, r.get("content", {})


def role_of(op):
    return op.get("x-otakey-role", "read")


def lint_spec(spec):
    """Consistency problems of the spec itself (a list of strings)."""
    problems = []

    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    resolve(node, spec)
                except SchemaError as e:
                    problems.append("%s: %s" % (where, e))
            for k, v in node.items():
                walk(v, "%s/%s" % (where, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s/%d" % (where, i))

    walk(spec, "#")
    for name, s in spec.get("components", {}).get("schemas", {}).items():
        stack = [("#/components/schemas/" + name, s)]
        while stack:
            where, node = stack.pop()
            if not isinstance(node, dict) or "$ref" in node:
                continue
            if node.get("type") == "object":
                if node.get("additionalProperties") is not False:
                    problems.append("%s: object without additionalProperties: false" % where)
                for r in node.get("required", []):
                    if r not in node.get("properties", {}):
                        problems.append("%s: required %r is not a property" % (where, r))
                for k, v in node.get("properties", {}).items():
                    stack.append(("%s/properties/%s" % (where, k), v))
            if "items" in node:
                stack.append((where + "/items", node["items"]))
            if "enum" in node and None in node["enum"] and node.get("nullable") is not True:
                problems.append("%s: null in enum without nullable" % where)
    for path, m, op in operations(spec):
        names = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in (resolve(p, spec) for p in op.get("parameters", []))
                    if p.get("in") == "path"}
        if names != declared:
            problems.append("%s %s: path parameters %s, declared %s" % (
                m.upper(), path, sorted(names), sorted(declared)))
        if not op.get("responses"):
            problems.append("%s %s: no responses" % (m.upper(), path))
        if role_of(op) not in ("none", "read", "operator"):
            problems.append("%s %s: role %r" % (m.upper(), path, role_of(op)))
        if (role_of(op) == "none") != (op.get("security") == []):
            problems.append("%s %s: role none iff security []" % (m.upper(), path))
        if m != "get" and role_of(op) != "operator":
            problems.append("%s %s: a mutating call must need operator" % (m.upper(), path))
        for code in op.get("responses", {}):
            r = resolve(op["responses"][code], spec)
            if code >= "400" and "application/json" in r.get("content", {}):
                if r["content"]["application/json"].get("schema") != schema_ref("Error"):
                    problems.append("%s %s: %s is not an Error" % (m.upper(), path, code))
    return problems


# ---------------------------------------------------------------------------------------------
# Self-test of the validator on the spec's own schemas

def _good_device():
    return {"id": "0123456789abcdef0123456789abcdef", "batch": "0000000100000001",
            "state": "active", "version": 3, "cloud": 1, "user": "d-0123", "pending_version": 0,
            "issued": 3, "want": "none", "last_seen_ms": 1712345678901}


def _good_campaign():
    return {"id": 7, "kind": "switch", "target_cloud": 2, "selector": "batch:0000000100000001",
            "state": "paused", "pause_reason": "error_threshold", "rate": 100, "canary": 5,
            "max_failures": 3, "total": 20, "started": 8, "done": 5, "failed": 3,
            "created_ms": 1712345678901}


def _with(d, **kw):
    d = dict(d)
    for k, v in kw.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


_DROP = object()


def self_test(spec):
    """Runs the validator on good and bad samples; returns the number of wrong results."""
    S = schema_ref
    dev = _good_device()
    camp = _good_campaign()
    row = {"seq": 12, "ts_ms": 1712345678901, "kind": "commit", "msg_type": "CONFIRM",
           "device": dev["id"], "version": 3, "code": "OK", "actor": None}
    cases = [
        # (name, schema, value, valid?)
        ("device", S("Device"), dev, True),
        ("device version written 3.0", S("Device"), _with(dev, version=3.0), False),
        ("device with an extra field", S("Device"), _with(dev, secret="x"), False),
        ("device without want", S("Device"), _with(dev, want=_DROP), False),
        ("device id in capitals", S("Device"), _with(dev, id=dev["id"].upper()), False),
        ("device id 31 digits", S("Device"), _with(dev, id=dev["id"][:31]), False),
        ("device id with a newline", S("Device"), _with(dev, id=dev["id"] + "\n"), False),
        ("device state unknown", S("Device"), _with(dev, state="lost"), False),
        ("device version negative", S("Device"), _with(dev, version=-1), False),
        ("device version above 32 bits", S("Device"), _with(dev, version=2 ** 32), False),
        ("device version as string", S("Device"), _with(dev, version="3"), False),
        ("device version 3.5", S("Device"), _with(dev, version=3.5), False),
        ("device version true", S("Device"), _with(dev, version=True), False),
        ("device version null", S("Device"), _with(dev, version=None), False),
        ("device list", S("DeviceList"), {"devices": [dev, dev], "next": dev["id"]}, True),
        ("device list, last page", S("DeviceList"), {"devices": [], "next": None}, True),
        ("device list without next", S("DeviceList"), {"devices": []}, False),
        ("device list with a bad item", S("DeviceList"),
         {"devices": [dev, _with(dev, batch="xyz")], "next": None}, False),
        ("device list next malformed", S("DeviceList"), {"devices": [], "next": "42"}, False),
        ("devices not an array", S("DeviceList"), {"devices": dev, "next": None}, False),
        ("campaign", S("Campaign"), camp, True),
        ("campaign not paused", S("Campaign"),
         _with(camp, state="running", pause_reason=None), True),
        ("campaign pause reason unknown", S("Campaign"), _with(camp, pause_reason="tired"),
         False),
        ("campaign with failures is no Campaign", S("Campaign"), _with(camp, failures=[]),
         False),
        ("campaign selector ids", S("Campaign"),
         _with(camp, selector="ids:%s,%s" % (dev["id"], dev["id"])), True),
        ("campaign selector malformed", S("Campaign"), _with(camp, selector="ids:"), False),
        ("campaign state unknown", S("Campaign"), _with(camp, state="finished"), False),
        ("campaign detail", S("CampaignDetail"),
         _with(camp, failures=[{"device": dev["id"], "reason": "CLOUD"}]), True),
        ("campaign detail without failures", S("CampaignDetail"), camp, False),
        ("campaign failure reason unknown", S("CampaignDetail"),
         _with(camp, failures=[{"device": dev["id"], "reason": "cloud"}]), False),
        ("campaign list", S("CampaignList"), {"campaigns": [camp]}, True),
        ("audit row", S("AuditRow"), row, True),
        ("audit row of an operator", S("AuditRow"),
         _with(row, kind="product_created", msg_type=None, device=None, actor="api:alice"),
         True),
        ("audit row of a campaign", S("AuditRow"),
         _with(row, kind="campaign", msg_type=None, device=None, version=7, code="paused",
               actor="api:alice"), True),
        ("audit row kind in CLI spelling", S("AuditRow"), _with(row, kind="claim-issued"), False),
        ("audit row msg_type as number", S("AuditRow"), _with(row, msg_type=5), False),
        ("audit row without actor", S("AuditRow"), _with(row, actor=_DROP), False),
        ("audit row actor empty", S("AuditRow"), _with(row, actor=""), False),
        ("audit row actor of the CLI", S("AuditRow"), _with(row, actor="cli:root"), True),
        ("audit list", S("AuditList"), {"rows": [row], "next": 12}, True),
        ("audit list next 0", S("AuditList"), {"rows": [row], "next": 0}, False),
        ("audit verify", S("AuditVerify"), {"ok": True, "rows": 12, "bad_seq": None}, True),
        ("audit verify tampered", S("AuditVerify"), {"ok": False, "rows": 12, "bad_seq": 4},
         True),
        ("audit verify ok as 1", S("AuditVerify"), {"ok": 1, "rows": 12, "bad_seq": None},
         False),
        ("product", S("Product"), {"batch": "0000000100000001", "name": "s", "devices": 0}, True),
        ("product list", S("ProductList"),
         {"products": [{"batch": "0000000100000001", "name": "s", "devices": 2}]}, True),
        ("product created", S("ProductCreated"),
         {"batch": "0000000100000001", "name": "s", "pk": "ab" * 32}, True),
        ("product created, short pk", S("ProductCreated"),
         {"batch": "0000000100000001", "name": "s", "pk": "ab" * 31}, False),
        ("product created, no pk", S("ProductCreated"),
         {"batch": "0000000100000001", "name": "s"}, False),
        ("cloud", S("Cloud"), {"id": 1, "type": "x509", "host": "127.0.0.1", "port": 8883,
                               "tls": True, "healthy": True, "latency_ms": 1.5}, True),
        ("cloud unreachable", S("Cloud"),
         {"id": 1, "type": "dynsec", "host": "h", "port": 8883, "tls": True, "healthy": False,
          "latency_ms": None}, True),
        ("cloud port 0", S("Cloud"), {"id": 1, "type": "dynsec", "host": "h", "port": 0,
                                      "tls": True, "healthy": True, "latency_ms": 1}, False),
        ("cloud type unknown", S("Cloud"), {"id": 1, "type": "aws", "host": "h", "port": 1,
                                            "tls": True, "healthy": True, "latency_ms": 1}, False),
        ("cloud tls as 1", S("Cloud"), {"id": 1, "type": "passwd", "host": "h", "port": 1,
                                        "tls": 1, "healthy": True, "latency_ms": 1}, False),
        ("health", S("Health"), {"ok": True}, True),
        ("health not ok", S("Health"), {"ok": False}, False),
        ("error", S("Error"), {"error": "no device", "code": "NOT_FOUND"}, True),
        ("error unauthorized", S("Error"), {"error": "no token", "code": "UNAUTHORIZED"}, True),
        ("error with an unknown code", S("Error"), {"error": "x", "code": "TEAPOT"}, False),
        ("error without code", S("Error"), {"error": "x"}, False),
        ("error as a string", S("Error"), "not found", False),
        ("campaign request", S("CampaignCreate"), {"kind": "rotate", "selector": "all"}, True),
        ("campaign request, kind unknown", S("CampaignCreate"),
         {"kind": "wipe", "selector": "all"}, False),
        ("campaign request, rate 0", S("CampaignCreate"),
         {"kind": "rotate", "selector": "all", "rate": 0}, False),
    ]
    wrong = 0
    for name, schema, value, want in cases:
        try:
            errs = validate(schema, value, spec)
        except SchemaError as e:
            print("FAILED: self-test %s: %s" % (name, e))
            wrong += 1
            continue
        if (not errs) == want:
            print("ok: self-test %s: %s" % (name, "valid" if want else errs[0]))
        else:
            wrong += 1
            print("FAILED: self-test %s: expected %s, got %s" % (
                name, "valid" if want else "invalid", errs[0] if errs else "valid"))
    # The validator refuses what it does not implement rather than passing it.
    try:
        validate({"oneOf": [{"type": "string"}]}, "x", spec)
        print("FAILED: self-test unsupported keyword: accepted")
        wrong += 1
    except SchemaError:
        print("ok: self-test unsupported keyword: refused")
    # Every schema validates its own samples, every object is closed, every $ref resolves.
    for p in lint_spec(spec):
        print("FAILED: spec %s" % p)
        wrong += 1
    if spec.get("openapi") != "3.0.3":
        print("FAILED: spec: openapi is %r, not 3.0.3" % spec.get("openapi"))
        wrong += 1
    return wrong


# ---------------------------------------------------------------------------------------------
# The checker

class Response:
    def __init__(self, status, headers, body, error=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.error = error

    def ctype(self):
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class Checker:
    def __init__(self, args, spec):
        self.args = args
        self.spec = spec
        u = urllib.parse.urlsplit(args.url)
        if u.scheme != "https":
            raise SystemExit("api_check: --url must be https://HOST:PORT")
        self.host = u.hostname
        self.port = u.port or 443
        self.base = u.path.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=args.cafile)
        self.ctx.check_hostname = True
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.failed = 0
        self.passed = 0
        self.nonce = os.urandom(6).hex()

    # -- output
    def ok(self, msg):
        self.passed += 1
        if not self.args.quiet:
            print("ok: " + msg, flush=True)

    def fail(self, msg):
        self.failed += 1
        print("FAILED: " + msg, flush=True)

    def check(self, cond, msg, why=""):
        if cond:
            self.ok(msg)
        else:
            self.fail(msg + (": " + why if why else ""))
        return cond

    @staticmethod
    def skip(msg):
        print("skip: " + msg, flush=True)

    @staticmethod
    def note(msg):
        print("note: " + msg, flush=True)

    # -- HTTP
    def connect(self, timeout=15):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                           timeout=timeout)

    def call(self, method, path, token=None, body=None, headers=None, raw=None):
        """One request on a fresh connection. token: None = no Authorization header."""
        h = {"Accept": "application/json"}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        conn = self.connect()
        try:
            try:
                conn.request(method, self.base + path, body=data, headers=h)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading the whole body
            r = conn.getresponse()
            body = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body)
        except ssl.SSLCertVerificationError as e:
            return Response(0, {}, b"", "TLS verification failed: %s" % e)
        except (OSError, http.client.HTTPException) as e:
            return Response(0, {}, b"", "%s: %s" % (type(e).__name__, e))
        finally:
            conn.close()

    # -- validation helpers
    def body_errors(self, op, r):
        """Errors of r against op's response for r.status ([] when it validates)."""
        resp, content = response_of(self.spec, op, r.status)
        if resp is None:
            return ["status %d is not a documented response" % r.status]
        if not content:
            return []
        if "application/json" in content:
            if r.ctype() != "application/json":
                return ["Content-Type %r, not application/json" % r.headers.get("content-type")]
            try:
                v = r.json()
            except ValueError as e:
                return ["body is not JSON (%s): %r" % (e, r.body[:80])]
            return validate(content["application/json"]["schema"], v, self.spec)
        return []

    def describe(self, r):
        if r.error:
            return r.error
        s = r.body[:160].decode("utf-8", "replace").replace("\n", "\\n")
        return "%d %s" % (r.status, s)

    def expect_error(self, label, r, status, codes=None):
        """r must be status with an Error body (code in codes when given)."""
        if r.error:
            return self.fail("%s: expected %d, %s" % (label, status, r.error))
        if r.status != status:
            return self.fail("%s: expected %d, got %s" % (label, status, self.describe(r)))
        if r.ctype() != "application/json":
            return self.fail("%s: %d with Content-Type %r, not application/json (body %r)" % (
                label, status, r.headers.get("content-type"), r.body[:80]))
        try:
            v = r.json()
        except ValueError:
            return self.fail("%s: %d body is not JSON: %r" % (label, status, r.body[:80]))
        errs = validate(schema_ref("Error"), v, self.spec)
        if errs:
            return self.fail("%s: %d body is no Error: %s (body %s)" % (
                label, status, "; ".join(errs[:3]), _show(v)))
        if codes and v.get("code") not in codes:
            return self.fail("%s: %d with code %r, expected %s" % (
                label, status, v.get("code"), " or ".join(codes)))
        self.ok("%s -> %d %s" % (label, status, v.get("code")))
        return True

    def get_json(self, path, token, label=None, schema=None):
        """GET expecting 200 with a JSON body; returns the value or None (after a FAILED)."""
        label = label or "GET " + path
        r = self.call("GET", path, token)
        if r.error or r.status != 200:
            self.fail("%s: expected 200, got %s" % (label, self.describe(r)))
            return None
        try:
            v = r.json()
        except ValueError:
            self.fail("%s: body is not JSON: %r" % (label, r.body[:80]))
            return None
        if schema:
            errs = validate(schema_ref(schema), v, self.spec)
            if errs:
                self.fail("%s: body is no %s: %s" % (label, schema, "; ".join(errs[:5])))
                return None
        return v

    # -- paths
    def fill(self, path):
        """path with its parameters filled from the options, or (None, missing parameter)."""
        a = self.args
        values = {}
        if "{id}" in path:
            if path.startswith("/v1/devices/"):
                values["id"] = a.device
            elif path.startswith("/v1/campaigns/"):
                values["id"] = a.campaign
        for name in re.findall(r"\{([^}]+)\}", path):
            v = values.get(name)
            if v is None:
                return None, name
            path = path.replace("{%s}" % name, urllib.parse.quote(str(v), safe=""))
        return path, None

    def option_for(self, path, name):
        if path.startswith("/v1/devices/"):
            return "--device"
        if path.startswith("/v1/campaigns/"):
            return "--campaign"
        if path.startswith("/dashboard/"):
            return "nothing: the files / links to are checked instead"
        return "a value for {%s}" % name

    # -- checks
    def run(self):
        a = self.args
        spec = self.spec
        gets = [(p, op) for p, m, op in operations(spec) if m == "get"]
        # 0. the server is there at all, over verified TLS
        r = self.call("GET", "/healthz")
        if r.error:
            self.fail("GET /healthz: %s" % r.error)
            return
        # 1. every GET path with the operator token
        for path, op in gets:
            filled, missing = self.fill(path)
            if filled is None:
                self.skip("GET %s: no value for {%s} (pass %s)" % (
                    path, missing, self.option_for(path, missing)))
                continue
            self.check_get(path, filled, op, a.token)
        # 2. semantics the schemas cannot say
        self.check_devices()
        self.check_audit()
        self.check_campaigns()
        self.check_params()
        # 3. authentication and roles
        self.check_auth(gets)
        if a.read_token:
            self.check_read_role(gets)
        else:
            self.skip("read role: no --read-token")
        # 4. errors
        self.check_not_found()
        self.check_malformed()
        self.check_methods()
        self.check_unknown_paths()
        self.check_too_large()
        if a.mutate:
            self.check_mutations()
        if a.revoke:
            self.check_revoke()

    def check_get(self, path, filled, op, token, label=None):
        label = label or "GET " + filled
        ok_resp, content = response_of(self.spec, op, 200)
        role = role_of(op)
        if "text/event-stream" in content:
            return self.check_events(filled, token)
        r = self.call("GET", filled, token if role != "none" else None,
                      headers={"Accept": "*/*"} if "application/json" not in content else None)
        if r.error:
            return self.fail("%s: %s" % (label, r.error))
        if r.status >= 400:
            ok = self.check(r.status == 200, label, "expected 200, got " + self.describe(r))
            if r.status in (400, 401, 403, 404, 405, 409, 413, 503):
                self.expect_error(label + " (its error body)", r, r.status)
            return ok
        if r.status != 200:
            return self.fail("%s: expected 200, got %s" % (label, self.describe(r)))
        if "application/json" in content:
            errs = self.body_errors(op, r)
            name = content["application/json"]["schema"].get("$ref", "").split("/")[-1]
            if errs:
                return self.fail("%s -> 200: body is no %s: %s" % (label, name,
                                                                   "; ".join(errs[:6])))
            return self.ok("%s -> 200 %s" % (label, name))
        if "text/plain" in content:
            return self.check_metrics(label, r, content["text/plain"])
        if "text/html" in content:
            ok = self.check(r.ctype() == "text/html", "%s -> 200 text/html" % label,
                            "Content-Type %r" % r.headers.get("content-type"))
            if role == "none" and token == self.args.token:
                self.check_assets(r.body.decode("utf-8", "replace"))
            return ok
        return self.ok("%s -> 200 %s" % (label, r.ctype()))

    def check_assets(self, page):
        """The /dashboard/ files the page links to: served without a token."""
        tpl = self.template_of("/dashboard/x")
        if tpl is None:
            return
        assets = sorted(set(re.findall(r'(?:src|href)="(/dashboard/[^"?#]+)', page)))
        if not assets:
            self.note("GET /: the page links to no /dashboard/ file")
        for path in assets:
            r = self.call("GET", path, headers={"Accept": "*/*"})
            self.check(r.status == 200 and r.body,
                       "GET %s (linked from /, no token) -> 200 %s" % (path, r.ctype()),
                       self.describe(r))
        r = self.call("GET", "/dashboard/no-such-file-%s.js" % self.nonce)
        self.expect_error("GET /dashboard/no-such-file-%s.js" % self.nonce, r, 404)

    def check_metrics(self, label, r, media):
        ct = r.headers.get("content-type", "")
        if r.ctype() != "text/plain":
            self.fail("%s: Content-Type %r, not text/plain" % (label, ct))
        elif "version=0.0.4" not in ct.replace(" ", ""):
            self.fail("%s: Content-Type %r does not say version=0.0.4" % (label, ct))
        else:
            self.ok("%s -> 200 %s" % (label, ct))
        documented = media.get("x-otakey-metrics", {})
        types, samples, bad = {}, [], []
        for line in r.body.decode("utf-8", "replace").splitlines():
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) == 4:
                    types[parts[2]] = parts[3]
            elif line and not line.startswith("#"):
                m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$', line)
                if not m:
                    bad.append(line)
                    continue
                labels = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"', m.group(3) or "")
                samples.append((m.group(1), labels, m.group(4)))
                try:
                    float(m.group(4))
                except ValueError:
                    bad.append(line)
        self.check(not bad, "%s: every sample line parses" % label,
                   "unparsable: %s" % "; ".join(bad[:3]))
        for name, d in documented.items():
            if name not in types:
                self.fail("%s: %s (%s) is missing" % (label, name, d["type"]))
            elif types[name] != d["type"]:
                self.fail("%s: %s is a %s, docs/api.md says %s" % (label, name, types[name],
                                                                   d["type"]))
            else:
                self.ok("%s: %s %s" % (label, name, d["type"]))
        extra = sorted(n for n in types if n.startswith("otakey_") and n not in documented)
        self.check(not extra, "%s: no otakey_ metric beyond docs/api.md" % label,
                   "undocumented: " + ", ".join(extra))
        wrong = set()
        for name, labels, _ in samples:
            base = name
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and name[:-len(suf)] in documented \
                        and documented[name[:-len(suf)]]["type"] == "histogram":
                    base = name[:-len(suf)]
            if base not in documented:
                continue
            allowed = set(documented[base]["labels"]) | ({"le"} if name.endswith("_bucket") else set())
            for lb in labels:
                if lb not in allowed:
                    wrong.add("%s{%s}" % (name, lb))
        self.check(not wrong, "%s: labels as docs/api.md names them" % label,
                   "undocumented labels: " + ", ".join(sorted(wrong)))
        return True

    def read_events(self, path, token, headers=None, want=5, wait=3.0):
        """(status, content type, [(id, event, data)], error) of an SSE stream read for wait s."""
        conn = self.connect(timeout=wait)
        h = {"Accept": "text/event-stream", "Authorization": "Bearer " + token}
        if headers:
            h.update(headers)
        events, cur = [], {}
        try:
            conn.request("GET", self.base + path, headers=h)
            r = conn.getresponse()
            ctype = r.getheader("Content-Type", "")
            if r.status != 200:
                return r.status, ctype, r.read(), None
            while len(events) < want:
                try:
                    line = r.readline()
                except (socket.timeout, TimeoutError):
                    break
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if cur:
                        events.append((cur.get("id"), cur.get("event"), cur.get("data")))
                    cur = {}
                elif line.startswith(":"):
                    continue
                else:
                    k, _, v = line.partition(":")
                    v = v[1:] if v.startswith(" ") else v
                    cur[k] = cur[k] + "\n" + v if k == "data" and k in cur else v
            return 200, ctype, events, None
        except (OSError, http.client.HTTPException) as e:
            return 0, "", [], "%s: %s" % (type(e).__name__, e)
        finally:
            conn.close()

    def check_events(self, path, token):
        label = "GET %s?after=0 (SSE)" % path
        st, ctype, events, err = self.read_events(path + "?after=0", token)
        if err:
            return self.fail("%s: %s" % (label, err))
        if st != 200:
            return self.fail("%s: expected 200, got %d %r" % (label, st, events[:120]))
        self.check(ctype.split(";")[0].strip() == "text/event-stream",
                   "%s -> 200 text/event-stream" % label, "Content-Type %r" % ctype)
        if not events:
            self.note("%s: no event within 3 s (an empty audit log?)" % label)
            return
        bad = []
        prev = 0
        for eid, ev, data in events:
            try:
                row = json.loads(data or "")
            except ValueError:
                bad.append("data is not JSON: %r" % (data,))
                continue
            errs = validate(schema_ref("AuditRow"), row, self.spec)
            if errs:
                bad.append("data is no AuditRow: " + "; ".join(errs[:3]))
                continue
            if str(row["seq"]) != eid:
                bad.append("id %r is not the row's seq %d" % (eid, row["seq"]))
            if ev != row["kind"]:
                bad.append("event %r is not the row's kind %r" % (ev, row["kind"]))
            if row["seq"] <= prev:
                bad.append("seq %d after %d" % (row["seq"], prev))
            prev = row["seq"]
        self.check(not bad, "%s: %d events, each id = seq, event = kind, data an AuditRow" % (
            label, len(events)), "; ".join(bad[:4]))
        first = events[0][0]
        if first is None or not first.isdigit():
            return
        st, _, ev2, err = self.read_events(path, token, headers={"Last-Event-ID": first}, want=1)
        if err or st != 200:
            return self.fail("GET %s with Last-Event-ID: %s" % (path, err or st))
        if ev2:
            got = ev2[0][0]
            want = events[1][0] if len(events) > 1 else None
            good = got is not None and got.isdigit() and int(got) > int(first) and (
                want is None or got == want)
            self.check(good, "GET %s with Last-Event-ID: %s resumes right after it (id %s)" % (
                path, first, got), "expected id %s" % (want or "> " + first))
        else:
            self.note("GET %s with Last-Event-ID: %s: no event within 3 s" % (path, first))

    def check_devices(self):
        a, t = self.args, self.args.token
        page = self.get_json("/v1/devices?limit=1", t, schema="DeviceList")
        if page is not None:
            self.page_checks("/v1/devices", page, "devices", "id", 1, "DeviceList")
        if a.device:
            d = self.get_json("/v1/devices/" + a.device, t, schema="Device")
            if d is not None:
                self.check(d["id"] == a.device, "GET /v1/devices/%s: it is that device" % a.device,
                           "id %s" % d["id"])
                for q, key in (("state=" + d["state"], "state"), ("batch=" + d["batch"], "batch"),
                               ("cloud=%d" % d["cloud"], "cloud"),
                               ("version=%d" % d["version"], "version")):
                    self.filter_check("/v1/devices?limit=1000&" + q, "devices", key,
                                      lambda row, d=d, key=key: row[key] == d[key], a.device)
                ts = d["last_seen_ms"]
                self.filter_check("/v1/devices?limit=1000&seen_after=%d" % (ts - 1), "devices",
                                  "last_seen_ms", lambda row: row["last_seen_ms"] >= ts, a.device)
                self.filter_check("/v1/devices?limit=1000&seen_before=%d" % (ts + 1), "devices",
                                  "last_seen_ms", lambda row: row["last_seen_ms"] <= ts, a.device)
        if a.batch:
            self.filter_check("/v1/devices?limit=1000&batch=" + a.batch, "devices", "batch",
                              lambda row: row["batch"] == a.batch, None)
            prods = self.get_json("/v1/products", t, schema="ProductList")
            if prods is not None:
                self.check(any(p["batch"] == a.batch for p in prods["products"]),
                           "GET /v1/products lists batch %s" % a.batch)

    def page_checks(self, path, page, key, idkey, limit, schema):
        rows, nxt = page[key], page["next"]
        self.check(len(rows) <= limit, "GET %s?limit=%d: at most %d rows" % (path, limit, limit),
                   "%d rows" % len(rows))
        if nxt is None:
            self.ok("GET %s?limit=%d: one page (next null)" % (path, limit))
            return
        self.check(rows and rows[-1][idkey] == nxt,
                   "GET %s?limit=%d: next is the page's last %s" % (path, limit, idkey),
                   "next %s, rows %s" % (nxt, [r_[idkey] for r_ in rows]))
        p2 = self.get_json("%s?limit=%d&after=%s" % (path, limit, nxt), self.args.token,
                           schema=schema)
        if p2 is not None:
            r2 = p2[key]
            self.check(not r2 or r2[0][idkey] > nxt,
                       "GET %s?after=%s: the next page starts after it" % (path, nxt),
                       "first %s" % (r2[0][idkey] if r2 else None))

    def filter_check(self, q, key, field, pred, must_have):
        v = self.get_json(q, self.args.token, schema="DeviceList" if key == "devices"
                          else "AuditList")
        if v is None:
            return
        bad = [r_ for r_ in v[key] if not pred(r_)]
        ok = self.check(not bad, "GET %s: every row matches" % q,
                        "%d rows do not, e.g. %s=%s" % (len(bad), field,
                                                        _show(bad[0][field]) if bad else ""))
        if ok and must_have:
            ids = [r_.get("id", r_.get("device")) for r_ in v[key]]
            if v.get("next") is None:
                self.check(must_have in ids, "GET %s: lists %s" % (q, must_have))

    def check_audit(self):
        a, t = self.args, self.args.token
        page = self.get_json("/v1/audit?limit=1", t, schema="AuditList")
        if page is not None:
            self.page_checks("/v1/audit", page, "rows", "seq", 1, "AuditList")
        full = self.get_json("/v1/audit?limit=1000", t, schema="AuditList")
        if full is not None and full["rows"]:
            seqs = [r_["seq"] for r_ in full["rows"]]
            self.check(seqs == sorted(seqs) and len(set(seqs)) == len(seqs),
                       "GET /v1/audit?limit=1000: rows in sequence order")
            kind = full["rows"][-1]["kind"]
            self.filter_check("/v1/audit?limit=1000&kind=" + kind, "rows", "kind",
                              lambda row: row["kind"] == kind, None)
            if full["next"] is None:
                tail = self.get_json("/v1/audit?tail=2", t, schema="AuditList")
                if tail is not None:
                    got = [r_["seq"] for r_ in tail["rows"]]
                    self.check(got == seqs[-2:], "GET /v1/audit?tail=2: the last 2 rows, in order",
                               "seqs %s, the log ends %s" % (got, seqs[-2:]))
            ver = self.get_json("/v1/audit/verify", t, schema="AuditVerify")
            if ver is not None:
                self.check(ver["ok"] is True and ver["bad_seq"] is None,
                           "GET /v1/audit/verify: the chain verifies", _show(ver))
                if full["next"] is None:
                    self.check(ver["rows"] >= len(seqs),
                               "GET /v1/audit/verify: rows (%d) >= the rows listed (%d)" % (
                                   ver["rows"], len(seqs)))
        if a.device:
            self.filter_check("/v1/audit?limit=1000&device=" + a.device, "rows", "device",
                              lambda row: row["device"] == a.device, None)

    def check_campaigns(self):
        a, t = self.args, self.args.token
        lst = self.get_json("/v1/campaigns", t, schema="CampaignList")
        if lst is not None and len(lst["campaigns"]) > 1:
            ids = [c["id"] for c in lst["campaigns"]]
            self.check(ids == sorted(ids, reverse=True), "GET /v1/campaigns: newest first",
                       "ids %s" % ids[:10])
        if a.campaign:
            c = self.get_json("/v1/campaigns/%s" % a.campaign, t, schema="CampaignDetail")
            if c is not None:
                self.check(str(c["id"]) == str(a.campaign),
                           "GET /v1/campaigns/%s: it is that campaign" % a.campaign)
                self.check(len(c["failures"]) == c["failed"],
                           "GET /v1/campaigns/%s: one failure per failed device" % a.campaign,
                           "%d failures, failed %d" % (len(c["failures"]), c["failed"]))
                self.check(c["started"] <= c["total"] and c["done"] + c["failed"] <= c["total"],
                           "GET /v1/campaigns/%s: started, done + failed within total" % a.campaign,
                           _show(c))
                self.check((c["state"] == "paused") == (c["pause_reason"] is not None),
                           "GET /v1/campaigns/%s: pause_reason set iff paused" % a.campaign,
                           "state %s, pause_reason %s" % (c["state"], c["pause_reason"]))

    def check_params(self):
        t = self.args.token
        bad = [
            ("/v1/devices?limit=0", "limit 0"),
            ("/v1/devices?limit=1001", "limit 1001"),
            ("/v1/devices?limit=ten", "limit not a number"),
            ("/v1/devices?state=lost", "unknown state"),
            ("/v1/devices?batch=xyz", "malformed batch"),
            ("/v1/devices?batch=00000001000000010", "17-digit batch"),
            ("/v1/devices?after=42", "malformed after"),
            ("/v1/devices?seen_after=yesterday", "malformed seen_after"),
            ("/v1/devices?cloud=-1", "negative cloud"),
            ("/v1/audit?limit=0", "limit 0"),
            ("/v1/audit?limit=1001", "limit 1001"),
            ("/v1/audit?after=x", "malformed after"),
            ("/v1/audit?kind=claim-issued", "unknown kind"),
            ("/v1/audit?tail=0", "tail 0"),
            ("/v1/audit?tail=1001", "tail 1001"),
            ("/v1/audit?device=" + "A" * 32, "device id in capitals"),
        ]
        for q, why in bad:
            self.expect_error("GET %s (%s)" % (q, why), self.call("GET", q, t), 400)
        for q in ("/v1/devices?limit=1000", "/v1/audit?limit=1000"):
            r = self.call("GET", q, t)
            self.check(r.status == 200, "GET %s (the largest limit) -> 200" % q, self.describe(r))

    def check_auth(self, gets):
        for path, op in gets:
            if role_of(op) == "none":
                filled, _ = self.fill(path)
                if filled is None:
                    continue
                r = self.call("GET", filled)
                self.check(r.status == 200, "GET %s without a token -> 200 (no auth)" % filled,
                           self.describe(r))
                continue
            filled, missing = self.fill(path)
            if filled is None:
                filled = path.replace("{id}", "0123456789abcdef0123456789abcdef"
                                      if path.startswith("/v1/devices") else "1")
            r = self.call("GET", filled)
            self.expect_error("GET %s without a token" % filled, r, 401, ("UNAUTHORIZED",))
            r = self.call("GET", filled, "wrong-" + self.nonce)
            self.expect_error("GET %s with a wrong token" % filled, r, 401, ("UNAUTHORIZED",))
        r = self.call("GET", "/v1/devices", headers={"Authorization": "Basic " + self.args.token})
        self.expect_error("GET /v1/devices with Authorization: Basic", r, 401, ("UNAUTHORIZED",))
        r = self.call("GET", "/v1/devices", self.args.token + "x")
        self.expect_error("GET /v1/devices with the token plus one character", r, 401,
                          ("UNAUTHORIZED",))
        r = self.call("POST", "/v1/products", None,
                      body={"batch": self.fresh_batch(), "name": "api-check-noauth"})
        self.expect_error("POST /v1/products without a token", r, 401, ("UNAUTHORIZED",))
        r = self.call("GET", "/v1/devices")
        if r.status == 401 and "www-authenticate" not in r.headers:
            self.note("401 without a WWW-Authenticate header (RFC 6750 asks for "
                      "`WWW-Authenticate: Bearer`; docs/api.md does not say)")

    def fresh_batch(self):
        # One byte after the run's nonce: a counter, so that no two batches
        # of one run are the same (a random byte repeated in 1 run of ~20).
        self.batches = getattr(self, "batches", 0) + 1
        return "ac" + self.nonce + "%02x" % (self.batches % 256)

    def check_read_role(self, gets):
        a, rt = self.args, self.args.read_token
        for path, op in gets:
            if role_of(op) != "read":
                continue
            filled, _ = self.fill(path)
            if filled is None:
                continue
            self.check_get(path, filled, op, rt, label="GET %s with the read token" % filled)
        before_p = self.get_json("/v1/products", a.token, schema="ProductList")
        before_c = self.get_json("/v1/campaigns", a.token, schema="CampaignList")
        batch = self.fresh_batch()
        r = self.call("POST", "/v1/products", rt, body={"batch": batch, "name": "api-check-read"})
        self.expect_error("POST /v1/products with the read token", r, 403, ("FORBIDDEN",))
        sel = "ids:" + (a.device or ("ee" * 16))
        r = self.call("POST", "/v1/campaigns", rt,
                      body={"kind": "rotate", "target_cloud": 0, "selector": sel, "rate": 1,
                            "canary": 0, "max_failures": 0})
        self.expect_error("POST /v1/campaigns (valid body, %s) with the read token" % sel, r, 403,
                          ("FORBIDDEN",))
        unknown = "ee" * 16
        for p in ("/v1/devices/%s/revoke" % unknown, "/v1/devices/%s/allow-reclaim" % unknown,
                  "/v1/campaigns/2147483000/pause", "/v1/campaigns/2147483000/resume",
                  "/v1/campaigns/2147483000/abort"):
            self.expect_error("POST %s with the read token" % p, self.call("POST", p, rt), 403,
                              ("FORBIDDEN",))
        after_p = self.get_json("/v1/products", a.token, schema="ProductList")
        after_c = self.get_json("/v1/campaigns", a.token, schema="CampaignList")
        if None not in (before_p, after_p):
            self.check(before_p == after_p and not any(p["batch"] == batch
                                                       for p in after_p["products"]),
                       "the read token created no product")
        if None not in (before_c, after_c):
            created = [c for c in after_c["campaigns"]
                       if c["id"] not in {x["id"] for x in before_c["campaigns"]}]
            if not self.check(not created, "the read token created no campaign",
                              "created %s" % [c["id"] for c in created]):
                for c in created:  # undo what a broken server started
                    self.call("POST", "/v1/campaigns/%d/abort" % c["id"], a.token)

    def check_not_found(self):
        t = self.args.token
        unknown = "ee" * 16
        if unknown == self.args.device:
            unknown = "dd" * 16
        self.expect_error("GET /v1/devices/%s (unknown)" % unknown,
                          self.call("GET", "/v1/devices/" + unknown, t), 404)
        self.expect_error("POST /v1/devices/%s/revoke (unknown)" % unknown,
                          self.call("POST", "/v1/devices/%s/revoke" % unknown, t), 404)
        self.expect_error("POST /v1/devices/%s/allow-reclaim (unknown)" % unknown,
                          self.call("POST", "/v1/devices/%s/allow-reclaim" % unknown, t), 404)
        self.expect_error("GET /v1/campaigns/2147483000 (unknown)",
                          self.call("GET", "/v1/campaigns/2147483000", t), 404)
        for act in ("pause", "resume", "abort"):
            self.expect_error("POST /v1/campaigns/2147483000/%s (unknown)" % act,
                              self.call("POST", "/v1/campaigns/2147483000/" + act, t), 404)

    def check_malformed(self):
        t = self.args.token
        for bad, why in (("xyz", "not hex"), ("A" * 32, "capitals"), ("e" * 31, "31 digits"),
                         ("e" * 33, "33 digits"), ("g" * 32, "not hex, 32 characters")):
            self.expect_error("GET /v1/devices/%s (%s)" % (bad, why),
                              self.call("GET", "/v1/devices/" + bad, t), 400)
        self.expect_error("POST /v1/devices/xyz/revoke (malformed id)",
                          self.call("POST", "/v1/devices/xyz/revoke", t), 400)
        self.expect_error("GET /v1/campaigns/abc (malformed id)",
                          self.call("GET", "/v1/campaigns/abc", t), 400)
        self.expect_error("POST /v1/campaigns/abc/pause (malformed id)",
                          self.call("POST", "/v1/campaigns/abc/pause", t), 400)
        # Bodies: none of these can act on anything, even on a server that accepted them.
        nobody = "ids:" + "ee" * 16
        bodies = [
            ("/v1/products", None, b"{not json", "not JSON"),
            ("/v1/products", None, b"", "empty body"),
            ("/v1/products", {"batch": "xyz", "name": "api-check"}, None, "malformed batch"),
            ("/v1/products", {"name": "api-check"}, None, "no batch"),
            ("/v1/products", ["0000000000000000", "x"], None, "an array"),
            ("/v1/products", {"batch": self.fresh_batch(), "name": 5}, None, "name a number"),
            ("/v1/campaigns", {"kind": "teleport", "selector": nobody}, None, "unknown kind"),
            ("/v1/campaigns", {"kind": "rotate", "selector": "some"}, None, "malformed selector"),
            # rate 1: a server that defaults the selector starts as little as it can before
            # the abort below
            ("/v1/campaigns", {"kind": "rotate", "rate": 1}, None, "no selector"),
            ("/v1/campaigns", {"kind": "rotate", "selector": nobody, "rate": -1}, None,
             "negative rate"),
            ("/v1/campaigns", {"kind": "rotate", "selector": nobody, "rate": "fast"}, None,
             "rate a string"),
        ]
        for path, body, raw, why in bodies:
            r = self.call("POST", path, t, body=body, raw=raw)
            self.expect_error("POST %s (%s)" % (path, why), r, 400)
            if r.status == 201 and path == "/v1/campaigns":
                try:  # undo what a server that took it started
                    cid = r.json()["id"]
                    a = self.call("POST", "/v1/campaigns/%d/abort" % cid, t)
                    self.note("aborted campaign %s that POST /v1/campaigns (%s) started: %d" % (
                        cid, why, a.status))
                except (ValueError, KeyError, TypeError):
                    pass

    def check_methods(self):
        t = self.args.token
        known = set(self.spec["paths"])
        cases = []
        for path in ("/v1/devices", "/v1/products", "/v1/campaigns", "/v1/audit", "/healthz",
                     "/v1/devices/" + "ee" * 16, "/v1/devices/%s/revoke" % ("ee" * 16),
                     "/v1/campaigns/2147483000/pause", "/v1/audit/verify", "/v1/clouds",
                     "/metrics"):
            template = self.template_of(path)
            if template not in known:
                self.fail("spec: %s is not a path of the spec" % path)
                continue
            have = {m for m in METHODS if m in self.spec["paths"][template]}
            for m in ("delete", "put", "patch", "post", "get"):
                if m not in have:
                    cases.append((m.upper(), path, have))
                    break
        no_allow = []
        for method, path, have in cases:
            r = self.call(method, path, t, raw=b"{}" if method in ("PUT", "PATCH", "POST")
                          else None)
            self.expect_error("%s %s (spec: %s only)" % (method, path, ", ".join(
                sorted(x.upper() for x in have))), r, 405)
            if r.status == 405:
                allow = r.headers.get("allow")
                want = {x.upper() for x in have}
                if allow is None:
                    no_allow.append("%s %s" % (method, path))
                elif not want <= {x.strip().upper() for x in allow.split(",")}:
                    self.fail("%s %s -> 405: Allow %r does not name %s" % (
                        method, path, allow, ", ".join(sorted(want))))
        if no_allow:
            self.note("405 without an Allow header (RFC 9110 asks for one; docs/api.md does not "
                      "say) on %d of %d: %s, ..." % (len(no_allow), len(cases), no_allow[0]))

    def template_of(self, path):
        for tpl in self.spec["paths"]:
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tpl)) + "$"
            if re.match(rx, path):
                return tpl
        return None

    def check_unknown_paths(self):
        t = self.args.token
        for method, path in (("GET", "/v1/nothing"), ("GET", "/v2/devices"), ("GET", "/v1"),
                             ("GET", "/admin"), ("GET", "/v1/devices/%s/keys" % ("ee" * 16)),
                             ("POST", "/v1/devices/%s/explode" % ("ee" * 16)),
                             ("GET", "/v1/campaigns/1/devices"), ("GET", "/v1/audit/rows"),
                             ("GET", "/healthz/x"), ("GET", "/metrics/x"),
                             ("GET", "/v1/products/0000000100000001"),
                             ("GET", "/V1/devices"), ("GET", "/dashboard")):
            if self.template_of(path):
                self.fail("checker: %s matches the spec's %s" % (path, self.template_of(path)))
                continue
            r = self.call(method, path, t)
            self.expect_error("%s %s (not in the spec)" % (method, path), r, 404)

    def check_too_large(self):
        t = self.args.token
        body = json.dumps({"batch": self.fresh_batch(), "name": "x" * (64 * 1024)}).encode()
        r = self.call("POST", "/v1/products", t, raw=body)
        self.expect_error("POST /v1/products with a %d-byte body" % len(body), r, 413)
        sel = "ids:" + ",".join(["ee" * 16] * 2000)
        body = json.dumps({"kind": "rotate", "selector": sel}).encode()
        r = self.call("POST", "/v1/campaigns", t, raw=body)
        self.expect_error("POST /v1/campaigns with a %d-byte body" % len(body), r, 413)
        # exactly at the limit: read and judged (a malformed batch: 400), not 413
        body = json.dumps({"batch": "xyz", "name": ""}).encode()
        body = body[:-2] + b"x" * (64 * 1024 - len(body)) + body[-2:]
        r = self.call("POST", "/v1/products", t, raw=body)
        self.expect_error("POST /v1/products with a %d-byte body (at the limit, malformed batch)"
                          % len(body), r, 400)

    def check_events_live(self):
        """Without after or Last-Event-ID the stream starts at the end; a new row arrives."""
        t = self.args.token
        full = self.get_json("/v1/audit?tail=1", t, schema="AuditList")
        last = full["rows"][-1]["seq"] if full and full["rows"] else 0
        conn = self.connect(timeout=10)
        label = "GET /v1/events (no after) while a product is created"
        try:
            conn.request("GET", self.base + "/v1/events",
                         headers={"Accept": "text/event-stream", "Authorization": "Bearer " + t})
            r = conn.getresponse()
            if r.status != 200:
                return self.fail("%s: got %d" % (label, r.status))
            batch = self.fresh_batch()
            p = self.call("POST", "/v1/products", t, body={"batch": batch, "name": "api-check-sse"})
            if p.status != 201:
                return self.fail("%s: POST /v1/products got %s" % (label, self.describe(p)))
            # The fleet may write rows of its own meanwhile (a device's commit,
            # a campaign's step): the stream's events are read until the new
            # product's; each must be after the tail read before it.
            seen, cur, ev = [], {}, None
            while ev is None:
                try:
                    line = r.readline()
                except (socket.timeout, TimeoutError):
                    break
                if not line:
                    break
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "" and cur:
                    seen.append(cur)
                    if cur.get("event") == "product_created":
                        ev = cur
                    cur = {}
                elif line and not line.startswith(":"):
                    k, _, v = line.partition(":")
                    cur[k] = v[1:] if v.startswith(" ") else v
            if ev is None:
                return self.fail("%s: no product_created event within 10 s (%d others: %s)" % (
                    label, len(seen), _show(seen[:3])))
            ids = [int(e["id"]) if e.get("id", "").isdigit() else -1 for e in seen]
            self.check(all(i > last for i in ids) and ids == sorted(ids),
                       "%s: the stream starts after the tail (id %d) and reaches the new row "
                       "(id %s, after %d other events)" % (label, last, ev.get("id"),
                                                           len(seen) - 1),
                       "ids %s" % ids)
        except (OSError, http.client.HTTPException) as e:
            self.fail("%s: %s: %s" % (label, type(e).__name__, e))
        finally:
            conn.close()

    def check_mutations(self):
        a, t = self.args, self.args.token
        self.check_events_live()
        batch = self.fresh_batch()
        r = self.call("POST", "/v1/products", t, body={"batch": batch, "name": "api-check"})
        op = self.spec["paths"]["/v1/products"]["post"]
        errs = self.body_errors(op, r) if r.status == 201 else ["got " + self.describe(r)]
        if self.check(not errs, "POST /v1/products -> 201 ProductCreated", "; ".join(errs[:4])):
            v = r.json()
            self.check(v["batch"] == batch and v["name"] == "api-check",
                       "POST /v1/products: it is that batch", _show(v))
            lst = self.get_json("/v1/products", t, schema="ProductList")
            if lst is not None:
                listed = [p for p in lst["products"] if p["batch"] == batch]
                self.check(listed and "pk" not in listed[0] and listed[0]["devices"] == 0,
                           "GET /v1/products lists the new batch, with no device and no pk",
                           _show(listed))
            self.expect_error("POST /v1/products again (batch %s exists)" % batch,
                              self.call("POST", "/v1/products", t,
                                        body={"batch": batch, "name": "again"}), 409)
            rows = self.get_json("/v1/audit?kind=product_created&limit=1000", t,
                                 schema="AuditList")
            if rows is not None:
                mine = [x for x in rows["rows"] if x["actor"] and x["actor"].startswith("api:")]
                self.check(mine, "the audit log has a product_created row by api:NAME",
                           _show(rows["rows"][-3:]))
        if not a.device:
            self.skip("campaign and allow-reclaim calls: no --device")
            return
        d = self.get_json("/v1/devices/" + a.device, t, schema="Device")
        if d is None:
            return
        if d["state"] == "active":
            r = self.call("POST", "/v1/devices/%s/allow-reclaim" % a.device, t)
            op = self.spec["paths"]["/v1/devices/{id}/allow-reclaim"]["post"]
            errs = self.body_errors(op, r) if r.status == 200 else ["got " + self.describe(r)]
            self.check(not errs, "POST /v1/devices/%s/allow-reclaim -> 200 Device" % a.device,
                       "; ".join(errs[:4]))
        else:
            self.expect_error("POST /v1/devices/%s/allow-reclaim (%s)" % (a.device, d["state"]),
                              self.call("POST", "/v1/devices/%s/allow-reclaim" % a.device, t),
                              409)
            self.skip("campaign calls: --device is %s, not active" % d["state"])
            return
        body = {"kind": "rotate", "selector": "ids:" + a.device, "rate": 1, "canary": 0,
                "max_failures": 0}
        r = self.call("POST", "/v1/campaigns", t, body=body)
        op = self.spec["paths"]["/v1/campaigns"]["post"]
        errs = self.body_errors(op, r) if r.status == 201 else ["got " + self.describe(r)]
        self.check(not errs, "POST /v1/campaigns (rotate ids:%s) -> 201 Campaign" % a.device,
                   "; ".join(errs[:4]))
        if r.status != 201:
            return
        c = r.json()
        self.check(c.get("kind") == "rotate" and c.get("selector") == body["selector"]
                   and c.get("total") == 1 and c.get("rate") == 1 and c.get("max_failures") == 0,
                   "POST /v1/campaigns: the campaign asked for", _show(c))
        cid = c["id"]
        ops = self.spec["paths"]
        for act, states in (("pause", ("paused",)), ("resume", ("running", "canary", "done")),
                            ("abort", ("aborted",))):
            r = self.call("POST", "/v1/campaigns/%d/%s" % (cid, act), t)
            errs = (self.body_errors(ops["/v1/campaigns/{id}/" + act]["post"], r)
                    if r.status == 200 else ["got " + self.describe(r)])
            if r.status == 409:
                now = self.get_json("/v1/campaigns/%d" % cid, t, schema="CampaignDetail")
                if now is not None and now["state"] in ("done", "aborted"):
                    self.note("POST /v1/campaigns/%d/%s -> 409: it ended first (%s)" % (
                        cid, act, now["state"]))
                    continue
            self.check(not errs, "POST /v1/campaigns/%d/%s -> 200 Campaign" % (cid, act),
                       "; ".join(errs[:4]))
            if r.status == 200:
                st = r.json().get("state")
                self.check(st in states or st == "done",
                           "POST /v1/campaigns/%d/%s: state %s" % (cid, act, st))
                if act == "pause" and st == "paused":
                    self.check(r.json().get("pause_reason") == "operator",
                               "POST /v1/campaigns/%d/pause: pause_reason operator" % cid,
                               _show(r.json().get("pause_reason")))
        for act in ("pause", "resume", "abort"):
            self.expect_error("POST /v1/campaigns/%d/%s (ended)" % (cid, act),
                              self.call("POST", "/v1/campaigns/%d/%s" % (cid, act), t), 409)
        self.check_get("/v1/campaigns/{id}", "/v1/campaigns/%d" % cid,
                       ops["/v1/campaigns/{id}"]["get"], t)
        rows = self.get_json("/v1/audit?kind=campaign&limit=1000", t, schema="AuditList")
        if rows is not None:
            mine = [x for x in rows["rows"] if x["version"] == cid]
            by_api = [x for x in mine if x["code"] in ("paused", "aborted")]
            self.check(len(by_api) >= 2 and all((x["actor"] or "").startswith("api:")
                                                for x in by_api),
                       "the audit log has campaign %d's pause and abort, by api:NAME" % cid,
                       _show(mine))
        # a selector longer than a line: given back as it was sent
        sel = "ids:" + ",".join([a.device, "ee" * 16, "dd" * 16])
        r = self.call("POST", "/v1/campaigns", t,
                      body={"kind": "rotate", "selector": sel, "rate": 1})
        if r.status == 201:
            c = r.json()
            self.call("POST", "/v1/campaigns/%s/abort" % c.get("id"), t)
            self.check(c.get("selector") == sel,
                       "POST /v1/campaigns (selector of %d characters): given back whole" % len(sel),
                       "got %r (%d characters)" % (c.get("selector"), len(c.get("selector") or "")))
            got = self.get_json("/v1/campaigns/%s" % c.get("id"), t)
            if got is not None:
                self.check(got.get("selector") == sel,
                           "GET /v1/campaigns/%s: the selector of %d characters, whole" % (
                               c.get("id"), len(sel)),
                           "got %r (%d characters)" % (got.get("selector"),
                                                       len(got.get("selector") or "")))
        else:
            self.fail("POST /v1/campaigns (selector %s...): expected 201, got %s" % (
                sel[:40], self.describe(r)))
        # an id listed twice: the client's mistake (400) or one device (201); never 503
        sel = "ids:%s,%s" % (a.device, a.device)
        r = self.call("POST", "/v1/campaigns", t,
                      body={"kind": "rotate", "selector": sel, "rate": 1})
        if r.status == 201:
            self.call("POST", "/v1/campaigns/%s/abort" % r.json().get("id"), t)
        self.check(r.status in (201, 400),
                   "POST /v1/campaigns (ids:ID,ID, the same id twice) -> 201 or 400",
                   "got " + self.describe(r))

    def check_revoke(self):
        """--revoke ID: revokes that device (destructive) and checks what follows."""
        t, dev = self.args.token, self.args.revoke
        r = self.call("POST", "/v1/devices/%s/revoke" % dev, t)
        op = self.spec["paths"]["/v1/devices/{id}/revoke"]["post"]
        errs = self.body_errors(op, r) if r.status == 200 else ["got " + self.describe(r)]
        if not self.check(not errs, "POST /v1/devices/%s/revoke -> 200 Device" % dev,
                          "; ".join(errs[:4])):
            return
        d = r.json()
        self.check(d["id"] == dev and d["state"] == "revoked",
                   "POST /v1/devices/%s/revoke: the device, revoked" % dev, _show(d))
        r = self.call("POST", "/v1/devices/%s/revoke" % dev, t)
        self.check(r.status == 200, "POST /v1/devices/%s/revoke again -> 200" % dev,
                   self.describe(r))
        self.expect_error("POST /v1/devices/%s/allow-reclaim (revoked)" % dev,
                          self.call("POST", "/v1/devices/%s/allow-reclaim" % dev, t), 409)
        rows = self.get_json("/v1/audit?kind=revoke&device=%s&limit=1000" % dev, t,
                             schema="AuditList")
        if rows is not None:
            self.check(rows["rows"] and all((x["actor"] or "").startswith("api:")
                                            for x in rows["rows"]),
                       "the audit log has the revocation of %s by api:NAME" % dev,
                       _show(rows["rows"]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "docs", "openapi.json"))
    p.add_argument("--url", help="https://HOST:PORT of the agent's API")
    p.add_argument("--cafile", help="CA certificate (PEM) that signed the server's certificate")
    p.add_argument("--token", help="an operator token")
    p.add_argument("--read-token", help="a read token")
    p.add_argument("--device", help="a device id known to the registry (32 hex)")
    p.add_argument("--campaign", help="a campaign id")
    p.add_argument("--batch", help="a batch id (16 hex)")
    p.add_argument("--mutate", action="store_true",
                   help="also make successful mutating calls (a product, a campaign)")
    p.add_argument("--revoke", metavar="ID",
                   help="also revoke this device (destructive) and check what follows")
    p.add_argument("--self-test", action="store_true", help="test the validator only")
    p.add_argument("--quiet", action="store_true",
                   help="print failures, skips and notes only, then the count")
    a = p.parse_args(argv)
    spec = load_spec(a.spec)
    if a.self_test:
        wrong = self_test(spec)
        print("self-test: %s" % ("%d wrong" % wrong if wrong else "all passed"))
        return 1 if wrong else 0
    for name in ("url", "cafile", "token"):
        if not getattr(a, name):
            p.error("--%s is required (or --self-test)" % name)
    if a.device and not re.fullmatch(r"[0-9a-f]{32}", a.device):
        p.error("--device must be 32 lowercase hex digits")
    if a.revoke and (not re.fullmatch(r"[0-9a-f]{32}", a.revoke) or a.revoke == a.device):
        p.error("--revoke must be 32 lowercase hex digits, not --device")
    if a.batch and not re.fullmatch(r"[0-9a-f]{16}", a.batch):
        p.error("--batch must be 16 lowercase hex digits")
    if a.campaign and not re.fullmatch(r"[1-9][0-9]*", a.campaign):
        p.error("--campaign must be a positive integer")
    problems = lint_spec(spec)
    for pr in problems:
        print("FAILED: spec %s" % pr)
    c = Checker(a, spec)
    c.failed += len(problems)
    c.run()
    print("%d checks passed, %d failed" % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
