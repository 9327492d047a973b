"""``edgesiam demo``: the main job end to end, on real data, on this machine.

Real held-out speech (``data/speech/test``: speakers the shipped model never heard) → the shipped int8
bundle (``export/speaker``) → a few-shot gallery of N speakers, each enrolled from a few clips → a
stream made of *other* clips of those speakers and of speakers never enrolled, with short gaps of
low-level room noise → the device :class:`~edgesiam.runtime.pipeline.Runtime` reading that stream
as a file source → match events over real MQTT (an embedded amqtt broker on a free localhost port,
or the broker given) → a subscriber in this process that prints each event as it arrives, with the
speaker who was really talking at that moment, and a scored summary at the end.

Scoring (an event's window is ``[offset_s - window_s, offset_s]``):

- **hit**: the event names an enrolled speaker whose turn overlaps the event's window;
- **false match**: any other event (a never-enrolled speaker, another enrolled speaker, or noise);
- **miss**: a turn of an enrolled speaker that got no hit.

So ``hits + false matches = events`` and ``detected + missed = enrolled turns``.

Parts: :mod:`.stream` (the stream and its true turns), :mod:`.scoring` (events judged against
them), :mod:`.watcher` (the MQTT subscriber), :mod:`.run` (:func:`~.run.run_demo`) and :mod:`.cli`.
"""
