"""The HTML report and the plot functions; the report opened in a real headless browser."""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from senformer import plots
from senformer.errors import UserError
from senformer.plots import figure_png, new_figure
from senformer.report import Report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Written into the page before </body>: after load, record for every image whether it decoded.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight};
  });
  var out = document.createElement("pre");
  out.id = "senformer-check";
  out.textContent = JSON.stringify({images: images, tables: document.querySelectorAll("table").length,
                                    title: document.title});
  document.body.appendChild(out);
});
</script>"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def open_in_browser(html_path, tmp_path) -> dict:
    """Load ``html_path`` (a copy with the check script) in headless chromium; the script's JSON result."""
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser found (install Debian's chromium: apt-get install -y chromium)")
    page = tmp_path / "checked.html"
    page.write_text(html_path.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="senformer-check">(.*?)</pre>', completed.stdout, re.S)
    assert match, f"the page's check did not run; browser stderr:\n{completed.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(match.group(1)))


def sample_report() -> Report:
    report = Report("senformer study", subtitle="tiny <test> run")
    report.section("Accuracy", "Pearson r per assay group & model.")
    frame = pd.DataFrame({"group": ["CAGE", "DNase/ATAC"], "enformer": [0.61234567, np.nan], "examples": [3, 4]})
    report.table(frame, caption="Pearson r", source="evaluate/metrics.json")
    figure = new_figure(4, 3)
    plots.compare_scatter(figure.subplots(), np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.4, 0.95]), "a", "b",
                          title="CAGE", correlation=0.98)
    report.figure(figure, caption="Figure 6", source=["compare/compare.csv", "compare/settings.json"])
    figure = new_figure(4, 3)
    plots.receptive_field_heatmap(figure.subplots(), np.abs(np.random.default_rng(0).normal(size=(4, 6))),
                                  np.array([100, 300, 500, 700]), np.arange(6) * 128 + 64.0, title="full")
    report.figure(figure_png(figure), caption="Figure 8", source="receptive_field/")
    return report


def test_report_is_self_contained_and_names_sources(tmp_path):
    path = tmp_path / "report.html"
    sample_report().write(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "tiny &lt;test&gt; run" in text and "group &amp; model" in text
    assert "0.6123" in text and "—" in text  # 4 significant digits; NaN as a dash
    assert text.count("data:image/png;base64,") == 2
    assert "source: compare/compare.csv, compare/settings.json" in text and "source: evaluate/metrics.json" in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched from the network
    for encoded in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text):
        assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")


def test_only_the_commands_import_the_report():
    """The report sits above every analysis: figures come from ``senformer.plots``, and nothing but the
    report's own modules and the commands reaches into ``senformer.report``."""
    from test_imports import import_edges, module_files

    importers = {importer for importer, imported, _, _ in import_edges(module_files())
                 if imported.startswith("senformer.report") and not importer.startswith("senformer.report")}
    assert importers and all(importer.startswith("senformer.commands.") for importer in importers), importers


def test_report_rejects_non_png_bytes():
    with pytest.raises(ValueError, match="not a PNG"):
        Report("x").figure(b"GIF89a", caption="bad", source="-")


def test_report_loads_in_a_headless_browser_and_every_image_renders(tmp_path):
    path = tmp_path / "report.html"
    sample_report().write(path)
    result = open_in_browser(path, tmp_path)
    assert result["title"] == "senformer study" and result["tables"] == 1
    assert len(result["images"]) == 2
    for image in result["images"]:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image


def test_plot_functions_draw_on_the_given_axes():
    figure = new_figure()
    axes = figure.subplots(2, 3).ravel()
    assert plots.compare_scatter(axes[0], np.array([0.1, np.nan, 0.3]), np.array([0.2, 0.1, 0.3]), "a", "b") is axes[0]
    assert len(axes[0].collections[0].get_offsets()) == 2  # the NaN example is left out
    assert plots.track_panel(axes[1], np.arange(8.0), {"a": np.ones(8), "b": np.zeros(8)}, title="t") is axes[1]
    assert len(axes[1].lines) == 2
    values = np.array([[0.5, 0, 0, 0], [0, -0.2, 0.1, 0], [0, 0, 0, 0]])
    assert plots.sequence_logo(axes[2], values, start=10) is axes[2]
    assert len(axes[2].patches) == 3  # one letter per non-zero entry
    assert axes[2].get_xlim() == (9.5, 12.5)
    table = pd.DataFrame({"group": ["CAGE", "CAGE", "TF"], "model": ["a", "b", "a"], "r": [0.5, 0.6, 0.4]})
    assert plots.grouped_bars(axes[3], table, "r") is axes[3]
    assert len(axes[3].patches) == 4  # 2 groups x 2 models (a missing bar is NaN)
    change = np.abs(np.random.default_rng(1).normal(size=(5, 7)))
    assert plots.receptive_field_profile(axes[4], change, np.arange(5) * 10, np.arange(7) * 128.0) is axes[4]
    assert plots.mutagenesis_heatmap(axes[5], values, start=3) is axes[5]
    assert figure_png(figure).startswith(b"\x89PNG")


def test_length_curves_draws_the_cap_only_when_something_approaches_it():
    from matplotlib.figure import Figure

    near = [{"x": [1, 2], "y": [0.5, 1.0], "label": "full"}]
    ax = Figure().subplots()
    plots.length_curves(ax, near, "length", "GB", cap=20.0)
    assert ax.get_ylim()[1] < 2  # scaled to the points, not to a cap none approaches
    assert not any(line.get_label().startswith("cap") or line.get_linestyle() == ":" for line in ax.lines)
    ax = Figure().subplots()
    plots.length_curves(ax, [{**near[0], "failed": [4]}, {"x": [1], "y": [0.7], "label": "peer", "failed": [2, 4]}],
                        "length", "GB", cap=20.0, cap_label="cap")
    assert ax.get_ylim()[1] >= 20 and any(line.get_label() == "cap" for line in ax.lines)
    assert [line.get_label() for line in ax.lines].count("x: out of memory") == 1
    with pytest.raises(ValueError, match="<= 0"):
        plots.length_curves(Figure().subplots(), [{"x": [1, 2], "y": [0.3, -0.1], "label": "per layer"}], "x", "y")


STUDY_RECORD = {
    "models": [
        {"name": "full@1000", "row": "1", "description": "full attention from scratch", "steps": 1000, "lr_factor": None, "seeds": [0, 1, 2],
         "metrics": {"pooled": {"mean": 0.61, "sd": 0.01, "values": [0.6, 0.61, 0.62]},
                     "pooled/long-range": {"mean": 0.52, "sd": 0.02, "values": [0.5, 0.52, 0.54]}},
         "minus_row1": {}},
        {"name": "control", "row": "2", "description": "row 1, attention removed", "steps": None, "lr_factor": None, "seeds": [0, 1, 2],
         "metrics": {"pooled": {"mean": 0.5, "sd": 0.01, "values": [0.49, 0.5, 0.51]},
                     "pooled/long-range": {"mean": 0.3, "sd": 0.02, "values": [0.28, 0.3, 0.32]}},
         "minus_row1": {"pooled": {"difference": -0.11, "low": -0.13, "high": -0.09},
                        "pooled/long-range": {"difference": -0.22, "low": -0.25, "high": -0.19}}},
    ],
    "attention_matters": {"loss_on_long_range": 0.22, "required_loss": 0.1, "met": True},
}


def test_accuracy_study_table_is_read_from_study_json(tmp_path):
    from senformer.report import read_accuracy_study
    from senformer.study import table_frame

    assert len(table_frame(STUDY_RECORD)) == 2  # the record is one the study's own table reads

    path = tmp_path / "study.json"
    path.write_text(json.dumps(STUDY_RECORD))
    table, _ = read_accuracy_study(path)
    assert list(table["row"]) == ["1", "2"]
    control = table.set_index("model").loc["control"]
    assert control["pooled/long-range r"] == "0.300 ± 0.020"
    assert control["pooled/long-range minus row 1 [95% CI]"] == "-0.220 [-0.250, -0.190]"
    assert table.set_index("model").loc["full@1000", "pooled minus row 1 [95% CI]"] == "-"
    path.write_text(json.dumps({"models": [{"name": "x"}]}))
    with pytest.raises(UserError, match=r"study.json: models\[0\] lacks row, metrics"):
        read_accuracy_study(path)


def test_study_report_shows_recorded_results_with_provenance_and_the_study(tmp_path):
    """An empty run folder beside the repository's recorded benchmarks and a study.json: the summary's
    numbers are those of the files."""
    from senformer.report import RECORDED_RESULTS, build_study_report

    if not (RECORDED_RESULTS / "scaling_train_cpu" / "scaling.json").is_file():
        pytest.skip("the recorded benchmarks (benchmarks/results/) are not beside this installation")
    run = tmp_path / "run"
    run.mkdir()
    study = tmp_path / "study.json"
    study.write_text(json.dumps(STUDY_RECORD))
    build_study_report(run, study=study)
    html = (run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((run / "report.json").read_text())["summary"]
    document = json.loads((RECORDED_RESULTS / "scaling_train_cpu" / "scaling.json").read_text())
    points = {(p["attention"], p["depth"], p["length"]): p for p in document["points"]
              if p["implementation"] == "senformer" and p["status"] == "ok"}
    deepest = max(depth for _, depth, _ in points)
    both = max(n for (kind, depth, n) in points if kind == "full" and depth == deepest and ("bigbird", deepest, n) in points)
    recorded = next(line for line in summary if line.startswith("Recorded at full width"))
    assert f"{points[('bigbird', deepest, both)]['median_seconds']:.0f} s" in recorded
    assert f"{points[('full', deepest, both)]['peak_rss_bytes'] / 1e9:.1f} GB" in recorded
    assert document["runs"][0]["machine"]["senformer_commit"][:7] in recorded
    assert "Provenance of the recorded sweep" in html and "senformer benchmark scaling --dim 1536" in html
    assert "row 2 control 0.300" in summary[-1] and "removing attention loses 0.220" in summary[-1]
    assert html.index("Summary of findings") < html.index("<h2>Runs</h2>")
    # Without the study, the report says how to run it.
    build_study_report(run, study=tmp_path / "absent.json")
    assert "benchmarks/study/run.sh" in (run / "report.html").read_text(encoding="utf-8")


def test_the_report_reads_finished_stages_from_their_run_records(tmp_path):
    """A stage is finished when its folder holds the demo's run record for it (command ``demo <stage>``):
    neither an old ``.done`` marker nor the record of the command the stage ran says so."""
    from senformer.outputs import DIRECTORY, Output
    from senformer.report import build_study_report

    run = tmp_path / "run"
    (run / "attention").mkdir(parents=True)
    (run / "attention" / ".done").write_text("{}\n")
    Output(run / "compare", DIRECTORY, command="analyze compare", grown=True).write_record()
    Output(run / "data", DIRECTORY, command="demo data", settings={"argv": ["data", "synthetic"], "seconds": 1.5},
           fingerprint="0" * 64, grown=True).write_record()
    (run / "demo.json").write_text(json.dumps({"stages": ["data", "compare", "attention"], "settings": {}}))
    build_study_report(run, recorded=None, study=tmp_path / "absent.json")
    numbers = json.loads((run / "report.json").read_text())
    rows = {row["stage"]: row for row in numbers["numbers"]["runs"]["table"]}
    assert (rows["data"]["status"], rows["data"]["seconds"], rows["data"]["command"]) == (
        "finished", 1.5, "senformer data synthetic")
    assert numbers["missing"] == ["compare", "attention"]
    assert "source: data/run.json" in (run / "report.html").read_text(encoding="utf-8")


def test_the_demo_report_opens_with_the_question_the_answer_and_how_sure_then_results_then_provenance(tmp_path):
    """In document order: the opening block (question, what was done, the answer with the recorded study's
    intervals over seeds, this run's one seed read against the seed spread) before any table or figure; the
    results; the runs (provenance) last."""
    from senformer.outputs import DIRECTORY, Output
    from senformer.report import RECORDED_RESULTS, build_study_report

    study = RECORDED_RESULTS / "accuracy_study" / "study.json"
    if not study.is_file():
        pytest.skip("the recorded accuracy study (benchmarks/results/) is not beside this installation")
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "evaluate").mkdir()
    (run / "data" / "synthetic.json").write_text(json.dumps({"long_range_tracks": [1]}))
    pd.DataFrame({"assay_group": ["CAGE"], "tracks": [2], "pooled_full": [0.6], "pooled_bigbird": [0.61],
                  "pooled_control": [0.5]}).to_csv(run / "evaluate" / "per_assay.csv", index=False)
    pd.DataFrame({"index": [0, 1], "pooled_full": [0.7, 0.55], "pooled_bigbird": [0.7, 0.56],
                  "pooled_control": [0.69, 0.39]}).to_csv(run / "evaluate" / "per_track.csv", index=False)
    Output(run / "evaluate", DIRECTORY, command="demo evaluate", settings={"seconds": 1.0}, fingerprint="0" * 64,
           grown=True).write_record()
    (run / "demo.json").write_text(json.dumps({"stages": ["data", "evaluate"], "settings": {
        "seed": 0, "data_examples": [1024, 64, 128], "full_steps": 1200, "finetune_steps": 60}}))
    build_study_report(run, recorded=None, study=study)
    html = (run / "report.html").read_text(encoding="utf-8")
    opening = [html.index(label) for label in ("Question.", "What was done.", "Answer.", "How sure.")]
    assert opening == sorted(opening) and opening[-1] < html.index("<table") and opening[-1] < html.index("<figure")
    answer = json.loads((run / "report.json").read_text())["numbers"]["story"]["Answer."]
    assert "-0.011 [-0.017, -0.004] (3 seeds)" in answer and "-0.153 [-0.167, -0.138] (3 seeds)" in answer
    assert "0.550 and BigBird 0.560 (+0.010)" in answer and "one seed" in answer and "within seed noise" in answer
    assert html.index("Summary of findings") < html.index("<h2>Accuracy per assay group")
    assert html.index("<h2>Why the S-Enformer report") < html.index("<h2>Runs</h2>")  # provenance at the end


def test_a_timing_change_within_its_repeats_spread_is_called_noise(tmp_path):
    """One noisy timing once made bigbird's time seem to fall with length: a growth no larger than the spread
    of its repeats is reported as noise, a larger one as a number."""
    from senformer.outputs import DIRECTORY, Output
    from senformer.report import Report
    from senformer.report.recorded import live_attention_section

    run = tmp_path / "run"
    (run / "attention").mkdir(parents=True)
    Output(run / "attention", DIRECTORY, command="demo attention", settings={"seconds": 1.0}, fingerprint="0" * 64,
           grown=True).write_record()

    def point(kind, length, times):
        return {"kind": kind, "length": length, "status": "ok", "median_s": float(np.median(times)),
                "times_s": times, "peak_memory_mb": length / 100}

    records = [point("full", 256, [1.0, 1.1, 1.2]), point("full", 512, [4.0, 4.1, 4.2]),
               point("bigbird", 256, [1.0, 0.6, 1.4]), point("bigbird", 512, [0.9, 0.8, 1.3])]
    (run / "attention" / "attention.json").write_text(json.dumps({
        "settings": {"dim": 96, "heads": 4, "lengths": [256, 512], "kinds": ["full", "bigbird"], "repeats": 3},
        "machine": {"cpu": "test CPU", "cpu_count": 2, "torch": "2"}, "created": "today", "records": records}))
    (finding,) = live_attention_section(Report("t"), run, None, {})
    assert "full attention's time grows 3.7x" in finding
    assert "bigbird's time changes only within timing noise (its repeats differ by up to 2.33x)" in finding
    assert "median of 3 repeats" in finding
