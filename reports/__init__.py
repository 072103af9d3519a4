"""Reports read results folders only (never live servers).

Modules: `results` (the summary.json schema), `metrics` (named metrics), `hdr` (latency
distributions from the HDR histograms), `stats` (noise tests, numpy only), `thresholds` and
`compare` (the regression gate), `slo` and `capacity` (the capacity answer), `curves` and
`sweeps` (sweep.json), `plots` (matplotlib figures), `document`, `render` and `sweep_report`
(Markdown + self-contained HTML), `baseline` (named baselines), `cli` (the commands).
"""
