#!/usr/bin/env python3
"""Renders the summary rows a benchmark script collected: an aligned table on stdout, markdown
to a file. Shared by scripts/bench-replication.sh and scripts/bench-integrity.sh.

    table.py SUMMARY_TSV META_TXT OUT_MD BASELINE_HEAD MEASURED_HEAD CAPTION FOOTNOTE

SUMMARY_TSV has one row per figure: id, label, baseline, measured, ratio, target, result
(PASS, MISS or ERROR). CAPTION titles the table on stdout; FOOTNOTE follows it in the markdown,
then every line of META_TXT as a bullet.
"""
import sys


def main():
    tsv, meta, md, baseline, measured, caption, footnote = sys.argv[1:8]
    head = ["#", "benchmark", baseline, measured, "ratio", "target", "result"]
    with open(tsv, encoding="utf-8") as f:
        rows = [(l.rstrip("\n").split("\t") + [""] * 7)[:7] for l in f if l.strip()]
    w = [max(len(r[i]) for r in [head] + rows) for i in range(7)]
    print(f"\n{caption}")
    print("  ".join(h.ljust(x) for h, x in zip(head, w)))
    print("  ".join("-" * x for x in w))
    for r in rows:
        print("  ".join(c.ljust(x) for c, x in zip(r, w)))
    n = {k: sum(1 for r in rows if r[6] == k) for k in ("PASS", "MISS", "ERROR")}
    print(f"\n{n['PASS']} met, {n['MISS']} missed, {n['ERROR']} not measured")
    with open(md, "w", encoding="utf-8") as f:
        f.write("| " + " | ".join(head) + " |\n|" + "|".join("---" for _ in head) + "|\n")
        for r in rows:
            c = [x.replace("|", "\\|") for x in r]
            if c[6] in ("PASS", "MISS", "ERROR"):
                c[6] = f"**{c[6]}**"
            f.write("| " + " | ".join(c) + " |\n")
        f.write(f"\n{footnote}\n\n")
        with open(meta, encoding="utf-8") as m:
            for l in m:
                if l.strip():
                    f.write(f"- {l.strip()}\n")


if __name__ == "__main__":
    main()
