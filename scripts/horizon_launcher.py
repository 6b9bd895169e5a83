#!/usr/bin/env python3
"""Serve Horizon's WSGI application with waitress, its static files with WhiteNoise.

Run by the Python of Horizon's own virtualenv (scripts/servers.py starts the demo's;
tests start their own through devtools/horizon.py):

    .state/horizon/venv/bin/python scripts/horizon_launcher.py --port 8770

Horizon reads openstack_dashboard/local/local_settings.py and local_settings.d/ of
that virtualenv (servers.py writes them). The collected, offline-compressed static
files are served from STATIC_ROOT under STATIC_URL, as a production Horizon's web
server would; Django itself does not serve them with DEBUG off.
"""

import argparse
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8770)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openstack_dashboard.settings")

    from django.conf import settings
    from openstack_dashboard.wsgi import application
    from whitenoise import WhiteNoise
    application = WhiteNoise(application, root=settings.STATIC_ROOT,
                             prefix=settings.STATIC_URL, max_age=3600)

    import waitress
    waitress.serve(application, host=args.host, port=args.port, threads=args.threads,
                   ident="horizon", clear_untrusted_proxy_headers=True)


if __name__ == "__main__":
    main()
