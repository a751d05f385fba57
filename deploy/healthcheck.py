"""The container's health check: GET /healthz on this container as the proxy in front sends it.

With DEBUG off, Django answers only a host in ALLOWED_HOSTS and redirects plain HTTP to HTTPS
unless a trusted proxy said the client used HTTPS. A bare request to 127.0.0.1 gets a 400 or a
redirect and never reaches the check, so this one names the site's host and the scheme, as the
Kubernetes probes do (deploy/k8s/web.yaml). A redirect is a failure: the check did not run.
Exit status 0 when /healthz answers 200.
"""

from __future__ import annotations

import http.client
import os
import sys


def site_host() -> str:
    """The first of ALLOWED_HOSTS as a Host header ("localhost" for a wildcard or none)."""
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = hosts[0].lstrip(".") if hosts else ""
    return "localhost" if host in ("", "*") else host


def main() -> int:
    port = int(os.environ.get("HEALTHCHECK_PORT", "8000"))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz", headers={"Host": site_host(), "X-Forwarded-Proto": "https"})
        response = connection.getresponse()
        body = response.read(500).decode(errors="replace")
    except OSError as exc:
        print(f"healthz: {exc}")
        return 1
    print(f"healthz: {response.status} {body}")
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
