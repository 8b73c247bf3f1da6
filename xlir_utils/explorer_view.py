"""What notebook 06 shows: a side-by-side comparison of two systems' top-k and the widget around it.

:func:`compare` returns a :class:`Comparison` that renders as HTML in Jupyter (and in a static
HTML export) and as plain text elsewhere; :class:`ExplorerWidget` is the ipywidgets front end
(question box or picker, two system pickers, k, a language filter, a run button) and calls the
same function, so what the widget shows and what the worked examples print are one code path.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .explorer import Explorer, Question
from .languages import lang_colour

__all__ = ["Comparison", "ExplorerWidget", "compare"]

_TEXT_CHARS = 140
# Inline styles (a notebook's HTML export right-aligns and pads table cells otherwise).
_TABLE = "font-size:85%;border-collapse:collapse;width:100%;table-layout:fixed"
_CELL = ' style="text-align:left;vertical-align:top;padding:1px 4px;white-space:normal"'


@dataclass(frozen=True)
class Comparison:
    """Two (or more) systems' answers to one question: the tables, and their HTML and text views."""

    question: Question
    results: pd.DataFrame  # Explorer.explore
    parallel_ranks: pd.DataFrame  # Explorer.parallel_answer_ranks
    mix: pd.DataFrame  # Explorer.language_mix

    @property
    def systems(self) -> list[str]:
        return list(dict.fromkeys(self.results.system))

    def _repr_html_(self) -> str:
        return comparison_html(self)

    def __repr__(self) -> str:
        return comparison_text(self)


def compare(explorer: Explorer, query: str | int, systems: str | Sequence[str], k: int = 10,
            languages: str | Sequence[str] | None = None, query_lang: str | None = None) -> Comparison:
    """Rank the pool for one question under each system (notebook 06 §2-3); ``systems`` and
    ``languages`` as :meth:`Explorer.explore` takes them (one string is one name)."""
    results = explorer.explore(query, systems, k=k, languages=languages, query_lang=query_lang)
    question = results.attrs["question"]
    ranks = explorer.parallel_answer_ranks(query, systems, languages=languages, query_lang=query_lang)
    return Comparison(question, results, ranks, explorer.language_mix(results))


def _is_relevant(value) -> bool:
    return value is not pd.NA and bool(value)


def _chip(lang: str) -> str:
    return (f'<span style="background:{lang_colour(lang)};color:#000;border-radius:3px;padding:0 4px;'
            f'font-family:monospace">{html.escape(lang)}</span>')


def _mix_bar(mix: pd.DataFrame, column: str, height: int) -> str:
    segs = "".join(
        f'<div title="{html.escape(r.lang)} {getattr(r, column):.0%}" style="width:{100 * getattr(r, column):.2f}%;'
        f'background:{lang_colour(r.lang)}"></div>' for r in mix.itertuples() if getattr(r, column) > 0)
    return f'<div style="display:flex;height:{height}px;width:100%;margin:1px 0">{segs}</div>'


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[: _TEXT_CHARS - 1] + "…"


def _column_html(c: Comparison, system: str) -> str:
    rows = c.results[c.results.system == system]
    mix = c.mix[c.mix.system == system]
    k = len(rows)
    body = []
    for r in rows.itertuples():
        mark = "✓" if _is_relevant(r.relevant) else ""
        style = ' style="background:#fff3c4"' if _is_relevant(r.relevant) else ""
        body.append(f"<tr{style}><td{_CELL}>{r.rank}</td><td{_CELL}>{_chip(r.lang)}</td><td{_CELL}>{mark}</td>"
                    f"<td{_CELL}>{html.escape(_short(r.text))}</td><td{_CELL}>{r.score:.3f}</td></tr>")
    legend = " ".join(f"{_chip(r.lang)} {r.top_k_share:.0%}" for r in mix.itertuples() if r.top_k_share > 0)
    return (f'<div style="flex:1;min-width:0;padding:0 6px"><h4 style="margin:4px 0">{html.escape(system)}</h4>'
            f'<div style="font-size:85%">top-{k} language mix (thick) vs the pool (thin): {legend}</div>'
            f"{_mix_bar(mix, 'top_k_share', 14)}{_mix_bar(mix, 'pool_share', 5)}"
            f'<table style="{_TABLE}">'
            '<colgroup><col style="width:3.5em"><col style="width:3em"><col style="width:2.5em"><col>'
            '<col style="width:4em"></colgroup>'
            f"<tr><th{_CELL}>rank</th><th{_CELL}>lang</th><th{_CELL}>rel.</th><th{_CELL}>candidate sentence</th>"
            f"<th{_CELL}>cos</th></tr>{''.join(body)}</table></div>")


def comparison_html(c: Comparison) -> str:
    """The comparison as HTML: one column per system, then the parallel answers' ranks."""
    q = c.question
    where = f"query {html.escape(q.query_id)} of the set" if q.query_id else "a typed question (no relevance labels)"
    head = (f"<div><b>{_chip(q.lang)} {html.escape(q.text)}</b> "
            f'<span style="color:#666;font-size:85%">({where})</span></div>')
    cols = "".join(_column_html(c, s) for s in c.systems)
    out = [head, f'<div style="display:flex;gap:8px">{cols}</div>']
    if len(c.parallel_ranks):
        rows = "".join(
            "<tr>" + f"<td{_CELL}>{_chip(r['lang'])}</td><td{_CELL}>{html.escape(_short(r['text']))}</td>"
            + "".join(f"<td{_CELL}>{'—' if pd.isna(r[s]) else int(r[s])}</td>" for s in c.systems) + "</tr>"
            for _, r in c.parallel_ranks.iterrows())
        heads = "".join(f"<th{_CELL}>{html.escape(s)}</th>" for s in c.systems)
        widths = '<col style="width:3em"><col>' + '<col style="width:11em">' * len(c.systems)
        out.append("<div style='margin-top:6px'><b>Where the parallel answers land</b> (rank in the pool; "
                   "— = outside the language filter)</div>"
                   f"<table style='{_TABLE}'><colgroup>{widths}</colgroup><tr><th{_CELL}>lang</th>"
                   f"<th{_CELL}>answer sentence</th>{heads}</tr>{rows}</table>")
    return "\n".join(out)


def comparison_text(c: Comparison) -> str:
    """The comparison as plain text (a terminal, a text export of the notebook)."""
    q = c.question
    lines = [f"[{q.lang}] {q.text}" + (f"  ({q.query_id})" if q.query_id else "  (typed; no relevance labels)")]
    for s in c.systems:
        rows = c.results[c.results.system == s]
        mix = c.mix[c.mix.system == s]
        share = ", ".join(f"{r.lang} {r.top_k_share:.0%}" for r in mix.itertuples() if r.top_k_share > 0)
        lines.append(f"\n== {s}   top-{len(rows)} languages: {share}")
        for r in rows.itertuples():
            mark = "*" if _is_relevant(r.relevant) else " "
            lines.append(f"{r.rank:>5} {mark} {r.lang:<3} {r.score:.3f}  {_short(r.text)[:90]}")
    if len(c.parallel_ranks):
        lines.append("\nparallel answers, rank per system (* above marks them):")
        lines.append(c.parallel_ranks.drop(columns="text").to_string(index=False))
    return "\n".join(lines)


class ExplorerWidget:
    """The explorer's front end (notebook 06 §5): set the controls, press **Run**; ``view`` is what to display.

    The controls are plain attributes (``question``, ``picker``, ``query_lang``, ``system_a``,
    ``system_b``, ``k``, ``languages``, ``run_button``) and ``output`` an HTML widget, so a test can
    set values and click; in a browser each carries the CSS class ``xlir-<name>`` (``xlir-run-button``,
    ``xlir-output``, ``xlir-view`` for the whole). ``last`` holds the latest :class:`Comparison` (or
    the error shown)."""

    def __init__(self, explorer: Explorer, examples: int = 30, seed: int = 13,
                 systems: str | Sequence[str] | None = None):
        import ipywidgets as w
        import numpy as np

        self.explorer = explorer
        labels = explorer.labels
        first = (explorer.system_labels(systems) if systems else labels[:2]) + labels
        q = explorer.rset.queries
        picks = np.sort(np.random.default_rng(seed).choice(len(q), size=min(examples, len(q)), replace=False))
        options = [("(type a question above)", -1)] + [
            (f"[{q.lang.iat[i]}] {_short(q.text.iat[i])[:80]}", int(i)) for i in picks]
        self.question = w.Text(placeholder="a question in any language", description="question",
                               layout=w.Layout(width="70%"))
        self.picker = w.Dropdown(options=options, value=-1, description="or pick", layout=w.Layout(width="70%"))
        self.query_lang = w.Dropdown(options=[("guess from script", "")] + [(x, x) for x in explorer.languages],
                                     value="", description="language")
        self.system_a = w.Dropdown(options=labels, value=first[0], description="system A")
        self.system_b = w.Dropdown(options=labels, value=first[1] if len(labels) > 1 else first[0],
                                   description="system B")
        self.k = w.IntSlider(value=10, min=1, max=50, description="k")
        self.languages = w.SelectMultiple(options=list(explorer.languages), value=(), rows=6,
                                          description="candidates", tooltip="none selected = every language")
        self.run_button = w.Button(description="Run", button_style="primary")
        self.output = w.HTML()
        self.last: Comparison | str | None = None
        self.run_button.on_click(lambda _button: self.run())
        self.view = w.VBox([self.question, self.picker,
                            w.HBox([self.query_lang, self.k]), w.HBox([self.system_a, self.system_b]),
                            w.HBox([self.languages, self.run_button]), self.output])
        # stable CSS classes (xlir-question, xlir-run-button, ...) for a browser-driven test
        for name in ("view", "question", "picker", "query_lang", "system_a", "system_b", "k", "languages",
                     "run_button", "output"):
            getattr(self, name).add_class("xlir-" + name.replace("_", "-"))

    def run(self) -> Comparison | None:
        """Compare the two chosen systems for the typed or picked question and show it."""
        query: str | int = self.picker.value if self.picker.value >= 0 else self.question.value
        try:
            c = compare(self.explorer, query, list(dict.fromkeys([self.system_a.value, self.system_b.value])),
                        k=self.k.value, languages=list(self.languages.value) or None,
                        query_lang=self.query_lang.value or None)
        except (ValueError, KeyError, IndexError) as exc:
            self.last = str(exc)
            self.output.value = f'<div style="color:#b00">{html.escape(str(exc))}</div>'
            return None
        self.last = c
        self.output.value = comparison_html(c)
        return c
