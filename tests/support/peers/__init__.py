"""Real peers on 127.0.0.1 for tests: web fleets and switchable TCP servers (``fleet``), raw TCP/TLS and aiohttp
servers (``servers``), a test CA (``tls``), OTLP collectors and broken ones (``otlp``), a real
Prometheus Alertmanager (``alertmanager``)."""
