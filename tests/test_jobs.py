"""The sweep's runs as submitit jobs (segreg_lite.jobs): in-process, as local processes, on a
Slurm that submitit's own test helpers stand in for (``mocked_slurm``: sbatch and sacct answered
in-process; pinned with submitit in the dev extra), requeued at a time limit, and the one-line
refusals. Offline, on two cores, all small: 12 toy subjects of 32x32 pixels in a NIfTI folder (a
recipe that every job reads again in no time, where the generated cohort would first build its
template in each job), tiny schedules."""
import json
import signal
from contextlib import contextmanager
from dataclasses import replace
from unittest.mock import patch

import pytest
import torch

from segreg_lite.cli import main
from segreg_lite.data import load_data
from segreg_lite.sweep import collect_sweep, run_sweep

try:
    import submitit  # noqa: F401
except ImportError:  # outside the dev extra: only the refusals run
    submitit = None
needs_submitit = pytest.mark.skipif(submitit is None, reason="the cluster extra: pip install segreg-lite[cluster]")

SWEEP = ["--fractions", "0.2,0.5", "--seeds", "0", "--methods", "supervised", "--smoke", "--quiet"]


def untimed(summary):
    """Every method's metrics but its seconds, as JSON text (so that NaN equals NaN)."""
    return json.dumps({name: {k: v for k, v in m["metrics"].items() if k != "seconds"}
                       for name, m in summary["methods"].items()}, sort_keys=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, make_data):
    """12 toy subjects of 32x32 pixels as a NIfTI folder."""
    from segreg_lite.nifti import save_nifti_folder

    toy, path = make_data(), tmp_path_factory.mktemp("nifti")
    save_nifti_folder(path, toy.images, toy.labels, names=toy.subjects)
    return path


@pytest.fixture(scope="module")
def small_data(folder):
    return load_data(str(folder))  # it carries its recipe: the jobs make it again from that


@pytest.fixture(scope="module")
def cli(folder):
    return ["sweep", "--data", str(folder), *SWEEP]


@contextmanager
def threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def fake_slurm(monkeypatch):
    """Slurm without Slurm: submissions go to submitit's ``mocked_slurm``, and waiting for the jobs
    runs each here instead, as a node would (``submission.process_job`` in the job's environment),
    again after each requeue. Yields how each attempt of each job ended ("ended", "requeued") and
    the mock of submitit's requeue (``scontrol requeue``)."""
    from submitit.core import submission
    from submitit.slurm.test_slurm import mocked_slurm

    from segreg_lite import jobs

    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)}
    monkeypatch.setenv("SUBMITIT_FOLDER", "")  # process_job sets it; restored after
    attempts = []
    real_wait = jobs._wait

    def run_on_the_nodes(submitted, log, start, poll=0.2):
        for _, job in submitted:
            while True:
                with mock.job_context(job.job_id):
                    try:
                        submission.process_job(job.paths.folder)
                        attempts.append("ended")
                        break
                    except SystemExit:  # checkpointed and requeued: Slurm starts it again
                        attempts.append("requeued")
        real_wait(submitted, log, start, poll=0.01)

    monkeypatch.setattr(jobs, "_wait", run_on_the_nodes)
    try:
        with mocked_slurm() as mock, patch("submitit.slurm.slurm.SlurmJobEnvironment._requeue") as requeue:
            yield attempts, requeue
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@needs_submitit
def test_the_in_process_executor_gives_the_serial_numbers(tmp_path, small_data, tiny_config):
    """submitit's in-process executor runs each cell as a job would (its data made again from the
    recipe) and gives, to the last digit, what ``--jobs 1`` gives."""
    kw = dict(fractions=(0.2, 0.5), seeds=(0,), methods=("supervised", "joint"), config=tiny_config, device="cpu",
              progress=False)
    logged = []
    debug = run_sweep(small_data, tmp_path / "debug", executor="debug", log=logged.append, **kw)
    serial = run_sweep(small_data, tmp_path / "serial", jobs=1, **kw)
    assert "through submitit's in-process executor" in logged[0] and sum(": done (" in line for line in logged) == 2
    assert [untimed(s) for s in debug] == [untimed(s) for s in serial]
    assert [s["fraction"] for s in debug] == [0.2, 0.5]
    toy = replace(small_data, recipe=None)
    with pytest.raises(ValueError, match="makes each job's data again from its recipe, and this data has none"):
        run_sweep(toy, tmp_path / "toy", executor="debug", **{**kw, "fractions": (0.3,)})
    from segreg_lite.jobs import SweepJobError

    with pytest.raises(SweepJobError, match=r"1 of 1 job\(s\) failed, first f0.2-s0 \(job DEBUG_\d+\): .*holds another run.*"
                                            r"move that folder away.*run the sweep again to resume them"):
        run_sweep(small_data, tmp_path / "debug", executor="debug",  # that folder holds the run of another config
                  **{**kw, "config": replace(tiny_config, rounds=2), "fractions": (0.2,)})


@needs_submitit
def test_two_cells_as_local_processes_read_back_as_the_serial_sweep(tmp_path, capsys, cli):
    """``segreg-lite sweep --executor local --smoke``: each cell a process of its own (not this
    one), two at a time, one CPU thread each; ``collect_sweep`` reads what ``--jobs 1`` wrote, and
    the same command again skips the finished folders."""
    import os

    with threads(1):
        assert main([*cli, "--out", str(tmp_path / "serial")]) == 0
    with threads(2):  # two local jobs at a time: one thread each, as the serial sweep had
        assert main([*cli, "--executor", "local", "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
    out = capsys.readouterr().out
    assert "as local submitit jobs, 2 at a time" in out and out.count(": done (") == 2
    logs = sorted((tmp_path / "local" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all(p.parent.name != str(os.getpid()) for p in logs)
    assert all("1 CPU threads" in p.read_text() for p in logs)
    serial, local = collect_sweep(tmp_path / "serial"), collect_sweep(tmp_path / "local")
    assert list(local) == [0.2, 0.5]
    assert [[untimed(s) for s in runs] for runs in local.values()] == [[untimed(s) for s in runs] for runs in serial.values()]
    assert main([*cli, "--executor", "local", "--jobs", "2", "--out", str(tmp_path / "local")]) == 0
    assert "2 finished earlier, 0 to run" in capsys.readouterr().out
    assert len(list((tmp_path / "local" / ".submitit").glob("*/*_log.out"))) == 2  # no job started again


@needs_submitit
def test_the_slurm_submission_asks_for_a_gpu_per_job_and_the_array_limit(tmp_path, small_data, tiny_config, fake_slurm):
    """Three runs go to Slurm as one job array: the batch script asks for the partition, the time
    limit, one GPU per job and at most two jobs at once; the "nodes" run them and the sweep reads
    them back."""
    attempts, requeue = fake_slurm
    logged = []
    summaries = run_sweep(small_data, tmp_path / "s", fractions=(0.2, 0.5), seeds=(0,), methods=("supervised", "upper_bound"),
                          config=tiny_config, device="auto", executor="slurm", log=logged.append, progress=False,
                          slurm="partition=gpu,time=240,gpus=1,array_parallelism=2,mem=8")
    scripts = list((tmp_path / "s" / ".submitit").glob("*/*_submission.sh"))
    assert len(scripts) == 1
    lines = scripts[0].read_text().splitlines()
    for wanted in ("#SBATCH --gpus-per-node=1", "#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=240",
                   "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8GB", "#SBATCH --job-name=segreg-lite"):
        assert wanted in lines, (wanted, lines)
    assert any("-m submitit.core._submit" in line for line in lines)
    assert "as a Slurm job array" in logged[0] and any("submitted 3 Slurm job(s) (12)" in line for line in logged)
    assert attempts == ["ended"] * 3 and not requeue.called
    assert [(s["fraction"], list(s["methods"])) for s in summaries] == [
        (0.2, ["supervised"]), (0.5, ["supervised"]), (1.0, ["upper_bound"])]


@needs_submitit
def test_a_job_stopped_at_its_time_limit_is_requeued_and_resumes_its_joint_run(tmp_path, small_data, tiny_config,
                                                                                fake_slurm, monkeypatch, capsys):
    """A one-minute time limit: Slurm's warning signal (USR2) reaches the job while the joint
    method trains its second round; submitit calls the job's ``checkpoint`` and requeues it; the
    requeued job reads the pre-trained models and round 1 back from its run folder and trains
    round 2 alone. The numbers are those of a run never interrupted."""
    from segreg_lite import joint

    attempts, requeue = fake_slurm
    config = replace(tiny_config, rounds=2)
    kw = dict(fractions=(0.5,), seeds=(0,), methods=("joint",), config=config, progress=False)
    calls = []
    real = joint.train_segmenter

    def signalled_in_round_2(*args, **kwargs):
        calls.append(len(attempts))  # which attempt trains a round
        if calls == [0, 0]:  # the first attempt's second round
            signal.raise_signal(signal.SIGUSR2)  # what Slurm sends 90 s before the limit
        return real(*args, **kwargs)

    monkeypatch.setattr(joint, "train_segmenter", signalled_in_round_2)
    resumed = run_sweep(small_data, tmp_path / "slurm", executor="slurm", slurm="time=1,requeues=2", device="cpu", **kw)
    out = capsys.readouterr().out
    assert attempts == ["requeued", "ended"] and requeue.call_args.args == (1,)  # timed out: 1 requeue left
    first, second = out.split("stopped at the time limit or preempted; requeued, the job resumes this run folder")
    assert "joint round 0" in first and "joint round 1" in first and "joint round 2" not in first
    assert "joint round 2" in second and "joint round 0" not in second and "joint round 1" not in second
    assert calls == [0, 0, 1]  # round 1 and the interrupted round 2, then round 2 alone
    monkeypatch.setattr(joint, "train_segmenter", real)
    never_stopped = run_sweep(small_data, tmp_path / "serial", device="cpu", **kw)
    assert untimed(resumed[0]) == untimed(never_stopped[0])
    rounds = [[{k: v for k, v in h.items() if k != "seconds"} for h in s["methods"]["joint"]["history"]]
              for s in (resumed[0], never_stopped[0])]
    assert [h["round"] for h in rounds[0]] == [0, 1, 2] and json.dumps(rounds[0]) == json.dumps(rounds[1])


def _one_line(capsys, *expected):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("segreg-lite: error: ") and all(e in err for e in expected), err


def test_a_missing_submitit_and_unknown_slurm_options_are_one_line_errors(tmp_path, capsys, monkeypatch, cli):
    """Refused before any data is made, naming the flag; nothing written."""
    from segreg_lite import jobs

    out = ["--out", str(tmp_path / "x")]
    monkeypatch.setattr(jobs, "submitit", submitit or object())  # installed or not: the options are checked first
    assert main([*cli, "--executor", "slurm", "--slurm", "partiton=gpu", *out]) == 2
    _one_line(capsys, "--slurm: unknown option 'partiton'; the options are partition, time, gpus")
    assert main([*cli, "--executor", "slurm", "--slurm", "time=4h", *out]) == 2
    _one_line(capsys, "--slurm time must be a whole number, got '4h'")
    assert main([*cli, "--executor", "slurm", "--slurm", "gpu", *out]) == 2
    _one_line(capsys, "--slurm takes key=value pairs")
    assert main([*cli, "--slurm", "gpus=1", *out]) == 2
    _one_line(capsys, "--slurm is for --executor slurm, not pool")
    assert main([*cli, "--executor", "slurm", "--jobs", "4", *out]) == 2
    _one_line(capsys, "--slurm array_parallelism=N")
    assert main([*cli, "--executor", "cloud", *out]) == 2
    _one_line(capsys, "unknown --executor 'cloud': use pool, local, slurm, debug")
    monkeypatch.setattr(jobs, "submitit", None)  # what the module's import leaves when submitit is not installed
    for executor in ("local", "slurm"):
        assert main([*cli, "--executor", executor, *out]) == 2
        _one_line(capsys, f"--executor {executor} needs submitit, which is not installed: pip install segreg-lite[cluster]")
    assert not (tmp_path / "x").exists()


def test_a_slurm_jobs_device_need_not_be_on_the_submitting_machine(monkeypatch):
    """The login node has no GPU; the jobs' nodes do: ``--device cuda`` is checked for its name only."""
    from segreg_lite import jobs

    monkeypatch.setattr(jobs, "submitit", submitit or object())
    assert jobs.check_executor("slurm", "gpus=1", device="cuda")["gpus"] == 1
    with pytest.raises(ValueError, match="unknown --device 'gpu'"):
        jobs.check_executor("slurm", device="gpu", flag="--")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here"):
        jobs.check_executor("local", device="cuda")  # a local job's device is this machine's


def test_local_jobs_share_the_gpus_one_each():
    from segreg_lite.jobs import local_gpus, slurm_options

    assert [local_gpus("auto", slot, 2)["visible_gpus"] for slot in range(3)] == [(0,), (1,), (0,)]
    assert local_gpus("cuda:1", 0, 2) == {"gpus_per_node": 2, "visible_gpus": (0, 1)}
    assert local_gpus("cpu", 0, 0) == {"gpus_per_node": 0, "visible_gpus": ()}
    assert slurm_options({"gpus": 2}) == {"time": 240, "gpus": 2, "cpus": 4, "requeues": 3}
    with pytest.raises(ValueError, match="slurm gpus must be at least 0"):
        slurm_options("gpus=-1")
