"""Synthesis speed: training throughput, sampling latency, peak memory.

    python benchmarks/synthesis_speed.py [--model synthesis] [--data DIR] [--threads 2] [--bf16] [--default-malloc] [--step-rows 1,2,4,8,20,40] [--bias 0.75] [--no-check]

Training throughput: forward, loss, backward and an Adam step of the
paper-size network on a batch of 32 lines. With ``--data`` (an IAM-OnDB
folder) the batch is the first 32 training lines of 600-640 points and the
network starts from ``--model``'s weights: a trained window is sharp, and how
far-away characters are handled then matters (see
``writemate.models.synthesis.gaussian``), which random weights and random
lines of 600 points (without ``--data``) hide. Like the trainer, it keeps freed
memory in the process (``writemate.train.keep_freed_memory``) unless
``--default-malloc``.

Sampling uses ``--model`` (bundled by default) from a warm process: one
step of the network for each batch size of ``--step-rows``, with float32 and
bfloat16 products (``step_ms``; see ``writemate.models.synthesis.Affine``); one
30-character line, a hard 20-line page ("Line NN: the quick brown fox jumps")
and 20 lines of ordinary prose, as ``writemate write`` writes them;
with the read-back check as ``writemate write`` does by default (with the
bundled model and a bundled recognizer: ``read_back``), or without it
(``--no-check``). Results go to stdout as JSON, with the
CPU model, thread count and the CPU time the hypervisor took for other machines
meanwhile (``cpu_steal_percent``: compare runs only when it is low).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import torch

from common import cpu_times, machine, peak_memory_mb, steal_percent


def train_batch(model_name: str, data: str | None, batch: int, points: int):
    """The network and one batch (x, target, mask, text, text_mask) to train on."""
    import writemate
    from writemate import ink
    from writemate.models.synthesis import Synthesis, SynthesisConfig, lines_to_tensors
    from writemate.pipelines import encode_lenient, iam_training_split

    torch.manual_seed(0)
    if data is None:
        rng = np.random.default_rng(0)
        offsets = [np.column_stack([rng.normal(size=(points, 2)), rng.random(points) < 0.04]).astype(np.float32) for _ in range(batch)]
        texts = [rng.integers(1, 84, 28).tolist() for _ in range(batch)]
        return Synthesis(SynthesisConfig()), lines_to_tensors(offsets, texts)
    writer = writemate.load(model_name)
    train, _, _ = iam_training_split(data)
    idx = [i for i, o in enumerate(train.offsets) if points <= len(o) <= points + 40 and train.texts[i]][:batch]
    offsets = [ink.normalise(train.offsets[i], writer.stats) for i in idx]
    return writer.model.train(), lines_to_tensors(offsets, [encode_lenient(train.texts[i]) for i in idx])


def train_throughput(model, tensors, steps: int, bf16: bool) -> float:
    from writemate.models import mdn

    x, target, mask, text, text_mask = tensors
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y, _ = model(x, text, text_mask)
        loss = (mdn.nll(y.float(), target) * mask).sum() / mask.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(mask.sum()) / float(np.median(times[1:]))


# Twenty lines of ordinary prose, about 40 characters each: a page without the digits and the
# repeated pangram of the "Line NN" page, which the recognizer rejects often (docs/synthesis.md).
PROSE = """Dear Margaret, thank you for your letter
and for the photographs of the garden. The
roses look wonderful this year, and I was
glad to hear that your brother is well
again. We have had a quiet summer here;
the children spent most of it by the river
and came home every evening covered in mud.
Next month we hope to visit my aunt in the
north, if the weather allows it. She has
not been well since the spring, and I think
a few days of company would do her good.
Please give my regards to your mother and
tell her that the recipe she sent worked
perfectly. I made the cake twice already.
Write again when you have a moment, and
let me know when you plan to come south.
It would be lovely to see you before the
end of the year. With all my love and
best wishes to the whole family,
yours ever, Ruth"""


def sampling_seconds(model_name: str, repeats: int, check: bool, bias: float) -> dict:
    """Median seconds to write a line and two 20-line pages at ``bias``, as ``writemate write`` does (``check``: read back and rewrite)."""
    import writemate

    writer = writemate.load(model_name)
    line = "The quick brown fox jumps over"  # 30 characters
    page = "\n".join(f"Line {i:2d}: the quick brown fox jumps" for i in range(20))
    writer.write("warm up", seed=0, check=check)  # also loads the checking recognizer

    def median_seconds(text: str, times: int) -> float:
        return float(np.median([timed(partial(writer.write, text, seed=s, bias=bias, check=check)) for s in range(times)]))

    return {
        "line_30_chars_s": median_seconds(line, repeats),
        "page_20_lines_s": median_seconds(page, max(1, repeats // 2)),
        "prose_20_lines_s": median_seconds(PROSE, max(1, repeats // 2)),
        "read_back": check and writer.checker is not None,
        "bias": bias,
    }


def step_ms(model_name: str, rows: list[int], steps: int = 200) -> dict:
    """Mean milliseconds of one sampling step (``Stepper.step`` and drawing the point)
    for each number of rows, with products in float32 and, where the CPU has it, bfloat16
    (fewer than ``BF16_MIN_ROWS`` rows padded to it). ``chosen`` is what sampling uses
    for 1 to 3 rows on this machine (``pad_small_rows``)."""
    import writemate
    from writemate import alphabet
    from writemate.data import batching
    from writemate.models import mdn
    from writemate.models.synthesis import Affine, Stepper, pad_small_rows

    model = writemate.load(model_name).model
    precisions = {"float32": False, "bfloat16": True} if Affine.bf16 else {"float32": False}
    result = {}
    for n in rows:
        text, mask = batching.pad([np.asarray(alphabet.encode("the quick brown fox jumps over"))] * n, dtype=torch.long)
        result[n] = {}
        for name, bf16 in precisions.items():
            Affine.bf16 = bf16
            with torch.inference_mode():
                stepper = Stepper(model, text, mask, model.initial_state(n))
                stepper.set_padding(bf16)
                x, rng = np.zeros((n, 3), np.float32), np.random.default_rng(0)
                for i in range(steps + 20):  # the first 20 warm up
                    if i == 20:
                        start = time.perf_counter()
                    y, _ = stepper.step(x)
                    x = mdn.sample(y, 0.75, rng)
            result[n][name] = round((time.perf_counter() - start) / steps * 1000, 2)
        Affine.bf16 = "bfloat16" in precisions
    text, mask = batching.pad([np.asarray(alphabet.encode("chosen"))], dtype=torch.long)
    result["chosen"] = "bfloat16" if pad_small_rows(Stepper(model, text, mask, model.initial_state(1))) else "float32"
    return result


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="synthesis")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--data", help="IAM-OnDB folder: train on real lines from --model's weights")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc's malloc settings alone")
    parser.add_argument("--step-rows", default="1,2,4,8,20,40", help="time one sampling step for these batch sizes")
    parser.add_argument("--bias", type=float, default=0.75, help="sampling bias of the line and pages (writemate write's default)")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True, help="time writing with the read-back check (default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from writemate.train import keep_freed_memory

    result = {"machine": machine(torch.get_num_threads()), "torch": torch.__version__}
    before = cpu_times()
    result["keep_freed_memory"] = not args.default_malloc and keep_freed_memory()
    if not args.skip_training:
        model, tensors = train_batch(args.model, args.data, 32, 600)
        result["train_batch"] = list(tensors[0].shape[:2])
        result["train_points_per_s"] = round(train_throughput(model, tensors, args.train_steps, args.bf16))
    result["step_ms"] = step_ms(args.model, [int(r) for r in args.step_rows.split(",")])
    result.update(sampling_seconds(args.model, args.repeats, check=args.check, bias=args.bias))
    result["peak_memory_mb"] = peak_memory_mb()
    result["cpu_steal_percent"] = steal_percent(before, cpu_times())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
