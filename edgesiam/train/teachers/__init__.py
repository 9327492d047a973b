"""Pretrained teachers: large models used on the workstation as peers in evaluation tables and as
targets for distillation. They need the ``train`` extra and never reach a bundle or the device
install; this package's own import pulls in nothing heavy (the models load in submodules).
"""

from __future__ import annotations

PEERS: dict[str, str] = {
    "campplus": "CAM++ (teacher)",
    "resemblyzer": "Resemblyzer",
    "aisfx": "aisfx (teacher)",
}
"""Peers ``edgesiam eval --peer NAME`` can add, and their name in the report."""

TEACHERS: dict[str, str] = {
    "campplus": "speakers: CAM++, 192-d, 16 kHz (Apache-2.0)",
    "aisfx": "sound events: aisfx, 512-d, 44.1 kHz (CC BY 4.0)",
}
"""Teachers whose licences allow distilling shipped models (``edgesiam teachers embed``)."""
