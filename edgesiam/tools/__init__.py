"""Tools that a device never needs: the end-to-end demo, the benchmarks and the fleet simulation.

They drive the device runtime, the MQTT room and the dashboard from outside; nothing in
``edgesiam.runtime`` imports them.
"""
