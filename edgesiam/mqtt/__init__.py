"""The wire: the MQTT contract (topics, payload schemas), one paho client factory (TLS,
credentials), the device's publisher, Home Assistant discovery and the embedded broker.

The device, the dashboard and the tools all talk MQTT through this package; it imports neither of
them (docs/MQTT.md is the contract in prose).
"""
