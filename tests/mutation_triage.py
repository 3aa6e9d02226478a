"""Lists the surviving mutants of the last `mutmut run`, each with the reason it survives
(tests/MUTATION.md): `python tests/mutation_triage.py` in the repository root, after a run."""

import re
import subprocess
import sys
from collections import defaultdict

# (function name pattern, mutated line pattern, reason); the first match wins.
REASONS = [
    (r"", r"device=None|\.to\(None\)|device=\)|generator\.device if|_gumbel\(.*None\)|_uniform\(.*None\)|"
          r"source = None|device = None|generator=generator, \)|arange\(\w+, \)|device\.type [!=]= \"(XXcudaXX|CUDA|cuda)\"",
     "device: the same on a CPU (the CUDA run of the tests, MAGVIT_TEST_DEVICE=cuda, is where these differ)"),
    (r"", r"dtype=None|astype\(None\)|torch\.tensor\(\w+(, )?\)|dtype=torch\.float32\) \*|, \)\)?\.|np\.(zeros|full)\(.*(None|, )\)",
     "dtype: the default dtype is the one named (float32 tensors, int64 indices), or any numeric panel shows the same"),
    (r"", r"dim=\+1|gather\(\+1|shape\[\+2:\]|sum\(\+1\)|expand\(\+1|sort\(\w+, \)|softmax\(dim=\+1\)",
     "axis: the same axis for tensors of this rank"),
    (r"", r"align_corners=None|mode=\"bilinear\", \)|size=size, \)|bias=None|link_to\(\w+, \d(, )?\)|"
          r"from_ndarray\(rgb, \)|ignore_errors=(None|False)|av\.Codec\(.*, \)|token_hex|metadata_errors=\"REPLACE\"",
     "default: the argument's default is the value removed (or the step cannot fail here)"),
    (r"count__|x_Runner|PredictJob.run|InterpolateJob.run", r"count = (None|1)|start=2\)",
     "count: the job refuses a source without enough frames before it runs"),
    (r"", r"current = \"\"|pending = \"\"|done = None|_current: .* = \"\"|_tmp: .* = \"\"|_audio: .* = \"\"|panels = \"\"",
     "falsy: the placeholder is only tested for truth, and \"\" and None are both false"),
    (r"InpaintJob.layer", r"[xy][01] = |>= 0\)\.any|if x1 <= x0|clamp\(",
     "region: the pasted region only grows (alpha 0 there keeps the input) or the clip cannot act (alpha is in [0, 1])"),
    (r"", r"os\.sep in task|XX/XX", "POSIX: os.sep is \"/\""),
    (r"", r"Fraction\(100[12], 1000\)|Fraction\(1, 1001\)|limit_denominator\(1002\)|Fraction\(2, 1000\)|denominator == (2|1002)|"
          r"denominator == 1 and|/ 91\)|base / 101|components\[1\]|return 9$",
     "rates: the same frame rate, rotation or bit depth for every value a file can hold (NTSC snapping of 1 to 1000 fps, "
     "quarter turns, equal component depths)"),
    (r"masks", r"index <= self\._index|_cache\[1\] != rect|key\.last <= index|<= self\.keyframes|>= 127\.5|>= 0\.5|"
               r"pixels < 0 or|pixels <= 0 and",
     "masks: the same mask (re-reading a frame, an exact threshold no mean of 8-bit values reaches, dilation by 0)"),
]


def survivors() -> list[str]:
    out = subprocess.run(["mutmut", "results"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[0].strip() for line in out.splitlines() if line.strip().endswith(": survived")]


def diff(name: str) -> tuple[str, str]:
    text = subprocess.run(["mutmut", "show", name], capture_output=True, text=True).stdout
    lines = [l for l in text.splitlines() if l[:1] in "+-" and not l.startswith(("+++", "---"))]
    return (" ".join(l[1:].strip() for l in lines if l[0] == "-"), " ".join(l[1:].strip() for l in lines if l[0] == "+"))


def main() -> None:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for name in survivors():
        before, after = diff(name)
        function = name.split("__mutmut_")[0].replace("ǁ", ".")
        reason = next((r for f, p, r in REASONS if re.search(f, function) and re.search(p, after)), "open")
        module = name.split(".")[1]
        groups[(module, reason)].append(f"`{name.split('.', 2)[2]}`: `{before[:120]}` → `{after[:120]}`")
    for (module, reason), items in sorted(groups.items()):
        print(f"\n#### {module}.py: {reason} ({len(items)})\n")
        print("\n".join(f"- {item}" for item in items))


if __name__ == "__main__":
    sys.exit(main())
