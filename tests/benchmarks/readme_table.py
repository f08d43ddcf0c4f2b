"""Copy the last benchmark results (tests/benchmarks/results/bench.md, written by `make bench`) into the
README's Benchmarks section, between its two bench.md markers. Run by `make bench` after the benchmarks;
`make bench-readme` runs it alone.

    python tests/benchmarks/readme_table.py [BENCH_MD [README]]
"""

import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
START = "<!-- bench.md: copied from tests/benchmarks/results/bench.md by `make bench`; do not edit by hand -->"
END = "<!-- end of bench.md -->"


def readme_section(bench: str) -> str:
    """bench.md without its title, its headings one level down (they sit under the README's ## Benchmarks)."""
    lines = bench.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    return "\n".join(f"#{line}" if line.startswith("## ") else line for line in lines).strip()


def main(bench_md: Path = ROOT / "tests/benchmarks/results/bench.md", readme: Path = ROOT / "README.md") -> None:
    text = readme.read_text()
    if START not in text or END not in text:
        sys.exit(f"{readme} has no bench.md markers ({START} … {END}) in its Benchmarks section")
    if not bench_md.exists():
        sys.exit(f"{bench_md} does not exist: run `make bench` first")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n\n{readme_section(bench_md.read_text())}\n\n{END}{after}")
    print(f"copied {bench_md} into {readme}")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:3]))
