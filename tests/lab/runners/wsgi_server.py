"""Serve one WSGI application on 127.0.0.1 with a thread per request.

Usage: python wsgi_server.py MODULE:ATTRIBUTE PORT PROGRAM [ARGS...]

keystone, placement, nova-api, glance and cinder-api ship only WSGI entry
points (no standalone servers), and the lab has no Apache or uWSGI, so the
standard library's server is enough: the lab serves a handful of clients.
sys.argv is replaced before the import because the applications parse it
with oslo.config while they load.
"""

import importlib
import socketserver
import sys
import time
from wsgiref import simple_server


class ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class LogToStderrHandler(simple_server.WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        pass        # logged with its duration by timed() instead

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def timed(application):
    """Log each request with its status and the time the application took."""
    def logged(environ, start_response):
        started = time.time()
        seen = []

        def start(status, headers, exc_info=None):
            seen.append(status.split()[0])
            return start_response(status, headers, exc_info)
        try:
            return application(environ, start)
        finally:
            query = environ.get("QUERY_STRING")
            sys.stderr.write("request %s %s%s -> %s in %.3f s\n" % (
                environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), "?" + query if query else "",
                seen[0] if seen else "-", time.time() - started))
    return logged


def main():
    target, port, program = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sys.argv = [program] + sys.argv[4:]
    started = time.time()
    module_name, attribute = target.split(":")
    application = getattr(importlib.import_module(module_name), attribute)
    server = simple_server.make_server("127.0.0.1", port, timed(application),
                                       server_class=ThreadingWSGIServer,
                                       handler_class=LogToStderrHandler)
    print("%s serving %s on 127.0.0.1:%d (loaded in %.1f s)" % (program, target, port, time.time() - started),
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
