#!/usr/bin/env python3
"""Serve Keystone's WSGI application with waitress.

Run by the Python of Keystone's own virtualenv (scripts/servers.py starts it):

    OS_KEYSTONE_CONFIG_FILES=/path/keystone.conf \\
        .state/keystone/venv/bin/python scripts/keystone_launcher.py --port 5000

Keystone parses the process argv through oslo.config when its application is
built (keystone.server.configure -> CONF(args=None) reads sys.argv[1:]), so
this launcher reads its own options first and then clears sys.argv before it
imports the application.  Keystone reads its configuration files from
OS_KEYSTONE_CONFIG_FILES (';'-separated) or OS_KEYSTONE_CONFIG_DIR.
"""

import argparse
import importlib
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--app", default="keystone.wsgi.api:application",
                    help="module:attribute of the WSGI application")
    args = ap.parse_args()
    if not (os.environ.get("OS_KEYSTONE_CONFIG_FILES", "").strip()
            or os.environ.get("OS_KEYSTONE_CONFIG_DIR", "").strip()):
        sys.exit("keystone_launcher: set OS_KEYSTONE_CONFIG_FILES (or "
                 "OS_KEYSTONE_CONFIG_DIR); otherwise Keystone silently falls back "
                 "to /etc/keystone")

    sys.argv = sys.argv[:1]             # before Keystone's oslo.config sees them

    module_name, _, attr = args.app.partition(":")
    application = getattr(importlib.import_module(module_name), attr or "application")

    import waitress
    waitress.serve(application, host=args.host, port=args.port, threads=args.threads,
                   ident="keystone", clear_untrusted_proxy_headers=True)


if __name__ == "__main__":
    main()
