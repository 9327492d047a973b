"""Fast tests of edgesiam.data.readers on small generated files."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgesiam.data.readers import (
    AUDIO_EXTENSIONS,
    SENSOR_EXTENSIONS,
    DatasetInfo,
    Recording,
    SensorSpec,
    count_non_finite,
    iter_recordings,
    load_recording,
    parse_group,
    read_audio,
    read_sensor,
    read_sensor_for,
    scan_dataset,
)
from edgesiam.errors import DataError, EdgesiamError


def sine(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / rate)[int(np.argmax(spectrum))])


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------
# audio


def test_extensions() -> None:
    assert AUDIO_EXTENSIONS == (".wav", ".flac", ".ogg", ".opus")
    assert SENSOR_EXTENSIONS == (".csv", ".npy")


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
def test_wav_resampled_to_16k_with_correct_length(tmp_path: Path, rate: int) -> None:
    x = sine(rate, 1.3)
    path = tmp_path / "a.wav"
    sf.write(path, x, rate, subtype="PCM_16")
    y = read_audio(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.size == round(x.size * 16000 / rate)
    assert abs(dominant_freq(y, 16000) - 440.0) < 2.0
    assert 0.45 < float(np.max(np.abs(y))) < 0.55


def test_stereo_is_averaged(tmp_path: Path) -> None:
    left = sine(16000, 0.5, 300.0, 0.4)
    right = sine(16000, 0.5, 500.0, 0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    y = read_audio(path, 16000)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "rate"),
    [
        ("a.flac", "FLAC", "PCM_16", 44100),
        ("a.ogg", "OGG", "VORBIS", 22050),
        ("a.opus", "OGG", "OPUS", 48000),
    ],
)
def test_compressed_formats(tmp_path: Path, name: str, fmt: str, subtype: str, rate: int) -> None:
    if subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    x = sine(rate, 1.0, 1000.0)
    path = tmp_path / name
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    y = read_audio(path, 16000)
    assert abs(y.size - 16000) <= 400  # lossy codecs may pad or pre-skip a few ms
    assert abs(dominant_freq(y, 16000) - 1000.0) < 5.0


def test_offset_and_max_seconds(tmp_path: Path) -> None:
    x = np.linspace(-1, 1, 16000 * 3, dtype=np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    y = read_audio(path, 16000, offset_s=1.0, max_seconds=0.5)
    np.testing.assert_allclose(y, x[16000:24000])


def test_unreadable_empty_and_non_finite_audio(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all")
    with pytest.raises(DataError, match=r"junk\.wav") as info:
        read_audio(junk, 16000)
    assert info.value.path == junk

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="no audio samples"):
        read_audio(empty, 16000)

    nan = tmp_path / "nan.wav"
    x = sine(16000, 0.1)
    x[5] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    with pytest.raises(DataError, match="NaN"):
        read_audio(nan, 16000)

    with pytest.raises(DataError, match=r"missing\.wav"):
        read_audio(tmp_path / "missing.wav", 16000)


# --------------------------------------------------------------------------------------------------
# sensors


def test_csv_without_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "1,2,3\n4,5,6\n\n7,8,9\n")
    x = read_sensor(path)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])


def test_csv_with_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "ax, ay\n0.5, -1e-3\n2, 3\n")
    np.testing.assert_allclose(read_sensor(path, channels=2), [[0.5, -1e-3], [2, 3]])


def test_semicolon_csv_with_decimal_comma(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "x;y\n1,5;2\n-0,25;3,75\n")
    np.testing.assert_allclose(read_sensor(path), [[1.5, 2], [-0.25, 3.75]])


@pytest.mark.parametrize("sep", [" ", "\t", "  "])
def test_whitespace_and_tab_separated(tmp_path: Path, sep: str) -> None:
    path = write_csv(tmp_path / "a.csv", f"1{sep}2\n3{sep}4\n")
    np.testing.assert_array_equal(read_sensor(path), [[1, 2], [3, 4]])


def test_nan_and_inf_are_kept_and_counted(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "1,nan\ninf,4\n5,NaN\n")
    x = read_sensor(path)
    assert x.shape == (3, 2)
    assert count_non_finite(x) == 3
    assert count_non_finite(np.ones((2, 2))) == 0
    assert count_non_finite(np.arange(3)) == 0


def test_malformed_csv_row_names_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", "a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"bad\.csv.*line 3.*oops"):
        read_sensor(path)
    ragged = write_csv(tmp_path / "ragged.csv", "1,2\n3,4,5\n")
    with pytest.raises(DataError, match=r"ragged\.csv.*line 2.*3 values where 2"):
        read_sensor(ragged)


def test_wrong_channel_count(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", "1,2\n3,4\n")
    with pytest.raises(DataError, match=r"a\.csv.*2 channels.*expected 3"):
        read_sensor(path, channels=3)


@pytest.mark.parametrize("text", ["", "\n\n", "ax,ay\n", "# only a comment\n"])
def test_empty_csv(tmp_path: Path, text: str) -> None:
    path = write_csv(tmp_path / "empty.csv", text)
    with pytest.raises(DataError, match=r"empty\.csv.*no data rows"):
        read_sensor(path)


def test_npy_1d_and_2d(tmp_path: Path) -> None:
    one = tmp_path / "one.npy"
    np.save(one, np.arange(5, dtype=np.int16))
    x = read_sensor(one)
    assert x.shape == (5, 1) and x.dtype == np.float32
    two = tmp_path / "two.npy"
    np.save(two, np.ones((7, 3)))
    assert read_sensor(two, channels=3).shape == (7, 3)
    three = tmp_path / "three.npy"
    np.save(three, np.ones((2, 2, 2)))
    with pytest.raises(DataError, match=r"three\.npy.*shape"):
        read_sensor(three)
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3)))
    with pytest.raises(DataError, match="no samples"):
        read_sensor(empty)
    strings = tmp_path / "strings.npy"
    np.save(strings, np.array(["a", "b"]))
    with pytest.raises(DataError, match="not numbers"):
        read_sensor(strings)


def test_unknown_sensor_extension(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("1,2\n")
    with pytest.raises(DataError, match=r"a\.txt"):
        read_sensor(path)


# --------------------------------------------------------------------------------------------------
# dataset folders


def make_audio_dataset(root: Path, items: dict[str, list[str]]) -> Path:
    for label, names in items.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            sf.write(root / label / name, sine(16000, 0.2), 16000, subtype="PCM_16")
    return root


def make_sensor_dataset(root: Path, items: dict[str, list[str]], width: int = 3) -> Path:
    for label, names in items.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            rows = "\n".join(",".join(str(i + j) for j in range(width)) for i in range(4))
            (root / label / name).write_text(rows + "\n")
    return root


def test_group_parsing() -> None:
    assert parse_group("de__ball") == "de"
    assert parse_group("hello__pirate2") == "hello"
    assert parse_group("a__b__c") == "a"
    assert parse_group("plain") is None
    assert parse_group("__name") is None
    assert parse_group("group__") is None


def test_scan_audio_dataset(tmp_path: Path) -> None:
    root = make_audio_dataset(
        tmp_path / "ds", {"bob": ["en__b.wav", "en__a.wav"], "alice": ["x.flac", "de__y.wav"]}
    )
    (root / "dataset.toml").write_text('modality = "audio"\nsample_rate = 16000\n')
    (root / "SUMMARY.json").write_text("{}")
    (root / "README.md").write_text("about")
    (root / ".hidden").write_text("")
    (root / "bob" / ".DS_Store").write_text("")
    info = scan_dataset(root)
    assert isinstance(info, DatasetInfo)
    assert info.modality == "audio" and info.sample_rate == 16000 and info.channels is None
    assert info.labels == ["alice", "bob"]
    assert len(info) == 4
    assert [r.path.name for r in info.recordings] == [
        "de__y.wav",
        "x.flac",
        "en__a.wav",
        "en__b.wav",
    ]
    assert info.recordings[0] == Recording(root / "alice" / "de__y.wav", "alice", "de")
    assert info.recordings[1].group is None
    assert info.groups == ["de", "en"]
    assert info.label_counts() == {"alice": 2, "bob": 2}
    assert info.skipped == []
    # deterministic: a second scan gives the same order
    assert scan_dataset(root).recordings == info.recordings


def test_scan_sensor_dataset_and_load(tmp_path: Path) -> None:
    root = make_sensor_dataset(tmp_path / "ds", {"walk": ["s1__a.csv"], "sit": ["s2__b.csv"]})
    np.save(root / "sit" / "s3__c.npy", np.zeros((6, 3), dtype=np.float32))
    (root / "dataset.toml").write_text('sample_rate = 50\nchannels = ["ax", "ay", "az"]\n')
    info = scan_dataset(root)
    assert info.modality == "sensor" and info.sample_rate == 50
    assert info.channels == ["ax", "ay", "az"]
    arrays = dict((r.path.name, a) for r, a in iter_recordings(info, progress=False))
    assert arrays["s1__a.csv"].shape == (4, 3) and arrays["s3__c.npy"].shape == (6, 3)
    assert load_recording(info.recordings[0], info, sample_rate=100).shape == (8, 3)


def test_load_recording_audio_needs_rate(tmp_path: Path) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav"]})
    info = scan_dataset(root)
    assert load_recording(info.recordings[0], info, 8000).size == 1600
    with pytest.raises(ValueError, match="sample_rate"):
        load_recording(info.recordings[0], info)


def test_channels_checked_against_dataset_toml(tmp_path: Path) -> None:
    root = make_sensor_dataset(tmp_path / "ds", {"a": ["1.csv"]}, width=2)
    (root / "dataset.toml").write_text('channels = ["ax", "ay", "az"]\n')
    info = scan_dataset(root)
    with pytest.raises(DataError, match=r"1\.csv.*2 channels.*expected 3"):
        load_recording(info.recordings[0], info)


def test_channel_count_must_agree_without_names(tmp_path: Path) -> None:
    root = make_sensor_dataset(tmp_path / "ds", {"a": ["1.csv"]}, width=2)
    make_sensor_dataset(root, {"b": ["2.csv"]}, width=3)
    info = scan_dataset(root)
    with pytest.raises(DataError, match=r"2\.csv.*3 channels.*other recordings have 2"):
        list(iter_recordings(info, progress=False))


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ('modality = "audio"\nrate = 16000\nfoo = 1\n', "unknown key.*foo, rate"),
        ('modality = "video"\n', "modality must be"),
        ("sample_rate = -5\n", "sample_rate must be a positive integer"),
        ('sample_rate = "fast"\n', "sample_rate must be a positive integer"),
        ('channels = "ax"\n', "channels must be a non-empty list"),
        ('channels = ["ax", "ax"]\n', "repeated"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_dataset_toml(tmp_path: Path, toml: str, match: str) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav"]})
    (root / "dataset.toml").write_text(toml)
    with pytest.raises(DataError, match=match) as info:
        scan_dataset(root)
    assert "dataset.toml" in str(info.value)


def test_dataset_toml_modality_must_match_files(tmp_path: Path) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav"]})
    (root / "dataset.toml").write_text('modality = "sensor"\n')
    with pytest.raises(DataError, match="modality = 'sensor' but the files are audio"):
        scan_dataset(root)


def test_mixed_modality_is_an_error(tmp_path: Path) -> None:
    root = make_audio_dataset(tmp_path / "one", {"a": ["1.wav"]})
    make_sensor_dataset(root, {"a": ["2.csv"]})
    with pytest.raises(DataError, match="mixes audio and sensor"):
        scan_dataset(root, on_error="skip")
    root = make_audio_dataset(tmp_path / "two", {"a": ["1.wav"]})
    make_sensor_dataset(root, {"b": ["2.csv"]})
    with pytest.raises(DataError, match="mixes audio files"):
        scan_dataset(root, on_error="skip")


def test_skip_versus_fail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav", "2.wav"], "b": ["3.wav"]})
    (root / "a" / "notes.txt").write_text("x")
    (root / "stray.wav").write_bytes(b"")
    (root / "empty").mkdir()
    (root / "bad label").mkdir()
    sf.write(root / "bad label" / "4.wav", sine(16000, 0.1), 16000)
    (root / "b" / "nested").mkdir()

    with pytest.raises(DataError, match=r"nested: is a nested folder"):
        scan_dataset(root)  # notes.txt is skipped, not a failure (tests/data/test_audio_formats.py)

    with caplog.at_level(logging.WARNING):
        info = scan_dataset(root, on_error="skip")
    assert info.labels == ["a", "b"] and len(info) == 3
    reasons = {p.name: why for p, why in info.skipped}
    assert set(reasons) == {"notes.txt", "stray.wav", "empty", "bad label", "nested"}
    assert "directly in the dataset folder" in reasons["stray.wav"]
    assert reasons["notes.txt"] == "is not a recording"
    assert "holds no recordings" in reasons["empty"]
    assert "not a safe name" in reasons["bad label"]
    assert "nested folder" in reasons["nested"]
    assert "skipping" in caplog.text


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda r: (r / "stray.wav").write_bytes(b""), "directly in the dataset folder"),
        (lambda r: (r / "empty").mkdir(), "holds no recordings"),
        (lambda r: (r / "a b").mkdir(), "not a safe name"),
    ],
)
def test_fail_policy_errors(tmp_path: Path, setup: object, match: str) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav"]})
    setup(root)  # type: ignore[operator]
    with pytest.raises(DataError, match=match):
        scan_dataset(root)


def test_no_recordings_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "ds").mkdir()
    with pytest.raises(DataError, match="holds no recordings"):
        scan_dataset(tmp_path / "ds")


def test_iter_recordings_skip_policy(tmp_path: Path) -> None:
    root = make_audio_dataset(tmp_path / "ds", {"a": ["1.wav", "2.wav"]})
    (root / "a" / "3.wav").write_bytes(b"garbage")
    info = scan_dataset(root)
    with pytest.raises(DataError, match=r"3\.wav"):
        list(iter_recordings(info, 16000, progress=False))
    got = list(iter_recordings(info, 16000, on_error="skip", progress=False))
    assert [r.path.name for r, _ in got] == ["1.wav", "2.wav"]
    assert all(a.shape == (3200,) for _, a in got)
    assert [p.name for p, _ in info.skipped] == ["3.wav"]


def test_data_error_is_an_edgesiam_error() -> None:
    assert issubclass(DataError, EdgesiamError)


# --------------------------------------------------------------------------------------------------
# sensor recordings read for a model: header names, units, rate, empty fields

IMU = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
IMU_SPEC = SensorSpec(50, 6, IMU, ("g", "g", "g", "rad/s", "rad/s", "rad/s"))


def imu_recording(n: int = 200, seed: int = 0) -> np.ndarray:
    """A phone lying still then turning: gravity on z (in g), small rotation rates (rad/s)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.02, size=(n, 6))
    x[:, 2] += 1.0
    x[:, 3:] += np.sin(np.linspace(0, 6, n))[:, None] * [0.5, -0.2, 0.1]
    return x.astype(np.float32)


def write_imu_csv(path: Path, x: np.ndarray, columns: list[str] | None) -> Path:
    lines = [",".join(columns)] if columns is not None else []
    lines += [",".join(f"{v:.6f}" for v in row) for row in x]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_columns_are_matched_by_header_name(tmp_path: Path) -> None:
    x = imu_recording()
    order = [3, 4, 5, 0, 1, 2]  # the gyroscope first
    swapped = write_imu_csv(tmp_path / "swapped.csv", x[:, order], [IMU[i] for i in order])
    got, notes = read_sensor_for(swapped, IMU_SPEC)
    np.testing.assert_allclose(got, x, atol=1e-6)
    assert notes.order is None
    # a timestamp column the model does not take is ignored; names are matched without case
    extra = np.column_stack([np.arange(len(x)), x])
    stamped = write_imu_csv(tmp_path / "stamped.csv", extra, ["time", *(c.upper() for c in IMU)])
    np.testing.assert_allclose(read_sensor_for(stamped, IMU_SPEC)[0], x, atol=1e-6)


def test_header_naming_some_channels_is_an_error_naming_the_missing(tmp_path: Path) -> None:
    x = imu_recording()
    path = write_imu_csv(tmp_path / "part.csv", x, ["acc_x", "acc_y", "acc_z", "gx", "gy", "gz"])
    with pytest.raises(DataError, match=r"part\.csv.*lack the channel\(s\) gyro_x, gyro_y, gyro_z"):
        read_sensor_for(path, IMU_SPEC)


def test_unknown_or_missing_header_is_taken_in_model_order_with_one_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = imu_recording()
    root = tmp_path / "ds"
    write_imu_csv(root / "wave" / "1.csv", x, None)
    write_imu_csv(root / "wave" / "2.csv", x, ["a", "b", "c", "d", "e", "f"])
    write_imu_csv(root / "wave" / "3.csv", x, None)
    info = scan_dataset(root)
    with caplog.at_level(logging.WARNING, logger="edgesiam.data.readers"):
        got = list(iter_recordings(info, progress=False, spec=IMU_SPEC))
    assert all(np.allclose(a, x, atol=1e-6) for _, a in got)
    order = [r.getMessage() for r in caplog.records if "model's order" in r.getMessage()]
    assert len(order) == 1 and "1.csv: has no header" in order[0]
    assert any("applies to 3 of 3 recordings" in r.getMessage() for r in caplog.records)
    _, notes = read_sensor_for(root / "wave" / "2.csv", IMU_SPEC)
    assert notes.order is not None and "naming none of them" in notes.order


def test_dataset_toml_channels_name_the_columns_of_a_file_without_header(tmp_path: Path) -> None:
    x = imu_recording()
    order = [3, 4, 5, 0, 1, 2]
    root = tmp_path / "ds"
    write_imu_csv(root / "wave" / "1.csv", x[:, order], None)
    np.save(root / "wave" / "2.npy", x[:, order])
    names = ", ".join(f'"{IMU[i]}"' for i in order)
    (root / "dataset.toml").write_text(f"channels = [{names}]\n")
    info = scan_dataset(root)
    got = [a for _, a in iter_recordings(info, progress=False, spec=IMU_SPEC)]
    for a in got:
        np.testing.assert_allclose(a, x, atol=1e-6)


def test_declared_units_are_converted_to_the_models(tmp_path: Path) -> None:
    x = imu_recording()
    si = x * np.array([9.80665] * 3 + [180 / np.pi] * 3, dtype=np.float32)  # m/s^2 and deg/s
    root = tmp_path / "ds"
    write_imu_csv(root / "wave" / "1.csv", si, list(IMU))
    units = ", ".join(['"m/s^2"'] * 3 + ['"deg/s"'] * 3)
    (root / "dataset.toml").write_text(f"units = [{units}]\n")
    info = scan_dataset(root)
    [(_, got)] = list(iter_recordings(info, progress=False, spec=IMU_SPEC))
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)
    # a table by channel name says the same
    (root / "dataset.toml").write_text(
        "[units]\n" + "".join(f'{c} = "{"m/s2" if c < "b" else "dps"}"\n' for c in IMU)
    )
    [(_, again)] = list(iter_recordings(scan_dataset(root), progress=False, spec=IMU_SPEC))
    np.testing.assert_allclose(again, x, rtol=1e-4, atol=1e-5)


def test_implausible_gravity_for_the_declared_units_is_warned(tmp_path: Path) -> None:
    x = imu_recording()
    si = x.copy()
    si[:, :3] *= 9.80665  # m/s^2, declared as nothing: taken as the model's g
    path = write_imu_csv(tmp_path / "si.csv", si, list(IMU))
    _, notes = read_sensor_for(path, IMU_SPEC)
    assert notes.gravity is not None
    assert re.search(r"reads 9\.\d+ g at rest, where gravity reads 1 g", notes.gravity)
    assert "look like m/s^2: set units in dataset.toml to m/s^2" in notes.gravity
    assert "units in dataset.toml" in notes.gravity
    assert read_sensor_for(path, IMU_SPEC, units=["m/s^2"] * 3 + [None] * 3)[1].gravity is None
    assert (
        read_sensor_for(write_imu_csv(tmp_path / "g.csv", x, list(IMU)), IMU_SPEC)[1].gravity
        is None
    )


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ('units = ["g", "furlong"]\n', "unknown unit 'furlong'"),
        ('channels = ["ax", "ay"]\nunits = ["g"]\n', "1 unit.*for 2 channel"),
        ('channels = ["ax", "ay"]\n[units]\naz = "g"\n', "unknown channel.*az"),
        ('units = "g"\n', "units must be a list"),
    ],
)
def test_bad_units_in_dataset_toml(tmp_path: Path, toml: str, match: str) -> None:
    root = make_sensor_dataset(tmp_path / "ds", {"a": ["1.csv"]}, width=2)
    (root / "dataset.toml").write_text(toml)
    with pytest.raises(DataError, match=rf"dataset\.toml: units: .*{match}"):
        scan_dataset(root)


def test_units_of_another_quantity_are_an_error(tmp_path: Path) -> None:
    path = write_imu_csv(tmp_path / "a.csv", imu_recording(), list(IMU))
    with pytest.raises(DataError, match=r"a\.csv.*channel 4 is declared in g.*takes rad/s"):
        read_sensor_for(path, IMU_SPEC, units=["g"] * 6)


def test_dataset_sample_rate_is_resampled_to_the_models(tmp_path: Path) -> None:
    rate, n = 100, 400
    t = np.arange(n) / rate
    x = np.tile(np.sin(2 * np.pi * 2.0 * t)[:, None], (1, 6)).astype(np.float32)
    root = tmp_path / "ds"
    write_imu_csv(root / "wave" / "1.csv", x, list(IMU))
    (root / "dataset.toml").write_text(f"sample_rate = {rate}\n")
    info = scan_dataset(root)
    [(_, got)] = list(iter_recordings(info, progress=False, spec=IMU_SPEC))
    assert got.shape == (200, 6)
    assert abs(dominant_freq(got[:, 0], 50) - 2.0) < 0.2


def test_empty_csv_field_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gap.csv", "ax,ay\n1,2\n3,\n5,6\n")
    with pytest.raises(DataError, match=r"gap\.csv: line 3: column 2 is empty"):
        read_sensor(path)
    first = write_csv(tmp_path / "first.csv", "1,,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"first\.csv: line 1: column 2 is empty"):
        read_sensor(first)


def test_empty_csv_field_skips_the_recording_with_skip(tmp_path: Path) -> None:
    root = make_sensor_dataset(tmp_path / "ds", {"a": ["1.csv", "2.csv"]})
    write_csv(root / "a" / "3.csv", "1,2,3\n4,,6\n")
    info = scan_dataset(root)
    with pytest.raises(DataError, match=r"3\.csv: line 2"):
        list(iter_recordings(info, progress=False))
    got = list(iter_recordings(info, on_error="skip", progress=False))
    assert [r.path.name for r, _ in got] == ["1.csv", "2.csv"]
    assert [(p.name, "line 2" in why) for p, why in info.skipped] == [("3.csv", True)]


def test_training_reads_csv_columns_by_the_dataset_channel_names(tmp_path: Path) -> None:
    x = imu_recording()
    order = [3, 4, 5, 0, 1, 2]
    root = tmp_path / "ds"
    write_imu_csv(root / "wave" / "1.csv", x[:, order], [IMU[i] for i in order])
    names = ", ".join(f'"{c}"' for c in IMU)
    (root / "dataset.toml").write_text(f"sample_rate = 50\nchannels = [{names}]\n")
    [(_, got)] = list(iter_recordings(scan_dataset(root), sample_rate=50, progress=False))
    np.testing.assert_allclose(got, x, atol=1e-6)
    write_imu_csv(root / "wave" / "2.csv", x, ["acc_x", "acc_y", "acc_z", "gx", "gy", "gz"])
    with pytest.raises(DataError, match=r"2\.csv.*lack the channel\(s\) gyro_x, gyro_y, gyro_z"):
        list(iter_recordings(scan_dataset(root), sample_rate=50, progress=False))
