"""The report dict (``build.build_report``) written as Markdown and as one self-contained HTML page
(``templates/report.html.jinja``, autoescaped: names, texts and model outputs are shown as they are)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from socialens.evaluation.metrics import NON_OK_COLUMNS
from socialens.evaluation.tables import fmt

TEMPLATE_DIR = Path(__file__).parent / "templates"


def render_html(report: dict[str, Any], figures: dict[str, list[dict[str, str]]]) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "jinja"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.jinja").render(report=report, figures=figures)


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in body]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# socialens report",
        "",
        *[f"**{_md_escape(rec['sentence'])}**\n" for rec in report.get("recommendations", [])],
        f"Generated {report['generated_at']}. Best value per column in **bold** (none where every model "
        "has the same value).",
    ]
    lines += [
        f"Cost per 1k: API models from their records' costs, local models at "
        f"{report['hardware_price_per_hour']} USD/hour of hardware. Figures are in report.html.",
        report["energy_note"],
        "",
    ]
    for name, dataset in report["datasets"].items():
        table = dataset["table"]
        lines += [f"## {name}", ""]
        for rec in dataset.get("recommendations", []):
            lines += [_md_escape(rec["sentence"]), ""]
            lines += [f"- {_md_escape(line)}" for line in [*rec["lines"], rec["weakest"]] if line] + [""]
        body = [
            [
                f"**{c['text']}**" if c["best"] else c["text"]
                for c in (r["cells"][col["key"]] for col in table["columns"])
            ]
            for r in table["rows"]
        ]
        lines += _md_table([c["title"] for c in table["columns"]], body) + [""]
        metrics = dataset["slice_columns"]
        for key, items in dataset["slices"].items():
            lines += [f"### By {key}", ""]
            lines += _md_table(
                [key, "model", "n", *[m["title"] for m in metrics], *NON_OK_COLUMNS],
                [
                    [
                        i["value"],
                        i["model"],
                        str(i["n"]),
                        *[fmt(i.get(m["key"])) for m in metrics],
                        *[fmt(i[f"{s}_rate"]) for s in NON_OK_COLUMNS],
                    ]
                    for i in items
                ],
            ) + [""]
        for task_table in dataset["task_tables"]:
            lines += [f"### {task_table['title']} ({task_table['model']}, seed {task_table['seed']})", ""]
            lines += _md_table(task_table["headers"], task_table["rows"]) + [""]
        for browser in dataset["error_browser"]:
            lines += [f"### Worst-confused examples ({browser['run']})", ""]
            if browser["left_out"]:
                lines += [
                    "Left out (collapsed: they get every text of the other classes wrong alike): "
                    + "; ".join(item["text"] for item in browser["left_out"])
                    + ".",
                    "",
                ]
            for cls in browser["classes"]:
                lines += [
                    f"#### gold = {cls['label']} ({cls['n_wrong_examples']} examples wrong at least once)",
                    "",
                ]
                for ex in cls["examples"]:
                    preds = "; ".join(
                        f"{m}: {p['predicted'] if p['status'] == 'ok' else p['status']}"
                        for m, p in ex["predictions"].items()
                    )
                    text = _md_escape(ex["text"])[:300] if ex["text"] is not None else "(text not available)"
                    lines.append(f"- `{ex['id']}` wrong {ex['wrong']}/{ex['total']}: {preds}. {text}")
                lines.append("")
    lines += ["## Reproduce", ""]
    env = report["environment"]
    lines.append(
        f"Python {env['python']} on {env['platform']}; "
        + ", ".join(f"{k} {v or 'not installed'}" for k, v in env["packages"].items())
    )
    for run in report["runs"]:
        lines += [
            "",
            f"### Run {run['name']} ({run['path']})",
            "",
            f"git commit: {run['git_commit'] or 'unknown'}",
            "",
        ]
        for ds, info in run["datasets"].items():
            lines.append(
                f"- {ds}: test.jsonl sha256 {info['test_jsonl_sha256'] or '-'}, split.json sha256 "
                f"{info['split_json_sha256'] or '-'}"
            )
        lines += ["", "```yaml", run["experiment_yaml"].rstrip(), "```"]
    return "\n".join(lines) + "\n"
