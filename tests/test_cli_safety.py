"""Issue 10 through the real command line (a subprocess per case): outputs over inputs,
bad output folders, a full disk, a second run into the same folder, ``kill -9``, Ctrl-C,
no network without a model id, a batch BatchNorm cannot take.

Every case runs at ``COLUMNS=40`` (a message wrapped mid-path fails the name checks)
and checks the exit code, a message naming the file, no "Traceback", and that no input
file changed (sha256 of every file of every input, before and after each test). The
process cases run in their own session and kill only that session's processes.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.data.helpers import tree_digest
from tests.gen_data import write_generic

REPO = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
    "COLUMNS": "40",  # a wrapped message would split the paths the tests look for
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "OMP_NUM_THREADS": "1",
    "CUDA_VISIBLE_DEVICES": "",  # the no-GPU behaviour, on any machine
}
SIZES = [(64, 64)] * 6
INPUTS = ("syn", "real", "test", "dsm", "model")


def _default_sigint() -> None:  # a runner started in the background ignores SIGINT
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(root: Path, *args: str, env: dict | None = None, timeout: float = 120, **kw):
    """``python -m synth2real ARGS`` in ``root``; the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "synth2real", *args],
        cwd=root,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_default_sigint,
        check=False,
        **kw,
    )


def start(root: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """The CLI in a session of its own (its workers share its process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "synth2real", *args],
        cwd=root,
        env={**ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies excluded)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(d.name))
    return pids


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def refused(res, *names: str, code: int = 2) -> str:
    """``res`` exited with ``code`` and one message naming each of ``names``, unwrapped."""
    err = res.stderr
    assert res.returncode == code, (res.returncode, res.stdout, err)
    assert "Traceback" not in err + res.stdout, err
    for n in names:
        assert n in err, (n, err)
    return err


def images_done(out: Path) -> int:
    part = out / "manifest.parts" / "shard-0-of-1.jsonl"
    return part.read_text().count("\n") if part.is_file() else 0


def tree(out: Path) -> dict:
    """A translation's images, labels and class spec (what must not depend on how the run
    was stopped and resumed), and the names its manifest lists."""
    files = {k: v for k, v in tree_digest(out).items() if k.startswith(("images", "labels"))}
    files["classes.yaml"] = tree_digest(out).get("classes.yaml")
    manifest = (out / "manifest.jsonl").read_text().splitlines()
    files["manifest names"] = [json.loads(line)["name"] for line in manifest]
    return files


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """``syn``, ``real``, ``test`` (generic), ``dsm`` (``images/`` + ``masks/``), a checkpoint
    in ``model/``, and ``ref``: the reference translation of ``syn``."""
    r = tmp_path_factory.mktemp("safety")
    write_generic(r / "syn", SIZES)
    write_generic(r / "real", [(64, 64)] * 3, seed=50, tint=(30, -20, 10))
    write_generic(r / "test", [(64, 64)] * 3, seed=80, tint=(30, -20, 10))
    write_generic(r / "dsm", [(64, 64)] * 2, seed=90)
    (r / "dsm" / "labels").rename(r / "dsm" / "masks")
    from synth2real.data.readers import open_dataset
    from synth2real.segment.config import TrainConfig
    from synth2real.segment.train import train

    cfg = TrainConfig(iterations=2, batch_size=2, crop=64, device="cpu", num_threads=1)
    train(open_dataset(r / "syn"), cfg, r / "model", progress=False)
    res = cli(r, *translate("ref"))
    assert res.returncode == 0, res.stderr
    return r


@pytest.fixture(autouse=True)
def inputs_unchanged(root):
    before = {n: tree_digest(root / n) for n in INPUTS}
    yield
    for n in INPUTS:
        assert tree_digest(root / n) == before[n], f"input {n} was changed"


def translate(out: str, *extra: str) -> list[str]:
    return [
        "translate", "--source", "syn", "--references", "real", "--method", "reinhard",
        "--out", out, "--no-progress", *extra,
    ]  # fmt: skip


TRAIN = ["train", "--data", "syn", "--iterations", "2", "--batch-size", "2", "--crop", "64"]
EVAL = ["evaluate", "--checkpoint", "model/model.safetensors", "--data", "dsm"]
PILOT = ["pilot", "--source", "syn", "--references", "real", "--test", "test", "--quick"]


# -- 1. an output over an input is refused before anything is written ---------------------
@pytest.mark.parametrize(
    "args, out, named",
    [
        (translate("syn"), "syn", "--source syn"),
        (translate("syn/x"), "syn/x", "--source syn"),
        (translate("real/x"), "real/x", "--references real"),
        (translate("."), ".", "--source syn"),  # a parent of the inputs
        (translate("link/x"), "link/x", "resolves to"),  # link -> syn
        ([*TRAIN, "--out", "syn"], "syn", "--data syn"),
        ([*TRAIN, "--out", "syn/run"], "syn/run", "--data syn"),
        ([*EVAL, "--save-predictions", "dsm"], "dsm", "--data dsm"),
        ([*EVAL, "--save-predictions", "dsm/masks"], "dsm/masks", "--data dsm"),
        ([*EVAL, "--save-predictions", "model"], "model", "--checkpoint"),
        ([*PILOT, "--out", "syn/pilot"], "syn/pilot", "--source syn"),
        ([*PILOT, "--out", "test/pilot"], "test/pilot", "--test test"),
        ([*PILOT, "--out", "p", "--cache-dir", "real/c"], "real/c", "--references real"),
        # a local diffusion weights folder is an input too
        (translate("model/x", "--diffusion-model", "model"), "model/x", "--diffusion-model model"),
        (
            [*PILOT, "--out", "model/p", "--diffusion-model", "model"],
            "model/p",
            "--diffusion-model",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_an_output_over_an_input_is_refused(root, args, out, named):
    link = root / "link"
    if not link.exists():
        link.symlink_to(root / "syn")
    before = sorted(p.name for p in root.iterdir())
    err = refused(cli(root, *args), f"{out} overlaps", named, "nothing was written")
    assert len(err.strip().splitlines()) == 1  # one line
    assert sorted(p.name for p in root.iterdir()) == before  # nothing created anywhere


@pytest.mark.parametrize("command", ["translate", "train", "evaluate", "pilot", "demo"])
def test_an_output_that_is_a_file_or_under_one_is_refused(root, tmp_path, command):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for out, says in ((afile, "is a file"), (afile / "sub", f"{afile} is a file")):
        args = {
            "translate": translate(str(out)),
            "train": [*TRAIN, "--out", str(out)],
            "evaluate": [*EVAL, "--save-predictions", str(out)],
            "pilot": [*PILOT, "--out", str(out)],
            "demo": ["demo", "--out", str(out)],
        }[command]
        refused(cli(root, *args), str(out), says)
    assert afile.read_text() == "mine"


def test_demo_refuses_a_folder_of_the_users(root, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    refused(cli(root, "demo", "--out", str(mine)), str(mine), "notes.txt", "not a demo folder")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


UNSHARE = _can_unshare()


def in_namespace(script: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run a shell ``script`` in a user + mount namespace (it may mount a tmpfs)."""
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_default_sigint,
    )


def test_a_read_only_output_folder_is_refused_naming_it(root, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    commands = {
        "translate": translate(str(ro / "x")),
        "train": [*TRAIN, "--out", str(ro / "x")],
        "evaluate": [*EVAL, "--save-predictions", str(ro / "x")],
        "pilot": [*PILOT, "--out", str(ro / "x")],
    }
    py = f"cd {root} && {sys.executable} -m synth2real"
    if UNSHARE:  # a real read-only file system
        lines = [f"mount -t tmpfs tmpfs {ro} && mount -o remount,ro {ro} || exit 99"]
        for name, args in commands.items():
            lines.append(f"{py} {' '.join(args)} > {tmp_path}/{name}.out 2> {tmp_path}/{name}.err")
            lines.append(f"echo $? > {tmp_path}/{name}.rc")
        ran = in_namespace("\n".join(lines))
        assert ran.returncode == 0, ran.stderr
        says = "read-only file system"
    elif os.geteuid() != 0:  # pragma: no cover - CI without user namespaces
        ro.chmod(0o555)
        for name, args in commands.items():
            res = cli(root, *args)
            for ext, text in (("out", res.stdout), ("err", res.stderr), ("rc", res.returncode)):
                (tmp_path / f"{name}.{ext}").write_text(str(text))
        says = "not writable"
    else:  # pragma: no cover
        pytest.skip("root without user namespaces: no way to make a read-only folder")
    for name in commands:
        res = subprocess.CompletedProcess(
            [name],
            int((tmp_path / f"{name}.rc").read_text()),
            (tmp_path / f"{name}.out").read_text(),
            (tmp_path / f"{name}.err").read_text(),
        )
        refused(res, f"{ro}/x", says)


# -- 2. a full disk: one line, and the resume finishes the run -----------------------------
@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_run_resumes(root, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    out = full / "x"
    args = " ".join(translate(str(out), "--workers", "2"))  # a worker's write fails
    py = f"cd {root} && {sys.executable} -m synth2real {args}"
    if UNSHARE:  # a 48 KiB file system: room for run.json and about two images
        ran = in_namespace(
            f"mount -t tmpfs -o size=48k tmpfs {full} || exit 99\n"
            f"{py} > {tmp_path}/1.out 2> {tmp_path}/1.err; echo $? > {tmp_path}/1.rc\n"
            f"mount -o remount,size=4m {full}\n"
            f"{py} --resume > {tmp_path}/2.out 2> {tmp_path}/2.err; echo $? > {tmp_path}/2.rc\n"
            f"cp -a {out} {tmp_path}/copy"
        )
        assert ran.returncode == 0, ran.stderr
        first, says = (tmp_path / "1.err").read_text(), "No space left on device"
        rc1, rc2 = (int((tmp_path / f"{i}.rc").read_text()) for i in (1, 2))
        second, copy = (tmp_path / "2.err").read_text(), tmp_path / "copy"
    else:  # pragma: no cover - a file-size limit instead: EFBIG, the same path
        import resource

        def limit():
            _default_sigint()
            resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

        res = subprocess.run(
            py, shell=True, env=ENV, capture_output=True, text=True, preexec_fn=limit
        )
        first, rc1, says = res.stderr, res.returncode, "File too large"
        res = cli(root, *translate(str(out), "--workers", "2", "--resume"))
        second, rc2, copy = res.stderr, res.returncode, out
    assert rc1 == 2 and "Traceback" not in first, first
    assert len(first.strip().splitlines()) == 1, first
    # the failing call names its file, or (a write() without one) the output folder
    assert f"writing {out}" in first or f"writing into {out}:" in first, first
    assert says in first and "--resume" in first, first
    assert rc2 == 0 and "Traceback" not in second, second
    assert tree(copy) == tree(root / "ref")  # the resumed run is the uninterrupted one
    assert not list(copy.rglob("*.tmp"))


# -- 2. a batch BatchNorm cannot take -------------------------------------------------------
def test_a_batch_of_one_crop_batchnorm_cannot_take_says_what_works(root, tmp_path):
    out = tmp_path / "m"
    args = ["train", "--data", "syn", "--out", str(out), "--crop", "32", "--batch-size", "1"]
    refused(cli(root, *args), "batch size 1 with crop 32x32", "--crop 64", "batch size >= 2")
    assert not out.exists()


# -- 3. two runs, kill -9, Ctrl-C ----------------------------------------------------------
SLOW_ENV = "S2R_DEBUG_SLEEP_PER_IMAGE"  # seconds a worker sleeps after each image
SLOW = {SLOW_ENV: "0.4"}


@pytest.mark.slow
def test_a_second_run_into_a_running_ones_folder_is_refused_naming_it(root, tmp_path):
    out = tmp_path / "o"  # slow enough to be running still when the second one starts
    first = start(root, *translate(str(out), "--workers", "2"), env={SLOW_ENV: "2"})
    try:
        wait_for(lambda: images_done(out) >= 1, 90, "the first run to write an image")
        err = refused(cli(root, *translate(str(out), "--resume")), f"{out} is in use")
        assert f"pid {first.pid}" in err and "translate" in err
        _, first_err = first.communicate(timeout=90)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, first_err
    assert tree(out) == tree(root / "ref") and not (out / ".synth2real.lock").exists()


@pytest.mark.slow
def test_after_kill_9_the_workers_exit_and_the_run_resumes(root, tmp_path):
    out = tmp_path / "o"
    proc = start(root, *translate(str(out), "--workers", "2"), env=SLOW)
    try:
        wait_for(lambda: images_done(out) >= 1, 90, "the run to write an image")
        assert len(group(proc.pid)) >= 3  # the run, its workers, the resource tracker
        proc.kill()  # SIGKILL to the main process only
        proc.wait()
        wait_for(lambda: not group(proc.pid), 15, "the orphaned workers to exit")
        proc.stderr.close(), proc.stdout.close()
    finally:
        if group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert images_done(out) < len(SIZES)
    res = cli(root, *translate(str(out), "--resume"))
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert "taking over the lock of an earlier run" in res.stderr  # the stale lock, named
    assert f"pid {proc.pid}" in res.stderr
    assert tree(out) == tree(root / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("when", ["starting", "running"])
def test_ctrl_c_prints_the_resume_hint_once_and_no_traceback(root, tmp_path, when):
    out = tmp_path / "o"
    proc = start(root, *translate(str(out), "--workers", "2"), env=SLOW)
    try:
        if when == "starting":  # the lock is taken, the workers are being started
            wait_for(lambda: (out / ".synth2real.lock").exists(), 90, "the run to start")
            time.sleep(0.3)
        else:
            wait_for(lambda: images_done(out) >= 1, 90, "the run to write an image")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        stdout, stderr = proc.communicate(timeout=30)
        wait_for(lambda: not group(proc.pid), 15, "the workers to exit")
    finally:
        if group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout and "Exception" not in stderr, stderr
    assert stderr.count("rerun with --resume") == 1, stderr
    res = cli(root, *translate(str(out), "--resume"))
    assert res.returncode == 0, res.stderr
    assert tree(out) == tree(root / "ref")


# -- 4. no network unless a model id was given ---------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).requests.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path):
    """A fake hub that records every request, and an empty Hugging Face home: the
    environment of a user online with nothing downloaded."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.requests = []
    env = {
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }
    yield env, _Recorder.requests
    server.shutdown()


def test_a_diffusion_method_without_weights_fails_at_once_offline(root, tmp_path, hub):
    env, requests = hub
    out = tmp_path / "d"
    t0 = time.monotonic()
    res = cli(root, "translate", "--source", "syn", "--references", "real", "--method",
              "cactif", "--out", str(out), env=env)  # fmt: skip
    err = refused(res, "cactif needs Stable Diffusion weights", "--diffusion-model /path/to/sd15")
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in err and "hf download" in err
    assert len(err.strip().splitlines()) == 1
    assert requests == [] and not out.exists()
    assert time.monotonic() - t0 < 60  # imports only: no retries, no time-outs


def test_a_diffusion_method_on_auto_without_a_gpu_is_refused(root, tmp_path):
    model = tmp_path / "sd"  # the layout is checked first; the weights are never read
    for sub in ("unet", "vae", "scheduler", "text_encoder", "tokenizer"):
        (model / sub).mkdir(parents=True)
    out = tmp_path / "d"
    res = cli(root, "translate", "--source", "syn", "--references", "real", "--method",
              "cactif", "--out", str(out), "--diffusion-model", str(model))  # fmt: skip
    refused(res, "cactif needs a GPU", "--device cpu")
    assert not out.exists()


@pytest.mark.slow
def test_segformer_without_pretrained_makes_no_request(root, tmp_path, hub):
    env, requests = hub
    out = tmp_path / "s"
    args = ["train", "--data", "syn", "--out", str(out), "--model", "segformer",
            "--iterations", "1", "--batch-size", "2", "--crop", "32"]  # fmt: skip
    res = cli(root, *args, env=env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    assert requests == []
    assert "warning: segformer: default pretrained weights 'nvidia/mit-b0' are not in" in (
        res.stderr
    )
    assert "--pretrained nvidia/mit-b0" in res.stderr
    assert json.loads((out / "model.json").read_text())["iteration"] == 1


def _fake_cache(cache: Path, repo: str, folder: Path) -> None:
    """Put ``folder`` into a Hugging Face cache as ``repo``'s main snapshot."""
    base = cache / f"models--{repo.replace('/', '--')}"
    rev = "0" * 40
    shutil.copytree(folder, base / "snapshots" / rev)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(rev)


def test_default_weights_in_the_local_cache_load_without_a_request(tmp_path, hub, monkeypatch):
    from huggingface_hub import constants

    from synth2real.diffusion.config import DEFAULT_MODEL
    from synth2real.diffusion.loading import check_weights, load_models
    from synth2real.segment.models import create_model
    from tests.diffusion.tiny import save_tiny_model

    env, requests = hub
    cache = Path(env["HF_HUB_CACHE"])
    _fake_cache(cache, DEFAULT_MODEL, save_tiny_model(tmp_path / "tiny"))
    seg = create_model("segformer", 2, pretrained=False, config={"hidden_sizes": [8] * 4,
                       "depths": [1] * 4, "decoder_hidden_size": 8,
                       "num_attention_heads": [1] * 4})  # fmt: skip
    seg.net.save_pretrained(tmp_path / "mit")
    _fake_cache(cache, "nvidia/mit-b0", tmp_path / "mit")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", env["HF_ENDPOINT"])
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(k, "0")
    check_weights(DEFAULT_MODEL)  # found: no error
    models = load_models(DEFAULT_MODEL, device="cpu", dtype="float32")
    assert models.unet.config.block_out_channels == [8, 16, 16]  # the tiny model
    loaded = create_model("segformer", 2)  # pretrained=None: the default, from the cache
    assert loaded.pretrained_source == "nvidia/mit-b0"
    assert loaded.net.config.hidden_sizes == [8] * 4
    assert requests == []
