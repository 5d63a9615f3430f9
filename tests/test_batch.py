"""``pnpsam batch`` end to end on the toy model: resumable runs, failures, kills, Ray engine.

Six toy photos x 2 prompts at 32 px and 3 steps; one local run is shared by the tests, Ray is
started once for the module's Ray tests (``ray.init(num_cpus=2)``) and shut down after them
(the Ray tests are skipped where Ray is not installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from pnpsam.batch import PhotoJob, PhotoResult, PhotoWork, read_index
from pnpsam.cli import main
from pnpsam.engines import ray as ray_engine
from pnpsam.toyworld.pairs import TOY_MODEL
from pnpsam.toyworld.world import render_scene, sample_specs

PROMPTS = ["a red circle on grass", "a blue square on sand"]
TOY = [
    "--model",
    str(TOY_MODEL),
    "--device",
    "cpu",
    "--size",
    "32",
    "--steps",
    "3",
    "--inversion-steps",
    "3",
    "--residual-blocks",
    "4",
    "--attention-blocks",
    "2-7",
    "--negative-prompt",
    "",
    "--guidance",
    "4",
    "--quiet",
]
PHOTOS = [f"p{i}" for i in range(6)]
SRC = Path(__file__).resolve().parent.parent / "src"


def batch_args(source: Path, out: Path, *extra: str) -> list[str]:
    prompts = [arg for p in PROMPTS for arg in ("--prompt", p)]
    return ["batch", str(source), *prompts, "--out", str(out), *TOY, *extra]


def digests(folder: Path) -> dict[str, tuple[str, int]]:
    """File name -> (sha256, mtime in ns) of every output (not the index)."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
        if p.name != "index.jsonl"
    }


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six toy photos and one file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    for i, spec in enumerate(sample_specs(6, seed=0)):
        Image.fromarray(render_scene(spec, seed=i).image).save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    return folder


@dataclass
class Run:
    out: Path
    status: int
    output: str


# torch threads of the reference run and of every driver compared with it: 2, not the tests'
# 1, so a worker that ran with its own count (a Ray actor's 1 CPU) would write other bytes
THREADS = 2


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def local_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("local")
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), torch_threads(THREADS):
        status = main(batch_args(photos, out))
    return Run(out, status, buffer.getvalue())


def test_local_run_writes_every_output_and_record_and_records_the_broken_photo(
    local_run: Run, photos: Path, tmp_path: Path
) -> None:
    out = local_run.out
    assert local_run.status == 1  # some photo failed; the run still went through
    assert "7 photos: 6 done, 0 skipped (finished earlier), 1 failed" in local_run.output
    for name in PHOTOS:
        record = json.loads((out / f"{name}.json").read_text())
        assert record["outputs"] == [
            f"{name}_00_a-red-circle-on-grass.png",
            f"{name}_01_a-blue-square-on-sand.png",
        ]
        assert record["prompts"] == PROMPTS
        assert record["image"] == str(photos / f"{name}.png")
        # one inversion (3 rows), source stream while injecting (2), 2 x 2 prompts x 3 steps
        assert record["unet_evaluations"] == 3 + 2 + 2 * 2 * 3
        for file in record["outputs"]:
            assert Image.open(out / file).size == (32, 32)
        # the record names every file and its hash, as `pnpsam edit`'s sets do
        files = {f: hashlib.sha256((out / f).read_bytes()).hexdigest() for f in record["outputs"]}
        assert record["files"] == files and record["settings_sha256"] == record["batch"]["settings"]
    assert not list(out.glob("*.partial"))  # every set's journal is gone once its record is in
    rows = read_index(out / "index.jsonl")
    assert sorted(r["name"] for r in rows if r["status"] == "done") == PHOTOS
    [broken] = [r for r in rows if r["status"] == "failed"]
    assert broken["name"] == "broken" and "cannot read" in broken["error"]
    assert not (out / "broken.json").exists()
    assert "UNet row-evaluations" in local_run.output and "photos/s" in local_run.output

    # the record reproduces the images through `pnpsam edit --config` (same torch threads)
    again = tmp_path / "again"
    with torch_threads(THREADS):
        assert main(["edit", "--config", str(out / "p0.json"), "--out", str(again), "--quiet"]) == 0
    assert pngs(again) == {k: v for k, v in pngs(out).items() if k.startswith("p0_")}


def test_rerun_skips_finished_photos_and_rewrites_no_byte(
    local_run: Run, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digests(local_run.out)
    assert main(batch_args(photos, local_run.out)) == 0
    assert "0 done, 7 skipped (finished earlier), 0 failed" in capsys.readouterr().out
    assert digests(local_run.out) == before  # same bytes and mtimes

    assert main(batch_args(photos, local_run.out, "--retry-failed")) == 1
    assert "0 done, 6 skipped (finished earlier), 1 failed" in capsys.readouterr().out
    assert digests(local_run.out) == before
    failures = [r for r in read_index(local_run.out / "index.jsonl") if r["status"] == "failed"]
    assert [r["name"] for r in failures] == ["broken", "broken"]


def test_a_photo_replaced_under_the_same_name_is_redone_not_skipped(
    local_run: Run, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Resume is keyed on the image's bytes, as ``pnpsam edit`` keys it, not on its path."""
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    photo = folder / "p0.png"
    photo.write_bytes((photos / "p0.png").read_bytes())
    assert main(batch_args(folder, out)) == 0
    first = pngs(out)
    photo.write_bytes((photos / "p1.png").read_bytes())  # another photo, the same name
    capsys.readouterr()

    assert main(batch_args(folder, out)) == 2  # not "finished earlier": refused, as edit does
    assert "p0.json exists from other settings" in capsys.readouterr().err
    assert pngs(out) == first  # nothing touched
    assert main(batch_args(folder, out, "--overwrite")) == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out
    # the outputs are those of the new photo's bytes (the shared run edited them as p1)
    redone = {name.replace("p0_", "p1_"): data for name, data in pngs(out).items()}
    assert redone == {k: v for k, v in pngs(local_run.out).items() if k.startswith("p1_")}
    assert redone != {name.replace("p0_", "p1_"): data for name, data in first.items()}


def test_killed_run_resumes_with_only_the_missing_photos(
    local_run: Run, photos: Path, tmp_path: Path
) -> None:
    """SIGKILL the driver after two photos; the re-run does the other four, touches nothing."""
    out = tmp_path / "out"
    good = tmp_path / "good"
    good.mkdir()
    for name in PHOTOS:
        (good / f"{name}.png").write_bytes((photos / f"{name}.png").read_bytes())
    # Ray blocked: the local engine must work without it; the reference run's threads
    code = (
        f"import sys, torch; torch.set_num_threads({THREADS}); sys.modules['ray'] = None; "
        "from pnpsam.cli import main; "
        f"sys.exit(main({batch_args(good, out)!r}))"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    driver = subprocess.Popen([sys.executable, "-c", code], env=env)
    index = out / "index.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        done = [r for r in read_index(index) if r["status"] == "done"]
        if len(done) >= 2:
            break
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = [r["name"] for r in read_index(index) if r["status"] == "done"]
    assert 2 <= len(finished) < 6, "the kill should land mid-run"
    kept = {k: v for k, v in digests(out).items() if k.split("_")[0].split(".")[0] in finished}

    status = main(batch_args(good, out))
    assert status == 0
    rows = read_index(index)
    redone = [r["name"] for r in rows if r["status"] == "done" and r["name"] not in finished]
    assert sorted(redone) == sorted(set(PHOTOS) - set(finished))  # each missing photo once
    after = digests(out)
    assert {k: after[k] for k in kept} == kept  # same bytes, same mtimes
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    assert pngs(out) == {k: v for k, v in pngs(local_run.out).items()}  # as if never killed


def test_engine_ray_without_ray_says_how_to_install_it(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(batch_args(photos, tmp_path / "out", "--engine", "ray")) == 2
    assert "pip install pnpsam[ray]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@dataclass
class DyingWork(PhotoWork):
    """Kills its Ray actor's process in the middle of photo p2, once (``marker`` remembers)."""

    marker: str = ""

    def __call__(self, job: PhotoJob) -> PhotoResult:
        if job.name == "p2":
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().__call__(job)


def test_ray_engine_writes_the_local_bytes_even_when_an_actor_dies_mid_run(
    ray_cluster: Any,
    local_run: Run,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--engine ray --workers 2`, one actor killed in the middle of p2: every photo exactly
    once, the broken one recorded, and the PNGs byte-identical to the local engine's.

    (One Ray run shows both: each actor start loads torch and the model, tens of seconds on
    a busy 2-core machine.)
    """
    marker = tmp_path / "died"

    class DyingEngine(ray_engine.RayEngine):
        def run(self, work: Any, tasks: Any) -> Any:
            dying = DyingWork(work.config, threads=work.threads, marker=str(marker))
            return super().run(dying, tasks)

    # the workers cannot import this test module: ship DyingWork by value
    ray_cluster.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(ray_engine, "RayEngine", DyingEngine)
    out = tmp_path / "ray"
    with torch_threads(THREADS):  # each actor has 1 CPU; the bytes must still be the local ones
        assert main(batch_args(photos, out, "--engine", "ray", "--workers", "2")) == 1
    assert "7 photos: 6 done, 0 skipped (finished earlier), 1 failed" in capsys.readouterr().out
    assert marker.exists()  # an actor did die in the middle of p2
    rows = read_index(out / "index.jsonl")
    assert sorted(r["name"] for r in rows if r["status"] == "done") == PHOTOS  # each once
    assert [r["name"] for r in rows if r["status"] == "failed"] == ["broken"]
    assert {r["engine"] for r in rows} == {"ray"}
    assert pngs(out) == pngs(local_run.out)


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process (zombies are dead: left out)."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), args[0] if args else "")
    return table


def _descendants(table: dict[int, tuple[int, str]], root: int) -> set[int]:
    found = {root}
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        if not more:
            return found - {root}
        found |= more


def test_a_killed_ray_driver_leaves_no_ray_process_behind(photos: Path, tmp_path: Path) -> None:
    """`pnpsam batch --engine ray` SIGKILLed once its cluster runs: within 10 s no process of
    its cluster (GCS, raylet, dashboard and runtime-env agents, workers) is left, nor any
    whose parent was one of them. (Ray alone left both agents running for over a minute.)"""
    pytest.importorskip("ray")
    if not Path("/proc").is_dir():
        pytest.skip("the reaper reads /proc, which this system lacks (not Linux)")
    out = tmp_path / "out"
    argv = batch_args(photos, out, "--engine", "ray", "--workers", "1")
    code = f"import sys; from pnpsam.cli import main; sys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    driver = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wanted = ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "reaper.py")
    cluster: set[int] = set()
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            table = _process_table()
            cluster = _descendants(table, driver.pid)
            if all(any(w in table[p][1] for p in cluster) for w in wanted):
                break
            time.sleep(0.2)
        assert driver.poll() is None, "the run ended before its cluster was seen"
        assert time.monotonic() < deadline, f"no agents after 240 s: {cluster}"
        time.sleep(1)  # the reaper has listed the cluster (it looks every 0.2 s)
        cluster = _descendants(_process_table(), driver.pid)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    killed = time.monotonic()
    while True:
        table = _process_table()
        left = {p for p in cluster if p in table}
        left |= {p for p, (parent, _) in table.items() if parent in cluster}
        seconds = time.monotonic() - killed
        if not left:
            break
        assert seconds < 10, [table[p][1][:80] for p in left]
        time.sleep(0.1)
    print(f"no Ray process left {seconds:.1f} s after the driver's SIGKILL ({len(cluster)} ran)")


def test_manifest_errors_name_the_file_line_and_field_before_any_model_loads(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    good = {"image": str(photos / "p0.png"), "prompts": PROMPTS}
    lines = [json.dumps(good), "", json.dumps({**good, "box": [5, 5, 1]})]
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--model", "/no/such/model"]) == 2
    [message] = capsys.readouterr().err.strip().splitlines()
    assert f"{manifest}, line 3: entry 1" in message and "field 'box'" in message
    assert not out.exists()
    assert main(["batch", str(manifest), "--prompt", "x", "--out", str(out)]) == 2
    assert "manifest" in capsys.readouterr().err and not out.exists()


def test_bench_results_cross_the_engine_boundary_unchanged(photos: Path) -> None:
    """What a Ray actor sends back for a bench pair decodes to the same rows and pixels."""
    from pnpsam.bench.item import ItemResult
    from pnpsam.bench.work import BenchPair, BenchWork
    from pnpsam.config import EditConfig
    from pnpsam.manifest import EditItem
    from pnpsam.methods import parse_methods

    item = EditItem("a/b", photos / "p0.png", "", ("x",))
    [spec] = parse_methods("pnp")
    work = BenchWork(EditConfig(), [BenchPair(spec, item, EditConfig(), "s")])
    picture = Image.open(photos / "p1.png").convert("RGB")
    rows = [{"item": "a/b", "status": "ok", "clip": 0.25}]
    index, back = work.decode_result(
        work.encode_result((0, ItemResult(rows, {"images/pnp/a_b_0.png": picture})))
    )
    assert index == 0 and back.rows == rows
    assert back.images["images/pnp/a_b_0.png"].tobytes() == picture.tobytes()
    assert work.decode_task(work.encode_task(0)) == 0
    import pickle

    assert pickle.loads(pickle.dumps(work)).pairs == work.pairs  # what Ray ships to actors
