"""The device runtime: sources, gallery store, pipeline, outbox and MQTT publishing (see docs/RUNTIME.md)."""
