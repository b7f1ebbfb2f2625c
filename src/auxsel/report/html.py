"""The report page: one self-contained HTML file (figures embedded as base64 PNG, inline CSS, no
network), readable straight from disk.

Every number shown carries its exact value in `data-value` (Python's repr of the float) next to
the rounded text, so a test or a script can check the page against the artifacts. A small inline
script records on <body> how many figures the browser decoded (`data-figures-loaded`).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from typing import Any

from auxsel.report.tables import power_sentence

VARIANCE_TEXT = {"pooled": "pooled over the candidates", "candidate": "per candidate",
                 "moderated": "per candidate, shrunk toward the pool's by an empirical-Bayes prior"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.kept td{background:#eef7ee}tr.best td{background:#eef7ee;font-weight:600}
.summary{background:#f7f7f7;border-left:4px solid #1b7837;padding:.6em 1em;margin:1em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.muted{color:#666;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}details{margin:.6em 0}
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img.figure"), ok = 0;
  imgs.forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok++; }
    img.setAttribute("data-natural-width", img.naturalWidth);
    img.setAttribute("data-natural-height", img.naturalHeight);
  });
  document.body.setAttribute("data-figures-total", imgs.length);
  document.body.setAttribute("data-figures-loaded", ok);
});
"""


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    png: bytes
    file: str  # path of the same PNG relative to the page


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def num(key: str, value: float | int | None, fmt: str, cls: str = "num") -> str:
    """A table cell showing `value` formatted, with the exact value in data-value."""
    if value is None:
        return f'<td class="{cls}" data-key="{esc(key)}" data-value="none">–</td>'
    if isinstance(value, float) and math.isnan(value):
        text = "n/a"
    elif isinstance(value, float) and math.isinf(value):
        text = "+∞" if value > 0 else "−∞"
    else:
        text = format(value, fmt)
    return f'<td class="{cls}" data-key="{esc(key)}" data-value="{esc(repr(value))}">{esc(text)}</td>'


def figure(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (f'<figure id="{esc(f.id)}"><img class="figure" id="img-{esc(f.id)}" data-file="{esc(f.file)}" alt="{esc(f.title)}" '
            f'src="data:image/png;base64,{data}">'
            f'<figcaption><b>{esc(f.title)}.</b> {esc(f.caption)} <a href="{esc(f.file)}">PNG</a></figcaption></figure>')


def screening_section(sel: dict[str, Any], candidates: list[dict[str, Any]], figures: list[Figure]) -> str:
    rule = sel["rule"]
    metric = sel["metric"]
    conf = rule["confidence"]
    rows = []
    for c in candidates:
        rows.append(
            f'<tr class="{"kept" if c["selected"] else "dropped"}" data-aux="{esc(c["aux"])}">'
            + num("rank", c["rank"], "d")
            + f'<td data-key="aux">{esc(c["aux"])}</td>'
            + num("n_seeds", c["n_seeds"], "d")
            + num("weight_mean", c["weight_mean"], ".3f") + num("weight_std", c["weight_std"], ".3f")
            + num("gain_mean", c["gain_mean"], "+.4f") + num("gain_std", c["gain_std"], ".4f")
            + num("gain_ci_low", c["gain_ci_low"], "+.4f") + num("gain_ci_high", c["gain_ci_high"], "+.4f")
            + num("p_holm", c.get("p_holm"), ".3f")
            + num("null_gain_mean", c.get("null_gain_mean"), "+.4f") + num("null_dev_se", c.get("null_dev_se"), ".4f")
            + num("null_p_holm", c.get("null_p_holm"), ".3f")
            + f'<td data-key="selected" data-value="{str(bool(c["selected"])).lower()}">{"<b>selected</b>" if c["selected"] else "dropped"}</td>'
            + f'<td data-key="reason">{esc(c["reason"])}</td></tr>'
        )
    base = sel.get("baseline_dev") or {}
    base_txt = ", ".join(
        f'seed {esc(s)}: <span class="num" data-seed="{esc(s)}" data-value="{esc(repr(v))}">{v:.4f}</span>' for s, v in base.items()
    )
    top_k = rule.get("top_k")
    null = sel.get("null")
    null_txt = ""
    if null and null.get("gain_mean") is not None:
        low, high = null.get("gain_ci_low"), null.get("gain_ci_high")
        span = f" [{low:+.4f}, {high:+.4f}]" if low is not None and high is not None else ""
        null_txt = (f'<p id="null-candidate">The <b>null candidate</b> (the target\'s own inputs with permuted labels, '
                    f'sized like a typical candidate, screened every seed) gains <span class="num" data-value="{null["gain_mean"]!r}">'
                    f'{null["gain_mean"]:+.4f}</span>{esc(span)} over single-task: what the multitask machinery gives by '
                    f'itself. A candidate is kept only if it also beats the null (<b>gain over null</b>).</p>')
    power_txt = f'<p id="power">{esc(power_sentence(sel.get("power")))}</p>' if sel.get("power") else ""
    return f"""
<h2 id="screening">Screening: which candidates help the target</h2>
<p>Each candidate was trained with the target by αVIL (pairwise, one run per seed). <b>Weight</b>: the candidate's
learned αVIL weight at the end of screening, relative to the target's (held at 1), mean and standard deviation over
seeds. <b>Gain</b>: the target's dev {esc(metric)} with the candidate minus the single-task baseline's with the same
seed (absolute, paired by seed), mean, standard deviation and {conf:.0%} Student-t interval over seeds.</p>
<p>Rule: keep a candidate when a one-sided t test says its gain is above <code>min_gain = {rule['min_gain']:+.4f}</code>
with Holm's correction across the candidates at family-wise level <code>level = {rule.get('level', 0.1):g}</code>
(standard deviation {VARIANCE_TEXT.get(rule.get('variance', 'candidate'), 'per candidate')})
and its weight is above {('<code>min_weight = ' + format(rule['min_weight'], '.3f') + '</code>') if rule.get('min_weight') is not None else "the null candidate's mean weight (<code>min_weight: null</code>)"}; rank kept candidates by gain and keep at most
<code>top_k = {esc(top_k if top_k is not None else 'all')}</code>.</p>
<p class="muted">Single-task baseline dev {esc(metric)}: {base_txt or 'n/a'}.</p>
{null_txt}
{power_txt}
<table id="screening-table">
<thead><tr><th>rank</th><th>candidate</th><th>seeds</th><th>weight mean</th><th>weight std</th><th>gain mean</th><th>gain std</th>
<th>{conf:.0%} interval low</th><th>{conf:.0%} interval high</th><th>Holm p</th><th>gain over null</th><th>dev examples' se (null)</th><th>Holm p (null)</th><th>decision</th><th>why</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{''.join(figure(f) for f in figures)}
"""


def recommendation_section(rec: dict[str, Any], metric: str) -> str:
    """The recommended final and the holdout comparison it rests on (auxsel.recommend)."""
    if rec.get("method") is None:
        return f'<p id="recommendation" data-method="">No recommendation: {esc(rec["reason"])}.</p>'
    body = []
    for r in rec["rows"]:
        ref = r["method"] == rec["reference"]
        body.append(
            f'<tr data-method="{esc(r["method"])}" data-recommended="{str(r["method"] == rec["method"]).lower()}">'
            f'<td data-key="method">{esc(r["method"])}{" (reference)" if ref else ""}{" ✔ recommended" if r["method"] == rec["method"] else ""}</td>'
            + num("mean", r["mean"], ".4f")
            + ("<td></td><td></td><td></td>" if ref else num("diff_mean", r["diff_mean"], "+.4f") + num("diff_sd", r["diff_sd"], ".4f")
               + num("p_holm", r["p_holm"], ".3f")) + "</tr>")
    return f"""
<h3 id="recommendation" data-method="{esc(rec["method"])}">Recommended final: {esc(rec["method"])}</h3>
<p>{esc(rec["reason"])}. The {esc(rec["split"])} is the half of the target's dev split that no final trains on or
chooses its epoch with; a final other than {esc(rec["reference"])} is recommended only when its paired {esc(rec["split"])}
{esc(metric)} beats {esc(rec["reference"])}'s over the seeds (one-sided t test, Holm across the finals at family-wise
level {rec["level"]:g}, the selection's <code>select.level</code>).</p>
<table id="recommend-table">
<thead><tr><th>method</th><th>{esc(rec["split"])} {esc(metric)} mean</th><th>paired difference to {esc(rec["reference"])}</th><th>sd</th><th>Holm p</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
"""


def final_section(metric: str, target: str, rows: list[dict[str, Any]], figures: list[Figure], note: str,
                  rec: dict[str, Any] | None = None) -> str:
    body = []
    for r in rows:
        seeds = ", ".join(
            f'<span data-seed="{esc(s)}" data-value="{esc(repr(v))}">{v:.4f}</span>' for s, v in zip(r["seeds"], r["values"])
        )
        body.append(
            f'<tr class="{"best" if r["best"] else ""}" data-method="{esc(r["method"])}" data-best="{str(r["best"]).lower()}">'
            f'<td data-key="method">{esc(r["method"])}{" ★ best" if r["best"] else ""}</td>'
            + num("mean", r["mean"], ".4f") + num("std", r["std"], ".4f") + num("n_seeds", r["n_seeds"], "d")
            + f'<td data-key="values" class="num">{seeds}</td>'
            + f'<td data-key="auxiliaries">{esc(r["auxiliaries"] or "— (target alone)")}</td></tr>'
        )
    return f"""
<h2 id="final">Final comparison: {esc(target)} test {esc(metric)}</h2>
<p>Each final method trained on the full data, one run per seed; the test split is read here for the first time.
Mean and standard deviation (ddof = 1) over seeds; ★ marks the best mean (ties all marked).</p>
<table id="final-table">
<thead><tr><th>method</th><th>test {esc(metric)} mean</th><th>std</th><th>seeds</th><th>per seed</th><th>auxiliaries</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
{recommendation_section(rec, metric) if rec else ""}
{''.join(figure(f) for f in figures)}
<p class="muted">{esc(note)}</p>
"""


def provenance_section(prov: dict[str, Any], params_hash: str, report: dict[str, Any]) -> str:
    stages = []
    for s in prov["stages"]:
        stages.append(
            f'<tr data-stage="{esc(s["stage"])}"><td data-key="stage">{esc(s["stage"])}</td>' + num("jobs", s["jobs"], "d")
            + num("wall_seconds", s["wall_seconds"], ".1f") + num("max_wall_seconds", s["max_wall_seconds"], ".1f")
            + f'<td data-key="params_hashes"><code>{"</code> <code>".join(esc(h) for h in s["params_hashes"])}</code></td>'
            + f'<td data-key="commits">{"<br>".join(esc(c) for c in s["commits"])}</td>'
            + f'<td data-key="devices">{esc(", ".join(s["devices"]))}</td><td data-key="hosts">{esc(", ".join(s["hosts"]))}</td>'
            + f'<td>{esc(s["start"] or "")} → {esc(s["end"] or "")}</td></tr>'
        )
    pk = []
    for name, versions in sorted(prov["packages"].items()):
        txt = "; ".join(f"{esc(v)}" + (f" ({n} jobs)" if len(versions) > 1 else "") for v, n in versions.items())
        pk.append(f'<tr data-package="{esc(name)}"><td>{esc(name)}</td><td data-key="versions">{txt}</td></tr>')
    jobs = "".join(
        f'<tr><td>{esc(j["where"])}</td><td>{esc(j["stage"])}</td>' + num("wall_seconds", j["wall_seconds"], ".1f")
        + f'<td><code>{esc(j["params_hash"])}</code></td><td>{esc(j["device"])}</td><td>{esc(j["start"])}</td></tr>'
        for j in prov["jobs"]
    )
    git = report.get("git") or {}
    commit = git.get("commit") or "none (not a git checkout)"
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    return f"""
<h2 id="provenance">Provenance</h2>
<p>params.yaml hash <code id="params-hash">{esc(params_hash)}</code>; report built at commit
<code id="report-commit">{esc(commit)}</code>{esc(dirty)} on {esc(report.get('host', '?'))}, {esc(report.get('start', ''))}.
Each stage's params hash covers only the params that stage reads.</p>
<table id="stages-table">
<thead><tr><th>stage</th><th>jobs</th><th>wall time, total (s)</th><th>longest job (s)</th><th>params hash</th><th>git commit</th>
<th>device</th><th>host</th><th>first start → last end</th></tr></thead>
<tbody>{''.join(stages)}</tbody></table>
<table id="packages-table"><thead><tr><th>package</th><th>version</th></tr></thead><tbody>{''.join(pk)}</tbody></table>
<details><summary>every job ({len(prov['jobs'])})</summary>
<table id="jobs-table"><thead><tr><th>result</th><th>stage</th><th>wall time (s)</th><th>params hash</th><th>device</th><th>start</th></tr></thead>
<tbody>{jobs}</tbody></table></details>
"""


def page(sel: dict[str, Any], candidates: list[dict[str, Any]], final_rows: list[dict[str, Any]],
         screen_figs: list[Figure], final_figs: list[Figure], final_note: str,
         prov: dict[str, Any], params_hash: str, report: dict[str, Any], rec: dict[str, Any] | None = None) -> str:
    target, metric = sel["target"], sel["metric"]
    kept = [c for c in candidates if c["selected"]]
    chosen = ", ".join(f"<b>{esc(c['aux'])}</b> (weight {c['weight_mean']:.3f}, dev gain {c['gain_mean']:+.4f})" for c in kept)
    best = [r for r in final_rows if r["best"]]
    best_txt = ", ".join(f"<b>{esc(r['method'])}</b> ({r['mean']:.4f} ± {r['std']:.4f})" for r in best) or "n/a"
    summary = (f"<div class=\"summary\" id=\"summary\"><p>Selected auxiliaries: {chosen or '<b>none</b>: no candidate passed the rule, so the selection-based final runs train the target alone'}.</p>"
               + (f"<p>Recommended final model: <b>{esc(rec['method'])}</b> ({esc(rec['reason'])}).</p>" if rec and rec.get("method") else "")
               + f"<p>Best final method on {esc(target)} test {esc(metric)}: {best_txt}.</p></div>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>auxsel report: {esc(target)}</title><style>{CSS}</style></head>
<body data-target="{esc(target)}" data-metric="{esc(metric)}">
<h1>Auxiliary-task selection for <code>{esc(target)}</code></h1>
<p class="muted">Target metric: {esc(metric)} (fraction, higher is better). Candidates are chosen on the dev split only;
test numbers appear only in the final comparison. Sections: <a href="#screening">screening</a>, <a href="#final">final comparison</a>,
<a href="#provenance">provenance</a>.</p>
{summary}
{screening_section(sel, candidates, screen_figs)}
{final_section(metric, target, final_rows, final_figs, final_note, rec)}
{provenance_section(prov, params_hash, report)}
<script>{SCRIPT}</script>
</body></html>
"""
