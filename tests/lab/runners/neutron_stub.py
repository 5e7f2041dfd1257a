"""A stand-in for the Neutron API, enough for servers booted with networks "none".

Usage: python neutron_stub.py PORT

Nova asks Neutron about a server even when it has no ports: the security
groups at boot, the ports on listings and deletes, the extensions. Every
collection answers empty except security-groups, which holds the project's
"default" group. Anything else, and every write, answers 404, so a test that
tries real networking fails loudly instead of passing on a fake.

Drills that need ports (a port binding to compare with Nova's network info
cache) register them, and the networks and subnets they name, through a small
admin endpoint on the same loopback port, outside Neutron's /v2.0 tree:

    PUT    /_lab/ports      {"ports": [...]}   replace every registered port
    POST   /_lab/ports      {"port": {...}}    add one, or replace the one with its id
    GET    /_lab/ports                          what is registered
    DELETE /_lab/ports[/ID]                     forget one, or all
    (the same for /_lab/networks and /_lab/subnets)

Registered resources answer GET /v2.0/ports, /v2.0/networks and
/v2.0/subnets (with the query filters Nova and openstacksdk send, e.g.
device_id, id, network_id, binding:host_id, several values meaning "any of",
and fields), and GET /v2.0/ports/ID. A port is filled with Neutron's
defaults for the keys it leaves out (status ACTIVE, binding:vnic_type normal,
empty binding:profile and binding:vif_details, no fixed IPs or security
groups). Writes under /v2.0 still answer 404. The registry lives in memory:
it is empty after the stand-in starts, and `lab reset` keeps it (the
stand-in keeps running), so a drill removes what it registered.
"""

import json
import re
import sys
import threading
import uuid
from socketserver import ThreadingMixIn
from urllib.parse import parse_qs
from wsgiref import simple_server

DEFAULT_GROUP = {
    "id": "00000000-0000-4000-8000-00000000005e",
    "name": "default",
    "description": "lab stand-in default group",
    "tenant_id": "",
    "project_id": "",
    "stateful": True,
    "security_group_rules": [],
}
COLLECTION = re.compile(r"^/v2\.0/(?P<name>[a-z_-]+?)(?:\.json)?(?:/(?P<id>[^/]+))?$")
ADMIN = re.compile(r"^/_lab/(?P<kind>ports|networks|subnets)(?:/(?P<id>[^/]+))?$")
MAX_BODY = 4 * 1024 * 1024

REGISTRY = {"ports": {}, "networks": {}, "subnets": {}}
LOCK = threading.Lock()


def port_defaults(port):
    """A registered port with the keys Neutron always returns."""
    filled = {
        "name": "", "description": "", "admin_state_up": True, "status": "ACTIVE",
        "mac_address": "fa:16:3e:%02x:%02x:%02x" % tuple(uuid.uuid4().bytes[:3]),
        "network_id": None, "device_id": "", "device_owner": "", "fixed_ips": [], "security_groups": [],
        "tenant_id": "", "project_id": "", "binding:host_id": "", "binding:vif_type": "unbound",
        "binding:vnic_type": "normal", "binding:profile": {}, "binding:vif_details": {},
        "allowed_address_pairs": [], "extra_dhcp_opts": [], "port_security_enabled": True, "tags": [],
    }
    filled.update(port)
    if not filled.get("project_id"):
        filled["project_id"] = filled["tenant_id"]
    if not filled.get("tenant_id"):
        filled["tenant_id"] = filled["project_id"]
    return filled


def network_defaults(network):
    filled = {"name": "", "admin_state_up": True, "status": "ACTIVE", "subnets": [], "shared": False,
              "tenant_id": "", "project_id": "", "mtu": 1450, "router:external": False,
              "provider:network_type": "geneve", "provider:physical_network": None}
    filled.update(network)
    return filled


def subnet_defaults(subnet):
    filled = {"name": "", "network_id": None, "ip_version": 4, "cidr": None, "gateway_ip": None,
              "dns_nameservers": [], "host_routes": [], "enable_dhcp": True, "tenant_id": "", "project_id": ""}
    filled.update(subnet)
    return filled


DEFAULTS = {"ports": port_defaults, "networks": network_defaults, "subnets": subnet_defaults}


def respond(start, status, body):
    start(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def not_found(start, message="not in the lab's neutron stand-in"):
    return respond(start, "404 Not Found", {"NeutronError": {"type": "NotFound", "message": message, "detail": ""}})


def bad_request(start, message):
    return respond(start, "400 Bad Request", {"NeutronError": {"type": "BadRequest", "message": message,
                                                               "detail": ""}})


def matches(item, filters):
    """Neutron's list filters: every named attribute equals one of the values given."""
    for key, values in filters.items():
        if key in ("fields", "limit", "marker", "sort_key", "sort_dir", "page_reverse"):
            continue
        value = item.get(key)
        if str(value) not in values and not (value is None and "" in values):
            return False
    return True


def shown(item, fields):
    if not fields:
        return item
    return dict((key, value) for key, value in item.items() if key in fields)


def list_registered(kind, query):
    filters = parse_qs(query, keep_blank_values=True)
    fields = filters.get("fields")
    with LOCK:
        items = list(REGISTRY[kind].values())
    return [shown(item, fields) for item in items if matches(item, filters)]


def read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0 or length > MAX_BODY:
        return None
    try:
        return json.loads(environ["wsgi.input"].read(length).decode())
    except (ValueError, UnicodeDecodeError):
        return None


def admin(environ, start, kind, item_id, method):
    singular = kind[:-1]
    if method == "GET" and item_id is None:
        with LOCK:
            return respond(start, "200 OK", {kind: list(REGISTRY[kind].values())})
    if method == "DELETE":
        with LOCK:
            if item_id is None:
                REGISTRY[kind].clear()
            elif REGISTRY[kind].pop(item_id, None) is None:
                return not_found(start, "no registered %s %s" % (singular, item_id))
        start("204 No Content", [])
        return [b""]
    if method in ("PUT", "POST") and item_id is None:
        body = read_body(environ)
        if not isinstance(body, dict):
            return bad_request(start, "send a JSON object")
        items = body.get(kind) if method == "PUT" else [body.get(singular)]
        if not isinstance(items, list) or not all(isinstance(item, dict) and item.get("id") for item in items):
            return bad_request(start, "PUT wants {\"%s\": [...]}, POST {\"%s\": {...}}, each with an id"
                               % (kind, singular))
        filled = [DEFAULTS[kind](item) for item in items]
        with LOCK:
            if method == "PUT":
                REGISTRY[kind].clear()
            for item in filled:
                REGISTRY[kind][item["id"]] = item
        if method == "PUT":
            return respond(start, "200 OK", {kind: filled})
        return respond(start, "201 Created", {singular: filled[0]})
    return not_found(start, "the admin endpoint has GET, PUT, POST and DELETE on /_lab/%s" % kind)


def application(environ, start):
    path = environ.get("PATH_INFO", "").rstrip("/")
    method = environ["REQUEST_METHOD"]
    query = environ.get("QUERY_STRING", "")
    if path == "" and method == "GET":
        port = environ.get("SERVER_PORT")
        return respond(start, "200 OK", {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": "http://127.0.0.1:%s/v2.0/" % port}]}]})
    if path == "/v2.0" and method == "GET":
        return respond(start, "200 OK", {"resources": []})
    administration = ADMIN.match(path)
    if administration:
        return admin(environ, start, administration.group("kind"), administration.group("id"), method)
    match = COLLECTION.match(path)
    if match and method == "GET":
        name, item = match.group("name"), match.group("id")
        if name in ("security-groups", "security_groups"):
            if item is None:
                return respond(start, "200 OK", {"security_groups": [DEFAULT_GROUP]})
            if item == DEFAULT_GROUP["id"]:
                return respond(start, "200 OK", {"security_group": DEFAULT_GROUP})
        elif name in REGISTRY:
            if item is None:
                return respond(start, "200 OK", {name: list_registered(name, query)})
            with LOCK:
                found = REGISTRY[name].get(item)
            if found is not None:
                fields = parse_qs(query).get("fields")
                return respond(start, "200 OK", {name[:-1]: shown(found, fields)})
        elif item is None:
            return respond(start, "200 OK", {name.replace("-", "_"): []})
    return not_found(start)


class ThreadingWSGIServer(ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port = int(sys.argv[1])
    server = simple_server.make_server("127.0.0.1", port, application, server_class=ThreadingWSGIServer)
    print("neutron stand-in on 127.0.0.1:%d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
