"""`bioreview label-export`: real pairs to label (a CSV for spreadsheets and a self-contained HTML page that labels
with the keyboard and saves the same CSV), sampled from the stored matches around the matcher's threshold."""

from __future__ import annotations

import csv
import html
import io
import json

EXPORT_COLUMNS = ["pair_id", "text_a", "text_b", "label", "annotator", "similarity", "matcher", "system", "split",
                  "article_id"]


def export_rows(pairs: list[dict], matcher: str) -> list[dict]:
    """The CSV rows: label and annotator empty (to fill), the similarity last (hidden in the HTML page)."""
    return [{"pair_id": f"p{i:04d}", "text_a": p["text_a"], "text_b": p["text_b"], "label": "", "annotator": "",
             "similarity": round(float(p["similarity"]), 4), "matcher": matcher, "system": p.get("system", ""),
             "split": p.get("split", ""), "article_id": p.get("article_id", "")} for i, p in enumerate(pairs)]


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bioreview: same concern? (__TITLE__)</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:1.5rem 0}
.concern{border:1px solid #ccc;border-radius:6px;padding:1rem;min-height:6rem;font-size:1.1rem}
.label-same{background:#e6f6e6}.label-different{background:#fbe9e9}
kbd{border:1px solid #999;border-radius:3px;padding:0 .3rem}#status{color:#555}
</style></head><body>
<h1>Do these two concerns raise the same issue?</h1>
<p>Keys: <kbd>y</kbd> same, <kbd>n</kbd> different, <kbd>s</kbd> skip, <kbd>&larr;</kbd>/<kbd>&rarr;</kbd> move.
Your labels stay in this browser (localStorage) until you press <b>Save CSV</b>, which downloads the same CSV as
<code>__CSV_TEXT__</code> with <code>label</code> (1 same, 0 different) and <code>annotator</code> filled.</p>
<p><label>Annotator: <input id="annotator" placeholder="your name"></label>
<button id="save">Save CSV</button> <span id="status"></span></p>
<div class="pair" id="pair"><div class="concern" id="a"></div><div class="concern" id="b"></div></div>
<p id="where"></p>
<script id="data" type="application/json">__DATA__</script>
<script>
const COLUMNS = __COLUMNS__;
const rows = JSON.parse(document.getElementById('data').textContent);
const KEY = 'bioreview-labels-' + __STORE_KEY__;
const saved = JSON.parse(localStorage.getItem(KEY) || '{}');
for (const r of rows) if (saved[r.pair_id] !== undefined) r.label = saved[r.pair_id];
const who = document.getElementById('annotator');
who.value = localStorage.getItem(KEY + '-annotator') || '';
who.addEventListener('input', () => localStorage.setItem(KEY + '-annotator', who.value));
let i = rows.findIndex(r => r.label === '');
if (i < 0) i = 0;
function show() {
  const r = rows[i];
  document.getElementById('a').textContent = r.text_a;
  document.getElementById('b').textContent = r.text_b;
  const pair = document.getElementById('pair');
  pair.className = 'pair' + (r.label === '1' ? ' label-same' : r.label === '0' ? ' label-different' : '');
  const done = rows.filter(x => x.label !== '').length;
  document.getElementById('where').textContent =
    `pair ${i + 1} of ${rows.length} (${done} labelled)` + (r.label === '' ? '' : r.label === '1' ? ': same' : ': different');
}
function label(value) {
  rows[i].label = value; saved[rows[i].pair_id] = value;
  localStorage.setItem(KEY, JSON.stringify(saved));
  if (i < rows.length - 1) i++;
  show();
}
document.addEventListener('keydown', e => {
  if (e.target === who) return;
  if (e.key === 'y') label('1'); else if (e.key === 'n') label('0');
  else if (e.key === 's' || e.key === 'ArrowRight') { if (i < rows.length - 1) i++; show(); }
  else if (e.key === 'ArrowLeft') { if (i > 0) i--; show(); }
});
function cell(v) { v = String(v ?? ''); return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
document.getElementById('save').addEventListener('click', () => {
  const lines = [COLUMNS.join(',')];
  for (const r of rows) lines.push(COLUMNS.map(c => cell(c === 'annotator' && r.label !== '' ? who.value : r[c])).join(','));
  const blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = __CSV__; a.click();
  document.getElementById('status').textContent = 'saved ' + rows.filter(x => x.label !== '').length + ' labels';
});
show();
</script></body></html>
"""


def to_html(rows: list[dict], csv_name: str, title: str) -> str:
    """A self-contained labelling page (no network): pairs embedded as JSON, similarity left out of what is shown."""
    payload = json.dumps(rows, ensure_ascii=False).replace("</", "<\\/")  # no early </script>
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__CSV_TEXT__", html.escape(csv_name))
            .replace("__CSV__", json.dumps(csv_name))
            .replace("__COLUMNS__", json.dumps(EXPORT_COLUMNS)).replace("__STORE_KEY__", json.dumps(title))
            .replace("__DATA__", payload))
