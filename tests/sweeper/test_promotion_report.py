from __future__ import annotations

from sweeper.decision import Criterion, Verdict
from sweeper.promotion_report import attention_plots, criteria_table, render_html, render_markdown
from tests.conftest import TINY_CONTEXT
from tests.trainables.test_models import inputs
from trainables.models import create_model


def test_one_document_renders_as_markdown_and_html():
    verdict = Verdict("promote", (Criterion("latency budget", True, "p95 3.0 ms", "<= 70 ms", "keep_experimental"),), "base", None)
    blocks = [("heading", "Criteria"), ("table", criteria_table(verdict)), ("text", "a < b"), ("figure", "plot.png")]
    markdown = render_markdown("Title", blocks)
    assert "| latency budget | p95 3.0 ms | <= 70 ms | pass | keep_experimental |" in markdown and "![plot.png](plot.png)" in markdown
    html = render_html("Title", blocks)
    assert "<td>latency budget</td>" in html and "a &lt; b" in html and "<img src='plot.png'" in html


def test_attention_heat_maps_for_every_attention_module_and_only_real_tokens():
    model = create_model("localization", "heimdall_net_pro", TINY_CONTEXT, heads=4)
    batch = list(inputs(3, 6))
    batch[4][1, 3:] = False
    figures = attention_plots(model, batch)
    assert list(figures) == ["attention_aggregator_attention.png"]
    titles = [axes.get_title() for axes in figures["attention_aggregator_attention.png"].axes if axes.get_title()]
    assert titles == ["sample 0: 6 tokens", "sample 1: 3 tokens", "sample 2: 6 tokens"]
    assert attention_plots(create_model("localization", "heimdall_net", TINY_CONTEXT), batch) == {}

