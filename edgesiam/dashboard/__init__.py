"""The dashboard: a web page fed live from MQTT, with a SQLite history of every device's events.

- :mod:`~edgesiam.dashboard.history`: the SQLite store (events de-duplicated by ``id``, near
  misses, device status and metrics, command results, retention). Pure of MQTT and HTTP.
- :mod:`~edgesiam.dashboard.ingest`: the MQTT client that writes the history (persistent session,
  QoS 1, each event committed before its PUBACK) and sends commands to devices.
- :mod:`~edgesiam.dashboard.server`: the HTTP server (the page, a REST/JSON API, Server-Sent
  Events for live updates); :mod:`~edgesiam.dashboard.auth`: its token check.

Nothing here imports torch, TensorFlow, librosa, scipy or matplotlib: the dashboard runs on any
small machine with ``pip install 'edgesiam[dashboard]'``.
"""

from __future__ import annotations

__all__: list[str] = []
