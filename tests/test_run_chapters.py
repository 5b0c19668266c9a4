"""scripts/run_chapters.py: widgets made static text, chapter times recorded; one tiny notebook run."""
import datetime
import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "scripts" / "run_chapters.py")
run_chapters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_chapters)


def _model(name: str, **state) -> dict:
    return {"model_module": "@jupyter-widgets/controls", "model_name": name, "state": state}


# What tqdm.notebook leaves in the widget state when a bar finished (ids shortened).
TQDM_STATE = {
    "box": _model("HBoxModel", children=["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"], layout="IPY_MODEL_l"),
    "left": _model("HTMLModel", value="segmenter:\u2007100%", placeholder="\u200b"),
    "bar": _model("FloatProgressModel", value=800.0, max=800.0, min=0.0, bar_style="success"),
    "right": _model("HTMLModel", value="\u2007800/800\u2007[04:10&lt;00:00,\u20073.19it/s]"),
    "l": {"model_module": "@jupyter-widgets/base", "model_name": "LayoutModel", "state": {}},
    # ipywidgets.interact: a VBox of the controls and an Output
    "ui": _model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_out"], _dom_classes=["widget-interact"]),
    "slider": _model("IntSliderModel", value=0, max=3, description="round"),
    "out": {"model_module": "@jupyter-widgets/output", "model_name": "OutputModel", "state": {"outputs": []}},
    "plain": _model("IntProgressModel", value=3, max=4, min=0),
}


def test_a_tqdm_bar_becomes_its_final_state_as_text():
    assert run_chapters.widget_as_text("box", TQDM_STATE) == "segmenter: 100% 800/800 [04:10<00:00, 3.19it/s]"


def test_a_bare_progress_bar_says_how_far_it_got():
    assert run_chapters.widget_as_text("plain", TQDM_STATE) == "75%"


def test_another_widget_says_it_needs_a_live_kernel():
    text = run_chapters.widget_as_text("ui", TQDM_STATE)
    assert text == ("[interactive control (round): it needs a live kernel (Jupyter, Colab, Binder); "
                    "the static figure beside it shows the same]")
    assert "needs a live kernel" in run_chapters.widget_as_text("unknown-id", TQDM_STATE)


def test_static_widgets_replaces_each_view_in_place():
    view = lambda mid: nbformat.v4.new_output(  # noqa: E731
        "display_data", data={run_chapters.WIDGET_VIEW: {"model_id": mid, "version_major": 2},
                              "text/plain": "segmenter:   0%|  | 0/800"})
    cell = nbformat.v4.new_code_cell("train()", outputs=[
        view("box"), nbformat.v4.new_output("stream", name="stdout", text="done\n"), view("ui")])
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_markdown_cell("text")])
    nb.metadata["widgets"] = {run_chapters.WIDGET_STATE: {"state": TQDM_STATE, "version_major": 2}}
    out = run_chapters.strip_volatile(run_chapters.static_widgets(nb))
    outputs = out.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream"] * 3
    assert outputs[0].text == "segmenter: 100% 800/800 [04:10<00:00, 3.19it/s]\n"
    assert outputs[1].text == "done\n" and "needs a live kernel" in outputs[2].text
    assert "widgets" not in out.metadata
    nbformat.validate(out)


def test_record_time_keeps_the_other_entries_and_writes_valid_json(tmp_path):
    times = tmp_path / "data" / "chapter_times.json"
    day = datetime.date(2025, 12, 1)
    run_chapters.record_time("data", "full", 130.04, "2-core CPU", day, times)
    run_chapters.record_time("data", "smoke", 9.96, "2-core CPU", day, times)
    run_chapters.record_time("tta", "smoke", 20.0, "NVIDIA H200", times_file=times)
    written = run_chapters.record_time("data", "full", 120.0, "NVIDIA H200", day, times)
    assert json.loads(times.read_text()) == written == {
        "data": {"full": {"seconds": 120.0, "machine": "NVIDIA H200", "date": "2025-12-01"},
                 "smoke": {"seconds": 10.0, "machine": "2-core CPU", "date": "2025-12-01"}},
        "tta": {"smoke": {"seconds": 20.0, "machine": "NVIDIA H200", "date": datetime.date.today().isoformat()}},
    }
    assert sorted(p.name for p in times.parent.iterdir()) == ["chapter_times.json"]  # no temporary left
    with pytest.raises(ValueError, match="mode"):
        run_chapters.record_time("data", "quick", 1.0, "2-core CPU", times_file=times)

    from segreg_lite.book import run_time

    assert run_time("data", times) == ("Run time: 2 min at full settings (NVIDIA H200, 2025-12-01), "
                                       "10 s on the tests' tiny settings (2-core CPU, 2025-12-01).")


def test_describe_machine_names_the_cpu_cores_without_a_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert run_chapters.describe_machine() == f"{cores}-core CPU"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    assert run_chapters.describe_machine() == "NVIDIA H200"


TINY = '''\
from tqdm.auto import tqdm
import ipywidgets as widgets
for _ in tqdm(range(20), desc="segmenter"):
    pass
widgets.interact(lambda round_: print(round_), round_=widgets.IntSlider(0, 0, 3, description="round"));
print("done")
'''


def test_a_tiny_notebook_with_tqdm_runs_through_run_chapters(tmp_path, monkeypatch):
    """The whole --smoke path on a notebook that takes a second: static bars, the time recorded."""
    chapter = tmp_path / "tiny.ipynb"
    params = nbformat.v4.new_code_cell("steps = 20", metadata={"tags": ["parameters"]})
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(TINY)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, chapter)
    before = chapter.read_text()
    times = tmp_path / "times.json"
    monkeypatch.setattr(run_chapters, "TIMES_FILE", times)
    monkeypatch.setattr(run_chapters, "describe_machine", lambda: "2-core CPU")
    # main() sets these for the kernel; monkeypatch puts them back afterwards
    monkeypatch.delenv("SEGREG_SMOKE", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))

    assert run_chapters.main(["--smoke", "--out", str(tmp_path / "out"), str(chapter)]) == 0

    assert chapter.read_text() == before, "a smoke run wrote over the chapter"
    executed = nbformat.read(tmp_path / "out" / "tiny.ipynb", as_version=4)
    outputs = executed.cells[1].outputs
    assert not any(run_chapters.WIDGET_VIEW in o.get("data", {}) for o in outputs)
    texts = [o.text for o in outputs if o.output_type == "stream"]
    assert texts[0].startswith("segmenter: 100% 20/20 [00:00"), texts
    assert "needs a live kernel" in texts[1] and texts[-1].endswith("done\n")
    assert "widgets" not in executed.metadata
    entry = json.loads(times.read_text())["tiny"]
    assert set(entry) == {"smoke"} and entry["smoke"]["machine"] == "2-core CPU" and entry["smoke"]["seconds"] > 0


def test_concurrent_recordings_keep_every_chapter(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    times = tmp_path / "times.json"
    names = [f"chapter{i}" for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: run_chapters.record_time(n, "smoke", 1.0, "2-core CPU", times_file=times), names))
    assert sorted(json.loads(times.read_text())) == sorted(names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["times.json"]


def test_output_widgets_stay_on_the_client_side():
    """The Output-widget echo to the kernel that can hang a run (see keep_output_widgets_local)."""
    from types import SimpleNamespace

    from nbclient.output_widget import OutputWidget

    run_chapters.keep_output_widgets_local()
    run_chapters.keep_output_widgets_local()  # twice is once
    sent = []
    widget = SimpleNamespace(comm_id="out", outputs=[{"output_type": "stream"}], send=sent.append,
                             executor=SimpleNamespace(widget_state={"out": {"outputs": []}}))
    OutputWidget.sync_state(widget)
    assert sent == [] and widget.executor.widget_state["out"]["outputs"] == [{"output_type": "stream"}]


def test_run_time_cells_are_stamped_with_the_times_just_recorded(tmp_path):
    times = tmp_path / "times.json"
    run_chapters.record_time("toy", "full", 125.0, "2-core CPU", datetime.date(2026, 12, 1), times)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from segreg_lite.book import show_run_time\nshow_run_time('toy')",
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="stale\n")]),
        nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output("stream", name="stdout", text="kept\n")]),
    ])
    assert run_chapters.stamp_run_time(nb, "toy", times) == 1
    line = nb.cells[0].outputs[0]["text"]
    assert line.startswith("Run time: 2 min at full settings (2-core CPU, 2026-12-01)")
    assert "not yet measured on the tests' tiny settings" in line
    assert nb.cells[1].outputs[0]["text"] == "kept\n"
