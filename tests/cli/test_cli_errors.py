"""Bad input to the command line: exit code 2 and one line on stderr, never a traceback; a
missing output directory is found before any work is done."""

from __future__ import annotations

import pytest

from odeopt.cli import main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["show", "nope"], "no zoo system 'nope'"),
        (["derive", "nope"], "no zoo system 'nope'; known: gradient_flow"),
        (["show", "heavy_ball", "--param", "friction"], "--param takes NAME=VALUE"),
        (["derive", "heavy_ball", "--param", "=1"], "--param takes NAME=VALUE, got --param '=1'"),
        (["derive", "heavy_ball", "--param", "friction=abc"], "--param friction: 'abc' is not a"),
        (
            ["derive", "heavy_ball", "--param", "nope=1"],
            "heavy_ball has no parameter 'nope'; its parameters: mass, friction",
        ),
        (
            ["derive", "heavy_ball", "--param", "mass=1", "--param", "mass=2"],
            "--param mass is given twice",
        ),
        (["derive", "heavy_ball", "--scheme", "nope"], "unknown scheme 'nope'"),
        (["learn", "--iterations", "0", "-o", "x.py"], "learn: --iterations must be ≥ 1, got 0"),
        (["learn", "--out-mul", "nan", "-o", "x.py"], "learn: --out-mul must be finite, got nan"),
        (["learn", "--out-mul", "-1", "-o", "x.py"], "learn: --out-mul must be > 0, got -1.0"),
        (["learn", "--seed", "-3", "-o", "x.py"], "learn: --seed must be ≥ 0, got -3"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert fragment in captured.err
    assert "Traceback" not in captured.err and captured.err.startswith("odeopt: ")


def test_cli_export_into_a_missing_directory(tmp_path, capsys):
    target = tmp_path / "missing_dir" / "file.py"
    assert main(["export", "heavy_ball", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"the directory {str(target.parent)!r} does not exist" in err
    assert "Traceback" not in err and not target.parent.exists()
    assert main(["export", "heavy_ball", "-o", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert main(["export", "heavy_ball", "-o", str(tmp_path / "a_file" / "x.py")]) == 2
    assert "'" + str(tmp_path / "a_file") + "' is not a directory" in capsys.readouterr().err


def test_cli_learn_refuses_a_missing_directory_before_training(tmp_path, capsys):
    target = tmp_path / "nowhere" / "hnn.py"
    assert main(["learn", "--iterations", "1", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert "learn: -o/--output" in err and "does not exist" in err
    assert capsys.readouterr().out == ""  # no training ran


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["learn", "--task", "nope", "-o", "x.py"], "argument --task: invalid choice: 'nope'"),
        (["learn", "--iterations", "1.5", "-o", "x.py"], "invalid int value: '1.5'"),
        (["learn", "--iterations", "3"], "the following arguments are required: -o/--output"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_cli_argparse_errors_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err
