"""Lists the surviving mutants of the last `mutmut run`, each with the reason it survives
(tests/MUTATION.md): `python tests/mutation_triage.py` in the repository root, after a run.
A survivor no rule explains is listed as "open": kill it with a test or add its reason here."""

import re
import subprocess
import sys
from collections import defaultdict

DEVICE = "device: the same on a CPU (the CUDA run of the tests, MAGVIT_TEST_DEVICE=cuda, is where these differ)"
DTYPE = ("dtype: the dtype dropped is the default the call gets anyway (float32 tensors, int64 from integers), the "
         "value is converted right after, or it is a 0-dim zero, which does not change the dtype torch.where returns")
AXIS = "axis: the same axis, or the same broadcast, for tensors of this rank"
DEFAULT = "default: the argument dropped or changed is the value the callee uses by default"
MESSAGE = "message: the argument only names the file or setting in an error message (messages are not mutated)"
CHECK = ("check: the call only validates the schedule name, or its schedule (cosine) ignores the token count; any "
         "progress or count gives the same answer")
COUNT = ("count: no frame and one frame meet the same refusal (interpolation needs two); a variable-rate clip has "
         "two frames or more")
INDEX = ("index: needs a file whose index disagrees with its stated duration by one frame or more (an edit list "
         "that trims frames); the files the tests can make agree, and their stated duration is frames / average rate")
PANELS = "panels: the preview's panels all have the frame's size"
KNOWN = "known: the frame being filled is never a known one (known frames are skipped just before)"
FALSY = "falsy: the value is only tested for truth, and both values are false (or the return value is unused)"
EDGE = ("edge: differs only where a float lands exactly on a threshold (a uniform draw equal to the dropout rate, "
        "a resampled alpha of exactly 1e-4, a 1 % rate difference, an audio packet ending exactly at the cut)")
NOOP = ("no-op: where the changed condition lets more through, the result is the same (a weight of 0 blends to the "
        "input exactly, a blend of [0, 1] values needs no clamp, the count is capped again after, an empty region "
        "draws nothing, a window kept one step longer covers no later frame)")
INTEGER = "integer: no integer value tells the two comparisons apart"
ROOT = "root: os.access grants everything to root, which runs these tests (the read-only-folder test skips as root)"
RATES = ("rates: the same frame rate, rotation or bit depth for every value a file can hold (NTSC snapping, quarter "
         "turns, equal component depths, rate bounds no stream reaches)")
MASKS = ("masks: the same mask (re-reading a frame, an exact threshold no mean of 8-bit values reaches, dilation "
         "by 0)")
REGION = ("region: the pasted region only grows (alpha 0 there keeps the input) or the clip cannot act (alpha is "
          "in [0, 1])")
SQUARE = "square: the cells of every layout are square (height = width), so either index gives the same size"
SMALL = "small: differs only for cells under 4 px (every tokenizer downsamples by 4 or more)"
CODEC = ("codec: FFmpeg does the same by itself (the encoder converts to its pixel format with these defaults and "
         "pads an odd row by the edge, the muxer times video by pts, a PNG is one packet, the format follows the "
         "temporary file's suffix, any unique hidden name serves as the temporary file, a filter graph's buffer "
         "source times frames by the time base it was made with)")
AUDIO = ("audio: the source files have no packet without pts, pts equals dts for audio, demux() ends with an empty "
         "packet and the end is reached before the last call, and the decoders hold no frames at the flush; one "
         "sample of shift is 21 µs")
PAD = ("pad: under the filter's 32 px, padding more rows or columns than needed, or with zeros instead of the edge, "
       "gives the same frames once cropped back (a texture moving in a 24 x 24 frame: the same frames either way)")
UNUSED = ("unused: the value is not read on this path (VideoWriter.__exit__ reads only the exception type, "
          "catch_warnings.__exit__ ignores its arguments, a composite layer's window and weight, the alpha when no "
          "preview asks for it, a pair's input frame index only compared with the pair, one batch of prediction)")

# (function name pattern, mutated line pattern, reason); the first match wins.
REASONS = [
    (r"", r"device=None|\.to\(None\)|device=\)|generator\.device if|_gumbel\(.*None\)|_uniform\(.*None\)|"
          r"source = None|device = None|generator=generator, \)|arange\(\w+, \)|device\.type [!=]= \"(XXcudaXX|CUDA|cuda)\"|"
          r"make_generator\(None|torch\.autocast\(device\.type, enabled",
     DEVICE),
    (r"", r"dtype=None|astype\(None\)|torch\.tensor\(\w+(, )?\)|torch\.tensor\(f - a, \)|torch\.tensor\(b - a, \)|"
          r"dtype=torch\.float32\) \*|, \)\)?\.|np\.(zeros|full)\(.*(None|, )\)|uncond_token, \)|"
          r"torch\.tensor\(float\(num_tokens\), \)|self\.clip\[1:\], \)|torch\.zeros\(\(\), device",
     DTYPE),
    (r"", r"dim=\+1|gather\(\+1|shape\[\+2:\]|sum\(\+1\)|expand\(\+1|sort\(\w+, \)|softmax\(dim=\+1\)|transpose\(-1, \+2\)|"
          r"\.view\(1, (height|length), |\.view\(length, 1, width\)|torch\.zeros\(1, 1, 1, dtype|per_frame\.view\(1, -1, 1, 1\)|"
          r"view\(-1, 1, 1\)\)\.sum|expand\((2, 1|1, 2), length|levels\[-1\]\[1\]|dim=None\)\.all",
     AXIS),
    (r"", r"align_corners=None|mode=\"bilinear\", \)|antialias=True, \)|size=size, \)|bias=None|link_to\(\w+, \d(, )?\)|"
          r"from_ndarray\(rgb, \)|ignore_errors=(None|False)|rmtree\(self\._tmp, \)|av\.Codec\(.*, \)|"
          r"metadata_errors=\"REPLACE\"|stride=None|stride=kernel, \)|kernel, ceil_mode|mode=\"nearest\"|"
          r"\(2 if self\.temporal else 1, 2, 2\), \)",
     DEFAULT),
    (r"", r"_first_frame\(None|_stream_fps\(None|_check_frames\(.*(None|XX|COND)", MESSAGE),
    (r"check|x_decode$|sample_mask_ratio", r"mask_ratio\(", CHECK),
    (r"_pad_interpolate", r"k <= f\]|k >= f\]", KNOWN),
    (r"InterpolateJob.run|Source._cut", r"count = 1$|total = max\(2, ", COUNT),
    (r"_side_by_side", r"panels\[1\]\.shape", PANELS),
    (r"x_probe$", r"frames_in_index|duration=duration if", INDEX),
    (r"", r"lambda: None|reencode=None|retried = None|self\.size: .* = \"\"|lambda n: 0|current = \"\"|pending = \"\"|"
          r"done = None|_current: .* = \"\"|_tmp: .* = \"\"|_audio: .* = \"\"|panels = \"\"|self\.done = False$",
     FALSY),
    (r"", r">= self\.dropout|> self\.dropout|alpha <= 1e-4|>= base / 100|time \+ (2 \* )?duration >(=)? [01]|"
          r"time > limit|self\.dropout >= 0", EDGE),
    (r"", r"w >= 0, v|weight >= 0, pixels|clamp_\((None, 255|0, None|0, 256)\)|2\.0\)$|min\(max\(float\(ratio\), 1e-6\), 2\.0\)|"
          r"if x1 < x0|w\.end >= emitted|if total < window|self\.window / 2", NOOP),
    (r"_check_frames", r"not 1 < 2 \* frames", INTEGER),
    (r"_check_target", r"os\.W_OK & os\.X_OK", ROOT),
    (r"", r"Fraction\(100[12], 1000\)|Fraction\(1, 1001\)|limit_denominator\(1002\)|Fraction\(2, 1000\)|denominator == (2|1002)|"
          r"denominator == 1 and|/ 91\)|base / 101|components\[1\]|return 9$|Fraction\(1001, 1001\)|low < rate|rate < high|"
          r"guessed_rate and stream\.base_rate",
     RATES),
    (r"masks", r"index <= self\._index|_cache\[1\] != rect|key\.last <= index|<= self\.keyframes|>= 127\.5|>= 0\.5|"
               r"pixels < 0 or|pixels <= 0 and",
     MASKS),
    (r"InpaintJob.layer", r"[xy][01] = |>= 0\)\.any|if x1 <= x0|clamp\(", REGION),
    (r"", r"self\.cell\[1\] \* scale|round\(self\.cell\[2\] \* scale", SQUARE),
    (r"", r"max\(2, self\.cell\[2\] // 2\)", SMALL),
    (r"VideoWriter|_write_png|_encode", r"reformat\(|frame\.duration, frame\.time_base = self\.frames_written, 2|"
                                        r"time_base = (1 \* |2 / )self\.fps|b\"XXXX\"\.join|token = None|token_hex\(|tmp\{|muxer = None|"
                                        r"format=None|\"w\", \)|self\._pad\[1\]\), \(0, self\._pad\[1\]\)",
     CODEC),
    (r"x_motion_interpolate$", r"frame\.time_base = pts, Fraction\(2\)", CODEC),
    (r"x_motion_interpolate$", r"grow = |np\.pad\(", PAD),
    (r"_AudioCarrier", r"", AUDIO),
    (r"", r"os\.sep in task|XX/XX", "POSIX: os.sep is \"/\""),
    (r"Output.__exit__|Output.__enter__|ClipJob.compose|ClipJob.layers|InterpolateJob.run|PredictJob.run|"
     r"ClipJob.geometry|_read_image|_to_rgb|x_probe$", r"__exit__\(|simplefilter\(\"always\", \)|alpha_full = .* or True|"
                                                        r"_Pick\(|count \+ 1|Runner\(model, options, (None|2)|frame\.shape\[:3\]|"
                                                        r"container\.streams\.video\[0\]|None\)$|turns\) or True|"
                                                        r"duration=duration if \(duration\) and False",
     UNUSED),
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
        if before.count("device=") > after.count("device="):  # a device argument dropped
            reason = DEVICE
        else:
            reason = next((r for f, p, r in REASONS if re.search(f, function) and re.search(p, after)), "open")
        module = name.split(".")[1]
        groups[(module, reason)].append(f"`{name.split('.', 2)[2]}`: `{before[:120]}` → `{after[:120]}`")
    for (module, reason), items in sorted(groups.items()):
        print(f"\n#### {module}.py: {reason} ({len(items)})\n")
        print("\n".join(f"- {item}" for item in items))


if __name__ == "__main__":
    sys.exit(main())
