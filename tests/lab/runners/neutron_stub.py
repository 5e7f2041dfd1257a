"""A stand-in for the Neutron API, enough for servers booted with networks "none".

Usage: python neutron_stub.py PORT

Nova asks Neutron about a server even when it has no ports: the security
groups at boot, the ports on listings and deletes, the extensions. Every
collection answers empty except security-groups, which holds the project's
"default" group. Anything else, and every write, answers 404, so a test that
tries real networking fails loudly instead of passing on a fake.
"""

import json
import re
import sys
from socketserver import ThreadingMixIn
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


def respond(start, status, body):
    start(status, [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def application(environ, start):
    path = environ.get("PATH_INFO", "").rstrip("/")
    method = environ["REQUEST_METHOD"]
    if path == "" and method == "GET":
        port = environ.get("SERVER_PORT")
        return respond(start, "200 OK", {"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": "http://127.0.0.1:%s/v2.0/" % port}]}]})
    if path == "/v2.0" and method == "GET":
        return respond(start, "200 OK", {"resources": []})
    match = COLLECTION.match(path)
    if match and method == "GET":
        name, item = match.group("name"), match.group("id")
        if name in ("security-groups", "security_groups"):
            if item is None:
                return respond(start, "200 OK", {"security_groups": [DEFAULT_GROUP]})
            if item == DEFAULT_GROUP["id"]:
                return respond(start, "200 OK", {"security_group": DEFAULT_GROUP})
        elif item is None:
            return respond(start, "200 OK", {name.replace("-", "_"): []})
    return respond(start, "404 Not Found",
                   {"NeutronError": {"type": "NotFound", "message": "not in the lab's neutron stand-in",
                                     "detail": ""}})


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
