"""Every study, one after another: each writes under its own folder of --out.

    python experiments/run_all.py --out DIR [--quick] [--figures experiments/figures] [--skip silicon]

``--figures`` also copies each study's figures there: that is how the images in
experiments/README.md are regenerated (``--figures experiments/figures``). ``--skip NAME``
(repeatable) leaves a study out, e.g. ``--skip silicon`` for the slow silicon study.
"""

from __future__ import annotations

import shutil
import sys
import time

import _common as c
import cache_codesign
import cim_tpu
import compiler
import icc
import multichip
import odb_dllm
import silicon
import speculative_decoding

STUDIES = {"compiler": compiler.main, "cim_tpu": cim_tpu.main, "icc": icc.main, "odb_dllm": odb_dllm.main, "cache_codesign": cache_codesign.main,
           "speculative_decoding": speculative_decoding.main, "silicon": silicon.main}


def main(argv: list[str] | None = None) -> int:
    parser = c.parser(__doc__)
    parser.add_argument("--figures", type=c.Path, help="also copy every study's figures (PNG) into this folder")
    parser.add_argument("--skip", action="append", default=[], choices=[*STUDIES, "multichip"],
                        help="leave this study out (repeatable), e.g. --skip silicon")
    args = parser.parse_args(argv)
    for name, study in STUDIES.items():
        if name in args.skip:
            continue
        start = time.perf_counter()
        study(["--out", str(args.out / name), *(["--quick"] if args.quick else [])])
        print(f"\n[{name}: {time.perf_counter() - start:.1f} s]\n", file=sys.stderr)
    if not args.quick and "multichip" not in args.skip:  # the multi-chip table of the multi-chip issue, 1 to 8 chips
        multichip.main(["--out", str(args.out / "multichip")])
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        ran = [name for name in (*STUDIES, "multichip") if name not in args.skip]
        for png in sorted(p for name in ran for p in (args.out / name).glob("*.png")):
            shutil.copyfile(png, args.figures / png.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
