"""Job options are declared once (lipsync/options.py); the CLI, the validation and the
registries' choices all come from those declarations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lipsync.cli import build_parser
from lipsync.device import DEVICES
from lipsync.engines import ENGINES
from lipsync.enhance import ENHANCERS
from lipsync.errors import InvalidOption
from lipsync.face import DETECTORS
from lipsync.media.timeline import SYNC_MODES
from lipsync.options import (
    RunOptions,
    option_specs,
    parse_public_fields,
    public_specs,
    spec_of,
)


def _run_args(*extra: str) -> list[str]:
    return ["run", "--video", "v.mp4", "--audio", "a.wav", "-o", "o.mp4", *extra]


def _options_from_cli(*extra: str) -> RunOptions:
    args = build_parser().parse_args(_run_args(*extra))
    given = {s.name: getattr(args, s.name) for s in option_specs() if hasattr(args, s.name)}
    return RunOptions(**given)


def test_every_declared_option_is_a_cli_flag_and_a_field() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {f for action in run._actions for f in action.option_strings}
    names = [s.name for s in option_specs()]
    assert len(names) == len(set(names)) >= 15
    for spec in option_specs():
        assert spec.flag in flags, spec.name
        assert spec.meta.help.strip(), spec.name
    # defaults are the dataclass's own: no flag given -> RunOptions()'s values
    assert _options_from_cli() == RunOptions(models_dir=RunOptions().models_dir)


@pytest.mark.parametrize(
    ("flags", "field", "value"),
    [
        (["--sync-mode", "bounce"], "sync_mode", "bounce"),
        (["--pads", "1", "2", "3", "4"], "pads", (1, 2, 3, 4)),
        (["--pads", "1,2,3,4"], "pads", (1, 2, 3, 4)),
        (["--face-point", "320,200"], "face_point", (320, 200)),
        (["--box", "10 200 20 220"], "box", (10, 200, 20, 220)),
        (["--fp16"], "fp16", True),
        (["--max-size", "960"], "max_size", 960),
        (["--fps", "30"], "fps", 30.0),
        (["--models-dir", "/srv/w"], "models_dir", Path("/srv/w")),
    ],
)
def test_cli_flags_parse_into_run_options(flags: list[str], field: str, value: object) -> None:
    assert getattr(_options_from_cli(*flags), field) == value


def test_cli_refuses_bad_values_with_the_declared_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for flags, words in (
        (["--fps", "nan"], "must be a number, not nan"),
        (["--fps", "500"], "between 1 and 120"),
        (["--sync-mode", "sideways"], "loop, bounce"),
        (["--pads", "1,2,3"], "takes 4 integers"),
        (["--face-index", "1", "--face-point", "3,4"], "not allowed with"),
    ):
        with pytest.raises(SystemExit):
            build_parser().parse_args(_run_args(*flags))
        assert words in capsys.readouterr().err, flags


def test_choices_come_from_their_registries() -> None:
    assert list(spec_of("engine").choice_map()) == list(ENGINES)
    assert list(spec_of("sync_mode").choice_map()) == list(SYNC_MODES)
    assert list(spec_of("detector").choice_map()) == list(DETECTORS)
    assert list(spec_of("device").choice_map()) == list(DEVICES)
    assert list(spec_of("enhancer").choice_map()) == list(ENHANCERS)


def test_run_options_validate_each_field_and_name_it() -> None:
    cases = {
        "fps": math.nan,
        "pads": (0, 10, 0),
        "face_index": -1,
        "engine": "nope",
        "detector": "haar",
        "device": "tpu",
        "blend": 1.5,
        "crf": 99,
        "max_size": 10,
        "batch_size": 0,
        "preset": "placebo-ish",
    }
    for name, bad in cases.items():
        with pytest.raises(InvalidOption) as err:
            RunOptions(**{name: bad})  # type: ignore[arg-type]
        assert err.value.field == name and name in err.value.message, (name, err.value)
    with pytest.raises(InvalidOption, match="Y1 < Y2"):
        RunOptions(box=(200, 10, 0, 50))
    with pytest.raises(InvalidOption, match="face_index or face_point"):
        RunOptions(face_index=0, face_point=(1, 2))
    assert RunOptions(pads=[1, 2, 3, 4]).pads == (1, 2, 3, 4)  # type: ignore[arg-type]
    assert RunOptions(enhancer="onnx:/srv/models/gfpgan.onnx").enhancer.startswith("onnx:")


def test_public_fields_are_parsed_checked_and_json_ready() -> None:
    values = parse_public_fields(
        {"engine": "viseme", "pads": " 0, 15 0 0", "fps": "30", "face_point": "5,6", "x": ""}
        | {"max_size": "  "}
    )
    assert values == {"engine": "viseme", "pads": [0, 15, 0, 0], "fps": 30.0, "face_point": [5, 6]}
    assert RunOptions.from_mapping(values).pads == (0, 15, 0, 0)
    for fields, field, words in (
        ({"fps": "nan"}, "fps", "must be a number, not nan"),
        ({"fps": "inf"}, "fps", "must be a number, not inf"),
        ({"fps": "fast"}, "fps", "must be a number"),
        ({"face_index": "1.5"}, "face_index", "integer"),
        ({"enhancer": "onnx:../../etc/x.onnx"}, "enhancer", "onnx:NAME.onnx"),
        ({"device": "cuda"}, "device", "unknown field"),  # the server's choice, not a push's
        ({"checkpoint": "/etc/passwd"}, "checkpoint", "unknown field"),
        ({"face_index": "0", "face_point": "1,2"}, "face_point", "not both"),
    ):
        with pytest.raises(InvalidOption) as err:
            parse_public_fields(fields)
        assert err.value.field == field and words in err.value.message, (fields, err.value)
    assert parse_public_fields({"enhancer": "onnx:gfpgan_1.4.onnx"}) == {
        "enhancer": "onnx:gfpgan_1.4.onnx"
    }


def test_public_options_are_a_declared_subset() -> None:
    public = {s.name for s in public_specs()}
    assert {"engine", "sync_mode", "pads", "face_index", "max_size"} <= public
    assert not public & {"device", "checkpoint", "models_dir", "batch_size"}
    for spec in public_specs():
        described = spec.describe()
        assert described["name"] == spec.name and described["help"] == spec.meta.help


def test_the_automatic_sound_codec_is_lossless_only_for_segments() -> None:
    from lipsync.options import AUDIO_CODECS, audio_codec_for

    assert RunOptions().audio_codec == "auto" and "auto" in AUDIO_CODECS
    assert audio_codec_for("auto", has_segments=False) == "aac"
    assert audio_codec_for("auto", has_segments=True) == "flac"
    assert audio_codec_for("aac", has_segments=True) == "aac"
    assert audio_codec_for("flac", has_segments=False) == "flac"
