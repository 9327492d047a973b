"""Remote commands: ``<prefix>/<device>/cmd/<verb>`` → ``…/cmd/<verb>/result``.

:meth:`CommandHandler.handle` checks a request against a strict schema (pydantic, unknown keys
rejected, sizes capped), calls the runtime through the small :class:`CommandTarget` interface and
returns a result dict. It never raises: bad JSON, a wrong field, an oversized WAV, an unknown verb or
an exception inside the runtime all come back as ``{"ok": false, "error": …, "error_code": …}``
with the request's ``correlation_id`` echoed when it could be read.

Verbs and their request fields (every request may carry ``correlation_id``, a string):

- ``enroll``: ``label`` and one of ``embeddings`` (rows of floats, already L2-normalised or not),
  ``wav_base64`` (a short WAV file, base64; at most ``max_clip_bytes`` decoded), ``csv_base64`` (a
  sensor CSV, base64, for a sensor bundle) or ``clips`` (1-10 of ``{"name", "wav_base64" or
  "csv_base64"}``; at most ``max_enroll_bytes`` decoded in all); ``append`` (default false: the
  label's recordings are replaced) adds them to the label instead.
- ``forget``: ``label``.
- ``list``: nothing.
- ``threshold``: ``label`` (omit for the default threshold) and one of ``value`` (a cosine in
  [-1, 1]) or ``target_fmr`` (a calibrated false-match rate); neither with a label drops the value
  set over MQTT for that label. The runtime saves these beside the gallery: they outlast a restart
  (:mod:`edgesiam.runtime.threshold_store`).
- ``reload``: nothing (re-read the gallery and config from disk).

The review loop (an event's or near miss's ``embedding`` and ``embedding_scale`` sent back):

- ``reject``: ``label``, ``embedding``, ``embedding_scale`` — a false match: the window joins the
  label's impostor cohort (beside the gallery) and the label's threshold is recomputed above it.
- ``unreject``: ``id`` — drop that rejected window again (undo); the threshold is recomputed.
- ``confirm``: ``label``, ``embedding``, ``embedding_scale`` — a near miss that was the label:
  the window is enrolled as one more template of the label.
- ``forget_template``: ``label``, ``id`` — remove one template (undo of ``confirm``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, Protocol

import numpy as np
from pydantic import (
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from edgesiam.errors import CommandRejected, CommandTooLarge, EdgesiamError
from edgesiam.mqtt.contract import VERBS, error_result, ok_result, peek_correlation_id, to_json
from edgesiam.settings import StrictModel, validation_problems

__all__ = [
    "Clip",
    "CommandHandler",
    "CommandTarget",
    "validate_label",
]

log = logging.getLogger(__name__)

_MAX_CLIPS: Final = 10
"""The gallery's limit on one label's recordings (``gallery_store.MAX_RECORDINGS``)."""
_NAME_FORBIDDEN: Final = re.compile(r"[/\\\x00-\x1f\x7f]")
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)


def validate_label(label: str) -> str:
    """The gallery's rule for a label (:func:`edgesiam.runtime.gallery_store.validate_label`):
    1-64 characters, no ``/ \\ + #``, no control characters, no leading or trailing space."""
    from edgesiam.runtime.gallery_store import validate_label as gallery_rule

    try:
        return gallery_rule(label)
    except EdgesiamError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class Clip:
    """One recording sent with ``enroll``: its name (for reports), ``"wav"`` or ``"csv"``, bytes."""

    name: str
    kind: Literal["wav", "csv"]
    data: bytes


class CommandTarget(Protocol):
    """What the runtime offers to commands; each returns a JSON-serialisable dict.

    A method raises :class:`~edgesiam.errors.EdgesiamError` (or ``ValueError``/``KeyError``) for a
    request it cannot honour (unknown label, wrong embedding size); its message goes back to the
    caller. Calls come from the publisher's command thread, one at a time.
    """

    def enroll_embeddings(
        self, label: str, embeddings: np.ndarray, append: bool = False
    ) -> dict[str, Any]: ...

    def enroll_clips(
        self, label: str, clips: list[Clip], append: bool = False
    ) -> dict[str, Any]: ...

    def forget(self, label: str) -> dict[str, Any]: ...

    def list(self) -> dict[str, Any]: ...

    def set_threshold(
        self, label: str | None, value: float | None, target_fmr: float | None
    ) -> dict[str, Any]: ...

    def reload(self) -> dict[str, Any]: ...

    def reject(self, label: str, embedding: str, scale: float) -> dict[str, Any]: ...

    def unreject(self, entry_id: str) -> dict[str, Any]: ...

    def confirm(self, label: str, embedding: str, scale: float) -> dict[str, Any]: ...

    def forget_template(self, label: str, template_id: str) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------------
# request schemas

Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Request(StrictModel):
    correlation_id: str | None = Field(None, max_length=128)


class _Labelled(_Request):
    label: str

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        return validate_label(value)


class ClipRequest(StrictModel):
    """One clip of ``enroll``'s ``clips``: a WAV or a sensor CSV, base64, and an optional name."""

    name: str | None = Field(None, min_length=1, max_length=128)
    wav_base64: str | None = None
    csv_base64: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (
            _NAME_FORBIDDEN.search(value) or value != value.strip() or value in (".", "..")
        ):
            raise ValueError("a clip name is a file name: no / \\ or control characters")
        return value

    @model_validator(mode="after")
    def _one_file(self) -> ClipRequest:
        if (self.wav_base64 is None) == (self.csv_base64 is None):
            raise ValueError("each clip gives either wav_base64 or csv_base64")
        return self


class EnrollRequest(_Labelled):
    embeddings: list[Annotated[list[Finite], Field(min_length=1, max_length=4096)]] | None = Field(
        None, min_length=1, max_length=256
    )
    wav_base64: str | None = None
    csv_base64: str | None = None
    clips: list[ClipRequest] | None = Field(None, min_length=1, max_length=_MAX_CLIPS)
    append: StrictBool = False

    @model_validator(mode="after")
    def _one_source(self) -> EnrollRequest:
        given = [self.embeddings, self.wav_base64, self.csv_base64, self.clips]
        if sum(x is not None for x in given) != 1:
            raise ValueError("give either embeddings, wav_base64, csv_base64 or clips")
        if self.embeddings is not None:
            if len({len(row) for row in self.embeddings}) != 1:
                raise ValueError("every embedding must have the same length")
            if any(abs(v) > _FLOAT32_MAX for row in self.embeddings for v in row):
                raise ValueError("embedding values must fit in float32 (|x| <= 3.4e38)")
        return self


class ForgetRequest(_Labelled):
    pass


class ListRequest(_Request):
    pass


class ReloadRequest(_Request):
    pass


class ThresholdRequest(_Request):
    label: str | None = None
    value: Finite | None = Field(None, ge=-1.0, le=1.0)
    target_fmr: Finite | None = Field(None, gt=0.0, lt=1.0)

    @field_validator("label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        return None if value is None else validate_label(value)

    @model_validator(mode="after")
    def _one_way(self) -> ThresholdRequest:
        if self.value is not None and self.target_fmr is not None:
            raise ValueError("give value or target_fmr, not both")
        if self.value is None and self.target_fmr is None and self.label is None:
            raise ValueError("give value or target_fmr (or a label, to clear its threshold)")
        return self


_ID: Final = r"^[0-9a-f]{12}$"


class ReviewRequest(_Labelled):
    """``reject`` and ``confirm``: the window embedding an event or near miss carried."""

    embedding: str = Field(min_length=4, max_length=8192)
    embedding_scale: Finite = Field(gt=0.0)


class UnrejectRequest(_Request):
    id: str = Field(pattern=_ID, description="a rejected window's id (its result's 'id')")


class ForgetTemplateRequest(_Labelled):
    id: str = Field(pattern=_ID, description="a template's id (from confirm, or list)")


class ReplayRequest(_Request):
    """``replay``: publish kept events ``from_seq``..``to_seq`` again (:mod:`~edgesiam.runtime.replay`)."""

    from_seq: int = Field(ge=1, description="the first seq wanted")
    to_seq: int = Field(ge=1, description="the last seq wanted (at most 10000 in one request)")


ReplayCallback = Callable[[int, int], dict[str, Any]]


_SCHEMAS: Final[dict[str, type[_Request]]] = {
    "enroll": EnrollRequest,
    "forget": ForgetRequest,
    "list": ListRequest,
    "threshold": ThresholdRequest,
    "reload": ReloadRequest,
    "reject": ReviewRequest,
    "unreject": UnrejectRequest,
    "confirm": ReviewRequest,
    "forget_template": ForgetTemplateRequest,
    "replay": ReplayRequest,
}


# ------------------------------------------------------------------------------------------------
# results


def _describe(exc: ValidationError) -> str:
    return "; ".join(validation_problems(exc, "(request)"))


class CommandHandler:
    """Validates command requests and runs them against a :class:`CommandTarget`.

    ``max_wav_bytes`` caps one decoded clip (a WAV or a CSV), ``max_enroll_bytes`` all the clips
    of one request together; ``max_payload_bytes`` caps the raw message before it is even parsed
    (raised, when needed, to fit ``max_enroll_bytes`` in base64).
    """

    def __init__(
        self,
        target: CommandTarget,
        *,
        max_wav_bytes: int = 512 * 1024,
        max_enroll_bytes: int = 2 * 1024 * 1024,
        max_payload_bytes: int = 2 * 1024 * 1024,
        replay: ReplayCallback | None = None,
    ) -> None:
        self.target = target
        self.replay = replay
        self.max_wav_bytes = max_wav_bytes
        self.max_enroll_bytes = max(max_enroll_bytes, max_wav_bytes)
        self.max_payload_bytes = max(
            max_payload_bytes, (self.max_enroll_bytes * 4) // 3 + 64 * 1024
        )
        self._lock = threading.Lock()

    def __call__(self, verb: str, payload: bytes) -> dict[str, Any]:
        return self.handle(verb, payload)

    def handle(self, verb: str, payload: bytes) -> dict[str, Any]:
        """Run one command; always returns a result dict, never raises."""
        try:
            return self._handle(verb, payload)
        except Exception as exc:  # a bug here must not take the runtime down
            log.exception("command %r: unexpected failure", verb)
            return error_result(
                str(verb)[:64],
                "internal",
                f"internal error ({type(exc).__name__})",
                peek_correlation_id(payload),
            )

    def _handle(self, verb: str, payload: bytes) -> dict[str, Any]:
        if not isinstance(payload, bytes | bytearray | memoryview):
            return error_result(verb, "bad_json", "the payload must be bytes", None)
        payload = bytes(payload)
        if len(payload) > self.max_payload_bytes:
            return error_result(
                verb,
                "too_large",
                f"the request is {len(payload)} bytes; at most {self.max_payload_bytes}",
                None,
            )
        schema = _SCHEMAS.get(verb)
        if schema is None:
            return error_result(
                verb,
                "unknown_verb",
                f"unknown command {verb!r}; the commands are {', '.join(VERBS)}",
                peek_correlation_id(payload),
            )
        try:
            data = json.loads(payload) if payload.strip() else {}
        except (ValueError, RecursionError):
            return error_result(verb, "bad_json", "the payload is not a JSON object", None)
        if not isinstance(data, dict):
            return error_result(verb, "bad_json", "the payload must be a JSON object", None)
        cid = peek_correlation_id(payload)
        try:
            request = schema.model_validate(data)
        except ValidationError as exc:
            return error_result(verb, "invalid", _describe(exc), cid)
        cid = request.correlation_id
        try:
            with self._lock:
                result = self._run(verb, request)
        except CommandTooLarge as exc:
            return error_result(verb, "too_large", str(exc), cid)
        except CommandRejected as exc:
            return error_result(verb, "invalid", str(exc), cid)
        except (EdgesiamError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            log.info("command %s failed: %s", verb, message)
            return error_result(verb, "failed", str(message), cid)
        except Exception as exc:
            log.exception("command %s: the runtime failed", verb)
            return error_result(verb, "internal", f"the device failed ({type(exc).__name__})", cid)
        if not isinstance(result, dict):
            return error_result(verb, "internal", "the device returned no result object", cid)
        try:
            to_json(result)
        except (TypeError, ValueError):
            return error_result(verb, "internal", "the device returned a non-JSON result", cid)
        return ok_result(verb, result, cid)

    def _run(self, verb: str, request: _Request) -> dict[str, Any]:
        t = self.target
        if isinstance(request, EnrollRequest):
            if request.embeddings is not None:
                rows = np.asarray(request.embeddings, dtype=np.float32)
                return t.enroll_embeddings(request.label, rows, append=request.append)
            return t.enroll_clips(request.label, self._clips(request), append=request.append)
        if isinstance(request, ForgetRequest):
            return t.forget(request.label)
        if isinstance(request, ListRequest):
            return t.list()
        if isinstance(request, ThresholdRequest):
            return t.set_threshold(request.label, request.value, request.target_fmr)
        if isinstance(request, ReloadRequest):
            return t.reload()
        if isinstance(request, ReviewRequest):
            review = t.reject if verb == "reject" else t.confirm
            return review(request.label, request.embedding, request.embedding_scale)
        if isinstance(request, UnrejectRequest):
            return t.unreject(request.id)
        if isinstance(request, ForgetTemplateRequest):
            return t.forget_template(request.label, request.id)
        if isinstance(request, ReplayRequest):
            if self.replay is None:
                raise CommandRejected(
                    "this device keeps no events to replay (no outbox or no broker)"
                )
            return self.replay(request.from_seq, request.to_seq)
        raise CommandRejected(f"unknown command {verb!r}")  # pragma: no cover - _SCHEMAS covers all

    def _clips(self, request: EnrollRequest) -> list[Clip]:
        """The request's clips, decoded and checked against the size caps."""
        given = request.clips or [
            ClipRequest(wav_base64=request.wav_base64, csv_base64=request.csv_base64)
        ]
        clips = [self._decode_clip(i, clip) for i, clip in enumerate(given, start=1)]
        total = sum(len(clip.data) for clip in clips)
        if total > self.max_enroll_bytes:
            raise CommandTooLarge(
                f"the clips are {total} bytes in all; at most {self.max_enroll_bytes} per request "
                "(send the rest with append)"
            )
        return clips

    def _decode_clip(self, number: int, clip: ClipRequest) -> Clip:
        kind: Literal["wav", "csv"] = "wav" if clip.wav_base64 is not None else "csv"
        text = clip.wav_base64 if clip.wav_base64 is not None else clip.csv_base64 or ""
        what = "WAV" if kind == "wav" else "CSV"
        if len(text) > 4 * ((self.max_wav_bytes + 2) // 3):
            raise CommandTooLarge(f"the {what} is over {self.max_wav_bytes} bytes")
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise CommandRejected(f"{kind}_base64 is not valid base64") from None
        if len(raw) > self.max_wav_bytes:
            raise CommandTooLarge(f"the {what} is {len(raw)} bytes; at most {self.max_wav_bytes}")
        if kind == "wav" and (len(raw) < 44 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE"):
            raise CommandRejected("wav_base64 does not hold a WAV file (no RIFF/WAVE header)")
        if kind == "csv" and (not raw.strip() or b"\x00" in raw):
            raise CommandRejected("csv_base64 does not hold a text CSV file")
        return Clip(clip.name or f"clip{number}.{kind}", kind, raw)
