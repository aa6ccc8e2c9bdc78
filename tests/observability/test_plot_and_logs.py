"""``ttg plot`` writes a valid image of the right kind; ``--log-format json``
writes one JSON object per line with sweep, chunk, worker and level."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ttg


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("plot") / ".ttg"
    ttg(home, "run", "tests.funcs:add", "--grid", "a=1,2,3,4,5,6", "--grid", "b=linspace:0:1:5",
        "--grid", "c=10,20", "--workers", "1", "--chunk-size", "20", "--name", "grid3", check=True)
    return home


def _png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(path)
    image.load()
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
    return image


def test_a_line_over_one_axis(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "line.png"
    proc = ttg(swept, "plot", "grid3", "--x", "a", "--value", "value", "-o", str(out), check=True)
    assert "wrote a line of value" in proc.stdout
    assert _png(out).info["Title"] == "grid3: line of value"


def test_a_heat_map_over_two_axes(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "heat.png"
    proc = ttg(swept, "plot", "grid3", "--x", "a", "--y", "b", "--value", "value", "-o", str(out), check=True)
    assert "wrote a heat map of value" in proc.stdout
    image = _png(out)
    assert image.info["Title"] == "grid3: heat map of value"
    colours = image.convert("RGB").getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 20, "a heat map has many colours"


def test_a_scatter_as_svg(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "scatter.svg"
    ttg(swept, "plot", "grid3", "--x", "b", "--y", "c", "--value", "duration", "--kind", "scatter",
        "-o", str(out), check=True)
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "grid3: scatter of duration" in text


@pytest.mark.parametrize(("args", "message"), [
    (["--x", "nope", "--value", "value"],
     "the results have no field 'nope'; choose one of: index, a, b, c, value, duration, attempt."),
    (["--x", "a", "--value", "nope"], "the results have no field 'nope'"),
    (["--x", "a", "--value", "value", "--kind", "heatmap"], "a heat map needs two axes; give --y FIELD too."),
])
def test_a_missing_axis_is_a_clear_error(swept: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x.png"
    proc = ttg(swept, "plot", "grid3", *args, "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith("ttg: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_json_logs_carry_sweep_chunk_worker_and_level(tmp_path: Path) -> None:
    home = tmp_path / ".ttg"
    ttg(home, "submit", "tests.funcs:square", "--range", "30", "--chunk-size", "10", "--name", "logged",
        check=True)
    # a worker that may not run it: it leaves the chunks to others, saying so (once) while handling one
    proc = ttg(home, "worker", "--allow", "tests.observability.funcs", "--workers", "1", "--burst",
               "--log-format", "json", "-v")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and all({"time", "level", "logger", "message", "sweep", "chunk", "worker"} <= set(x)
                         for x in lines)
    (left,) = [x for x in lines if x["message"].startswith("leaving the chunks of logged")]
    assert "is not on this worker's allow-list" in left["message"]
    assert left["chunk"] in {"0-10", "10-20", "20-30"}
    assert left["sweep"] == "logged" and left["level"] == "warning"
    assert all(x["worker"].startswith(socket.gethostname() + "-") for x in lines)


def test_json_logs_from_the_environment_and_a_bad_format(tmp_path: Path) -> None:
    home = tmp_path / ".ttg"
    proc = ttg(home, "submit", "tests.funcs:square", "--range", "5", "-v", TTG_LOG_FORMAT="json")
    assert proc.returncode == 0
    [line] = [json.loads(x) for x in proc.stderr.splitlines()]
    assert line["level"] == "info" and line["logger"] == "ttg.client.submit"
    bad = ttg(home, "list", TTG_LOG_FORMAT="xml")
    assert bad.returncode == 2 and "log format must be human or json" in bad.stderr


def test_log_level_from_the_environment_and_the_flags_win(tmp_path: Path) -> None:
    home = tmp_path / ".ttg"
    quiet = ttg(home, "submit", "tests.funcs:square", "--range", "5")
    assert quiet.returncode == 0 and quiet.stderr == ""
    info = ttg(home, "submit", "tests.funcs:square", "--range", "5", "--name", "b", TTG_LOG_LEVEL="info")
    assert info.returncode == 0 and "INFO ttg.client.submit: sweep" in info.stderr, info.stderr
    flagged = ttg(home, "submit", "tests.funcs:square", "--range", "5", "--name", "c", "-vv",
                  TTG_LOG_LEVEL="ERROR")
    assert flagged.returncode == 0 and "INFO ttg.client.submit: sweep" in flagged.stderr, flagged.stderr
    bad = ttg(home, "list", TTG_LOG_LEVEL="loud")
    assert bad.returncode == 2 and "log level must be one of DEBUG, INFO, WARNING, ERROR" in bad.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["--x", "a", "--y", "b"],
     "wrote a heat map of value to {out}: each cell is the mean over c (2 values)\n"
     "  (--agg picks another reduction, --where FIELD=VALUE fixes a field instead)\n"),
    (["--x", "a", "--y", "b", "--agg", "median"],
     "wrote a heat map of value to {out}: each cell is the median over c (2 values)\n"),
    (["--x", "a", "--y", "b", "--where", "c=20"], "wrote a heat map of value to {out}: c fixed at 20\n"),
    (["--x", "b", "--where", "c=10", "--agg", "max"],
     "wrote a line of value to {out}: c fixed at 10; each point is the max over a (6 values)\n"),
])
def test_a_plot_says_how_it_treated_the_fields_it_does_not_draw(swept: Path, tmp_path: Path, args: list[str],
                                                                said: str) -> None:
    out = tmp_path / "p.png"
    proc = ttg(swept, "plot", "grid3", *args, "--value", "value", "-o", str(out), check=True)
    assert proc.stdout == said.format(out=out)
    _png(out)


@pytest.mark.parametrize(("args", "message"), [
    (["--where", "c=15"], "no point has c=15; give one of its values: 10, 20."),
    (["--where", "c"], "--where 'c' is not FIELD=VALUE; write e.g. --where c=10."),
    (["--where", "nope=1"], "the results have no field 'nope'"),
])
def test_a_bad_where_is_one_sentence(swept: Path, tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x.png"
    proc = ttg(swept, "plot", "grid3", "--x", "a", "--y", "b", "--value", "value", *args, "-o", str(out))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("ttg: error: ") and message in proc.stderr
    assert not out.exists()


def test_a_point_field_named_like_a_result_column_does_not_stop_a_plot(home: Path, tmp_path: Path) -> None:
    ttg(home, "run", "tests.funcs:add", "--grid", "a=1,2,3", "--grid", "worker=x,y", "--name", "clash",
        check=True)
    out = tmp_path / "p.png"
    proc = ttg(home, "plot", "clash", "--x", "a", "--value", "value", "-o", str(out), check=True)
    assert proc.stdout.startswith(f"wrote a line of value to {out}")
    _png(out)


def test_binned_points_say_how_they_are_reduced(home: Path, tmp_path: Path) -> None:
    """500 random values of one field: the line's 200 bins each reduce several points."""
    ttg(home, "run", "tests.funcs:add", "--random", "500", "--param", "a=uniform:0:1", "--name", "r",
        check=True)
    out = tmp_path / "p.png"
    proc = ttg(home, "plot", "r", "--x", "a", "--value", "value", "--agg", "count", "-o", str(out),
               check=True)
    assert proc.stdout == f"wrote a line of value to {out}: each point is the count of the points in it\n"
