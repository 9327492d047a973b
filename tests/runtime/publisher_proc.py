"""A device publisher in its own process, for tests that kill it (``python publisher_proc.py``).

Arguments: BROKER_URL DEVICE_ID OUTBOX_PATH N_EVENTS. Publishes N events, prints ``ready`` once
connected and the outbox is empty, then idles until killed.
"""

from __future__ import annotations

import sys
import time

from edgesiam.mqtt.client import MqttSettings
from edgesiam.mqtt.contract import event_builder
from edgesiam.mqtt.publisher import MqttPublisher
from edgesiam.runtime.outbox import Outbox


def main() -> None:
    url, device, outbox_path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    settings = MqttSettings(url=url, device_id=device, keepalive=5, homeassistant=False)
    outbox = Outbox(outbox_path, id_prefix=device)
    publisher = MqttPublisher(settings, outbox, "test-model")
    publisher.start()
    for i in range(n):
        build = event_builder(
            device=device, model="m", label="alice", score=0.9, threshold=0.5, offset_s=float(i)
        )
        publisher.publish_event(outbox.add(build))
    deadline = time.monotonic() + 20
    while (not publisher.connected or outbox.depth) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
