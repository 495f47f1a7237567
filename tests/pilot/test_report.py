"""The HTML report from constructed results: content, validity, self-containment."""

from html.parser import HTMLParser

import numpy as np

from synth2real.pilot.figures import bar_chart, data_uri
from synth2real.pilot.report import ordered_summary, render_report
from synth2real.pilot.results import results_csv
from tests.pilot.fakes import fake_results, plan_means

METHODS = ["reinhard", "reinhard-cw"]
MEANS = plan_means(
    METHODS,
    {("source-only", None): 0.30, ("real-only", None): 0.35, ("source+real", None): 0.40},
    {
        "reinhard": {"translated": 0.33, "translated+real": 0.46},
        "reinhard-cw": {"translated": 0.20, "translated+real": 0.30},
    },
)


class Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.scripts, self.stack_errors = [], [], 0, []
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if tag == "link" or (tag == "script" and "src" in a):
            self.links.append(a)
        if tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        self.text.append(data)


def images():
    rng = np.random.default_rng(0)
    uri = lambda: data_uri(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))  # noqa: E731
    cols = ["synthetic", "label", *METHODS, "a reference"]
    return {
        "columns": cols,
        "rows": [[uri() for _ in cols] for _ in range(2)],
        "names": ["a", "b"],
        "references": [("r0", uri())],
    }


def test_report_lists_every_setting_and_method_and_says_the_verdict():
    res = fake_results(MEANS, METHODS)
    html = render_report(res, images())
    p = Collector()
    p.feed(html)
    text = " ".join(p.text)
    assert "Use reinhard." in text
    assert "hurts" in text and "reinhard-cw" in text
    for s in ("source-only", "real-only", "source+real", "translated", "translated+real"):
        assert s in text
    # every (setting, method) pair appears as a chart row label
    for r in ordered_summary(res):
        label = r["setting"] if r["method"] is None else f"{r['setting']} [{r['method']}]"
        assert f">{label}</text>" in html
    assert "cracks IoU" in text and "mIoU" in text
    assert "Test CPU" in text  # machine stated
    assert "iterations=10" in text  # budget stated
    assert "3 seeds ·" in text and "over 3 seeds on" in text


def test_one_seed_is_said_in_the_singular_and_flagged():
    text = " ".join(render_report(fake_results(MEANS, METHODS, seeds=(0,)), None).split())
    assert "1 seed ·" in text and "over 1 seed on" in text
    assert "Only one seed per setting" in text


def test_report_is_self_contained():
    html = render_report(fake_results(MEANS, METHODS), images())
    p = Collector()
    p.feed(html)
    assert len(p.imgs) == 2 * 5 + 1
    assert all(i["src"].startswith("data:image/") for i in p.imgs)
    assert p.links == [] and p.scripts == 0
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html


def test_quick_budget_warns_and_partial_is_flagged():
    res = fake_results(MEANS, METHODS, budget_name="quick")
    res["partial"] = True
    html = render_report(res, None)
    assert "Quick budget: a first look" in html
    assert "some runs are missing" in html


def test_bar_chart_whiskers_span_min_max():
    res = fake_results(MEANS, METHODS, jitter=0.05)
    svg = bar_chart(ordered_summary(res), "iou:cracks", "t")
    assert svg.count("<rect") == 7  # 3 baselines + 2 x 2 methods
    assert svg.count("<circle") == 7 * 3  # one dot per seed


def test_csv_has_one_row_per_run_with_class_columns():
    res = fake_results(MEANS, METHODS)
    text = results_csv(res["runs"], res["classes"], res["machine"])
    lines = text.strip().splitlines()
    assert len(lines) == 1 + 7 * 3
    head = lines[0].split(",")
    assert {"iou_background", "iou_cracks", "miou", "seed", "budget", "cpu"} <= set(head)
