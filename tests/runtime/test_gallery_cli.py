"""``edgesiam enroll`` and ``edgesiam gallery list|forget`` end to end, with a real tiny bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.runtime.gallery_store import GalleryStore, model_sha256
from tests.support.cli import gallery_parser, run_gallery


def takes(root: Path, label: str) -> list[Path]:
    return sorted((root / label).glob("*.wav"))


def test_enroll_list_match_and_forget(
    audio_bundle: Path,
    audio_heldout: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gallery = tmp_path / "state" / "gallery.npz"
    voice0, voice1 = takes(audio_heldout, "voice0"), takes(audio_heldout, "voice3")
    common = ["--bundle", audio_bundle, "--gallery", gallery]

    code, out, err = run_gallery(capsys, "enroll", *common, "--label", "voice0", *voice0[:3])
    assert code == 0, err
    assert "enrolled 'voice0' from 3 recordings" in out and "tiny-audio" in out
    assert "consistency: 0." in out or "consistency: 1.0" in out

    code, out, err = run_gallery(capsys, "enroll", *common, "--label", "voice3", voice1[0])
    assert code == 0, err
    assert "from 1 recording into" in out and "consistency: n/a" in out
    assert "closest other label: voice0" in out

    code, out, err = run_gallery(
        capsys, "gallery", "list", "--gallery", gallery, "--bundle", audio_bundle
    )
    assert code == 0, err
    assert "2 labels, 4 recordings; model tiny-audio" in out and "matches the bundle" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[3:]}
    assert rows["voice3"] == ["1", "n/a"] and rows["voice0"][0] == "3"

    code, out, _ = run_gallery(capsys, "gallery", "list", "--gallery", gallery, "--json")
    listed = json.loads(out)
    assert [x["label"] for x in listed["labels"]] == ["voice0", "voice3"]
    assert listed["labels"][1]["consistency"] is None and listed["embedding_dim"] > 0
    assert listed["labels"][0]["sources"] == [p.name for p in voice0[:3]]

    # the stored templates recognise takes that were not enrolled
    from edgesiam.data.readers import read_audio
    from edgesiam.model.embedders import embed_recording
    from edgesiam.model.interpreters import load_model

    model = load_model(audio_bundle)
    matcher = GalleryStore(gallery, model_sha256(model.manifest)).load()
    for path, label in ((voice0[4], "voice0"), (voice1[3], "voice3")):
        emb = embed_recording(model, read_audio(path, model.sample_rate))
        idx, score = matcher.best(emb)
        assert matcher.labels[int(idx[0])] == label and score[0] > 0.5

    code, out, err = run_gallery(
        capsys, "gallery", "forget", "--gallery", gallery, "--label", "voice3"
    )
    assert code == 0, err
    assert "forgot 'voice3' (1 recording)" in out and "1 label left" in out
    code, out, err = run_gallery(
        capsys, "gallery", "forget", "--gallery", gallery, "--label", "voice3"
    )
    assert code == 2 and "no label 'voice3'" in err and "enrolled: voice0" in err


def test_short_clips_are_enrolled_with_warnings_and_silent_ones_refused(
    audio_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    t = np.arange(int(0.2 * 16000)) / 16000
    sf.write(tmp_path / "short.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    code, out, err = run_gallery(
        capsys,
        "enroll",
        "--bundle",
        audio_bundle,
        "--gallery",
        tmp_path / "g.npz",
        "--label",
        "odd",
        tmp_path / "short.wav",
        tmp_path / "silent.wav",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["recordings"] == 1 and result["consistency"] is None
    warnings = "\n".join(result["warnings"])
    assert "short.wav: shorter than one window (0.20 s < 0.50 s)" in warnings
    assert "silent.wav: refused: no active window" in warnings
    assert [(c["name"], c["active"], c["refused"] is None) for c in result["clips"]] == [
        ("short.wav", 1, True),
        ("silent.wav", 0, False),
    ]


def test_another_models_gallery_is_refused(
    audio_bundle: Path,
    audio_heldout: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gallery = tmp_path / "old.npz"
    GalleryStore(gallery, "f" * 64, bundle_name="old-model").enroll("x", [np.ones(4)])
    before = gallery.read_bytes()
    clip = takes(audio_heldout, "voice1")[0]
    code, _, err = run_gallery(
        capsys, "enroll", "--bundle", audio_bundle, "--gallery", gallery, "--label", "y", clip
    )
    assert code == 2
    assert "different model (old-model, model sha256 ffffffffffff" in err and "Re-enroll" in err
    code, _, err = run_gallery(
        capsys, "gallery", "list", "--gallery", gallery, "--bundle", audio_bundle
    )
    assert code == 2 and "different model" in err
    assert gallery.read_bytes() == before
    code, out, _ = run_gallery(
        capsys, "gallery", "list", "--gallery", gallery
    )  # no bundle: just looks
    assert code == 0 and "model old-model" in out


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "no-bundle"
    code, _, err = run_gallery(
        capsys, "enroll", "--bundle", bundle, "--gallery", tmp_path / "g", "--label", "a/b", "x.wav"
    )
    assert code == 2 and "path separators" in err
    code, _, err = run_gallery(
        capsys, "enroll", "--bundle", bundle, "--gallery", tmp_path / "g", "--label", "a", "x.wav"
    )
    assert code == 2 and "not a bundle" in err
    code, _, err = run_gallery(capsys, "gallery", "list", "--gallery", tmp_path / "none.npz")
    assert code == 2 and "edgesiam enroll" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["enroll", "--help"],
            [
                "examples:",
                "edgesiam enroll --bundle",
                "--append",
                "consistency",
                "--from-dataset recordings/",
                "REPLACES",
                "active windows",
            ],
        ),
        (["gallery", "--help"], ["examples:", "edgesiam gallery forget --gallery"]),
        (["gallery", "list", "--help"], ["--bundle", "--json"]),
    ],
)
def test_help_teaches(
    argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        gallery_parser().parse_args(argv)
    assert done.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def test_enroll_and_list_run_without_torch_tensorflow_or_librosa(
    audio_bundle: Path,
    audio_heldout: Path,
    tmp_path: Path,
) -> None:
    """The device install: block the workstation libraries, enroll and list in a fresh process."""
    clips = [str(p) for p in takes(audio_heldout, "voice2")[:2]]
    gallery = str(tmp_path / "g.npz")
    code = (
        "import sys\n"
        "for m in ('torch', 'tensorflow', 'librosa', 'keras', 'matplotlib', 'scipy'):\n"
        "    sys.modules[m] = None\n"
        "import argparse\n"
        "from edgesiam.runtime.gallery_cli import add_gallery_parsers\n"
        "p = argparse.ArgumentParser(prog='edgesiam')\n"
        "add_gallery_parsers(p.add_subparsers(dest='command', required=True))\n"
        f"a = p.parse_args(['enroll', '--bundle', {str(audio_bundle)!r}, '--gallery', {gallery!r},"
        f" '--label', 'voice2', *{clips!r}])\n"
        "assert a.func(a) == 0\n"
        f"a = p.parse_args(['gallery', 'list', '--gallery', {gallery!r}])\n"
        "assert a.func(a) == 0\n"
        "heavy = [m for m in ('torch', 'tensorflow', 'librosa') if sys.modules.get(m)]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "enrolled 'voice2' from 2 recordings" in done.stdout and "voice2" in done.stdout
