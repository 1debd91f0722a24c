"""The issues' targets that the README's results sections mark met or missed, one function per benchmark.

Each reads one :class:`~benchmarks.results_format.ResultFile` and returns its :class:`~benchmarks.results_format.Target`
lines; :data:`TARGETS` maps a benchmark name to its function (used by :mod:`benchmarks.make_results`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from benchmarks.results_format import ResultFile, Target, fmt_num, fmt_pct, voxel_pairs

MET, MISSED, UNCHECKED = "✅ met", "❌ missed", "➖ not checked"

def mark(met: Optional[bool]) -> str:
    return "✅" if met else "❌" if met is False else "➖"


def vs_cases(r: ResultFile) -> list[dict[str, Any]]:
    """The summary's cases with both methods measured."""
    cases = (r.summary or {}).get("cases") or []
    return [c for c in cases if isinstance(c, dict) and c.get("splatfacto_points") and c.get("ff3r_points")]




def network_targets(r: ResultFile) -> list[Target]:
    """vggt-1b at 64 views on one H100: forward <= 2.0 s and peak memory <= 40 GB."""
    is_1b = lambda x: str(x.get("config")).replace("_", "-") == "vggt-1b"  # noqa: E731 (files may spell vggt_1b)
    row = next((x for x in r.rows if is_1b(x) and x.get("views") == 64), None)
    if row is None:
        return [Target(None, "vggt-1b, 64 views: no such row")]
    device = str(r.machine.get("device", "?"))
    where = "" if "H100" in device else f" (measured on {device}; the target is for one H100)"
    out = []
    for key, limit, unit in (("seconds", 2.0, "s"), ("peak_gb", 40.0, "GB")):
        v = row.get(key)
        if v is None or row.get("status", "ok") != "ok":
            out.append(Target(False if not where else None, f"vggt-1b, 64 views: {row.get('status', 'no value')} "
                              f"(target ≤ {limit:g} {unit}){where}"))
        else:
            out.append(Target(v <= limit if not where else None,
                              f"vggt-1b, 64 views: {fmt_num(v)} {unit} ≤ {limit:g} {unit}{where}"))
    return out


def voxelize_targets(r: ResultFile) -> list[Target]:
    """>= 50% fewer at 64 views, sub-linear growth 64 -> 256, merge < 5% of forward, purity higher with semantics."""
    pairs = {p["views"]: p for p in voxel_pairs(r)}
    out = []
    p64, p256 = pairs.get(64), pairs.get(256)
    if p64 is None:
        out.append(Target(None, "no 64-view rows"))
    else:
        reds = [(t, p64[f"reduction_{t}"]) for t in ("plain", "sem") if f"reduction_{t}" in p64]
        text = ", ".join(f"{fmt_pct(v)} ({t})" for t, v in reds)
        out.append(Target(all(v >= 0.5 for _, v in reds) if reds else None, f"64 views: {text} fewer Gaussians ≥ 50%"))
        shares = [(t, p64[f"merge_share_{t}"]) for t in ("plain", "sem") if f"merge_share_{t}" in p64]
        text = ", ".join(f"{fmt_pct(v)} ({t})" for t, v in shares) or "no forward time"
        out.append(Target(all(v < 0.05 for _, v in shares) if shares else None,
                          f"64 views: merge is {text} of the forward < 5%"))
    if p64 is None or p256 is None:
        out.append(Target(None, "growth 64 → 256 views: rows missing"))
    else:
        growth = [(t, p256[f"gaussians_out_{t}"] / p64[f"gaussians_out_{t}"]) for t in ("plain", "sem")
                  if p64.get(f"gaussians_out_{t}") and p256.get(f"gaussians_out_{t}") is not None]
        text = ", ".join(f"×{g:.2f} ({t})" for t, g in growth)
        out.append(Target(all(g < 4.0 for _, g in growth) if growth else None,
                          f"64 → 256 views (×4 input): output grows {text}, sub-linear"))
    both = [p for p in pairs.values() if p.get("purity_plain") is not None and p.get("purity_sem") is not None]
    if not both:
        out.append(Target(None, "purity: no plain/semantic pairs"))
    else:
        ok = all(p["purity_sem"] >= p["purity_plain"] for p in both)
        ok = ok and any(p["purity_sem"] > p["purity_plain"] for p in both)
        lo_p, lo_s = min(p["purity_plain"] for p in both), min(p["purity_sem"] for p in both)
        out.append(Target(ok, f"purity with semantic merging ≥ plain at all {len(both)} view counts, higher at some "
                              f"(lowest: {lo_s:.5f} semantic vs {lo_p:.5f} plain)"))
    return out


def multigpu_targets(r: ResultFile) -> list[Target]:
    """The multi-GPU run reaches >= 1.8x the one-GPU steps/s at the same global batch; the two loss curves agree."""
    row = max((x for x in r.rows if x.get("speedup") is not None), key=lambda x: x.get("gpus") or 0, default=None)
    out = []
    if row is None:
        out.append(Target(None, "no multi-GPU row with a speed-up"))
    else:
        on_gpu = row.get("device", r.machine.get("device")) != "cpu"
        where = "" if on_gpu else " (measured with CPU processes; the target is for GPUs)"
        out.append(Target(row["speedup"] >= 1.8 if on_gpu else None,
                          f"{row.get('gpus')} GPUs: {row['speedup']:.2f}× the one-GPU steps/s ≥ 1.8×{where}"))
    s = r.summary or {}
    if "losses_agree" not in s:
        out.append(Target(None, "loss curves: not compared"))
    else:
        out.append(Target(bool(s["losses_agree"]),
                          f"loss curves agree over {s.get('loss_steps', '?')} steps: max relative difference "
                          f"{fmt_num(s.get('loss_max_rel_diff'))} ≤ {fmt_num(s.get('loss_rtol'))} (max |Δ| "
                          f"{fmt_num(s.get('loss_max_abs_diff'))}, mean |Δ| {fmt_num(s.get('loss_mean_abs_diff'))})"))
    return out


def _vs_caveat(r: ResultFile) -> str:
    """Why the targets cannot be judged from this file ("" when they can): they are set for 30k steps on a GPU."""
    budgets = sorted({x.get("budget") for x in r.rows if x.get("method") == "splatfacto" and x.get("budget")})
    if r.quick or any(b != 30_000 for b in budgets):
        return f" (quick run: {fmt_num(budgets)} steps; the targets are for 30k)"
    if str(r.machine.get("device", "cpu")) == "cpu":
        return " (measured on CPU; the targets are for one GPU)"
    return ""


def vs_splatfacto_targets(r: ResultFile) -> list[Target]:
    """From ``summary``: ff3r within 0.5 dB of splatfacto's final PSNR >= 10x sooner than splatfacto's final time at
    64 and 128 views; at every view count ff3r ahead of splatfacto's curve at every ff3r point up to splatfacto's
    final time, a final PSNR >= splatfacto's and no more Gaussians."""
    s, why = r.summary or {}, _vs_caveat(r)
    cases = vs_cases(r)
    if not cases:
        return [Target(None, "no view count with both methods measured (time-to-quality targets need both)")]
    judged = lambda met: None if why or met is None else bool(met)  # noqa: E731
    need, margin = s.get("speedup_target", 10.0), s.get("psnr_margin_db", 0.5)
    out = []
    for views in s.get("speedup_target_views") or (64, 128):
        c = next((c for c in cases if c.get("views") == views), None)
        if c is None:
            out.append(Target(None, f"{views} views: rows missing (target: ff3r within {fmt_num(margin)} dB of "
                                    f"splatfacto's final PSNR ≥ {fmt_num(need)}× sooner)"))
        elif c.get("ff3r_reach_seconds") is None:
            out.append(Target(judged(False), f"{views} views: ff3r never within {fmt_num(margin)} dB of splatfacto's "
                                             f"final {c['splatfacto_final_psnr']:.2f} dB (final "
                                             f"{c['ff3r_final_psnr']:.2f} dB; target ≥ {fmt_num(need)}× sooner){why}"))
        else:
            out.append(Target(judged(c.get("speedup_met")), f"{views} views: ff3r reaches {c['psnr_threshold']:.2f} dB "
                              f"(splatfacto's final {c['splatfacto_final_psnr']:.2f} − {fmt_num(margin)}) at "
                              f"{fmt_num(c['ff3r_reach_seconds'])} s vs splatfacto's {fmt_num(c['splatfacto_final_seconds'])}"
                              f" s: {fmt_num(c['speedup'])}× ≥ {fmt_num(need)}×{why}"))

    def every(key: str, text: str, cell: Callable[[dict[str, Any]], str]) -> Target:
        mets = [c.get(key) for c in cases]
        met = None if any(m is None for m in mets) else all(mets)
        detail = "; ".join(f"{c.get('views')} views {mark(c.get(key))} {cell(c)}" for c in cases)
        return Target(judged(met), f"{text}: {detail}{why}")

    out.append(every("ahead_met", "ff3r's PSNR ≥ splatfacto's (interpolated in time) at every ff3r point up to "
                                  "splatfacto's final time (a finished ff3r run: its final PSNR at splatfacto's later "
                                  "points)",
                     lambda c: "–" if c.get("ahead_worst_margin_db") is None else
                     f"worst {c['ahead_worst_margin_db']:+.2f} dB at {fmt_num(c.get('ahead_worst_seconds'))} s"))
    out.append(every("final_psnr_met", "final PSNR ff3r ≥ splatfacto",
                     lambda c: f"{c['ff3r_final_psnr']:.2f} vs {c['splatfacto_final_psnr']:.2f} dB"))
    out.append(every("final_gaussians_met", "final Gaussians ff3r ≤ splatfacto",
                     lambda c: f"{fmt_num(c.get('ff3r_final_gaussians'))} vs {fmt_num(c.get('splatfacto_final_gaussians'))}"))
    return out


TARGETS: dict[str, Callable[[ResultFile], list[Target]]] = {
    "network": network_targets, "voxelize": voxelize_targets, "multigpu": multigpu_targets,
    "vs_splatfacto": vs_splatfacto_targets}
