"""examples/pytorch_external_trainer.py on a small JSONL written in exactly the format of the demo's batch
exporter (lib/demo/batchExport.ts): multi-call agent sessions whose calls extend each other, a session
that truncates its context (a fork), groups, steps. Checked: --check passes (tree == sample by sample),
and every step's token accounting equals what is computed here from the lines themselves."""
import importlib.util
import io
import json
import os
import tempfile
import unittest

import support

EXAMPLE = os.path.join(support.REPO, "examples", "pytorch_external_trainer.py")
VOCAB = 300  # byte tokens + specials, as the nano policy's tokenizer


def load_example():
    spec = importlib.util.spec_from_file_location("pytorch_external_trainer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported_lines(rnd):
    """Lines as BatchExporter.write emits them: 2 steps x 2 groups x 2 sessions x 2-3 calls."""
    system = [rnd.randrange(256) for _ in range(12)]
    lines = []
    for step in (1, 2):
        for g in range(2):
            task = [rnd.randrange(256) for _ in range(5)]
            for member in range(2):
                session = f"s{step}-{g}-{member}"
                context, advantage = system + task, rnd.gauss(0, 1)
                for call in range(2 + (member == 1)):
                    if call == 2:  # context management: the agent drops the middle of its history (a fork)
                        context = system + context[-6:]
                    completion = [rnd.randrange(256) for _ in range(rnd.randrange(2, 7))]
                    lines.append({
                        "step": step, "group_id": f"g{step}-{g}", "task_id": f"t{g}", "session_id": session,
                        "call_id": f"{session}-c{call}", "call_index": call, "advantage": advantage,
                        "version": step - 1, "prompt_ids": list(context), "completion_ids": completion,
                        "logprobs": [-0.1 - 2 * rnd.random() for _ in completion],
                        "versions": [step - 1] * len(completion)})
                    context = context + completion + [256 + rnd.randrange(40) for _ in range(3)]  # a tool result
    return lines


class ExternalTrainerExample(unittest.TestCase):
    def test_trains_on_exported_batches_and_checks_exactness(self):
        rnd, _ = support.rngs(80)
        lines = exported_lines(rnd)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "batches.jsonl")
            with open(path, "w") as f:
                f.write("".join(json.dumps(line) + "\n" for line in lines))
            printed = io.StringIO()
            summary = load_example().main(["--batches", path, "--check", "--vocab-size", str(VOCAB), "--dim", "32",
                                           "--layers", "1", "--heads", "2", "--kv-heads", "1", "--head-dim", "16",
                                           "--seed", str(support.SEED % 1000)], out=printed)
        check = summary["check"]
        self.assertTrue(check["ok"], support.why(f"tree vs sample by sample: {check}"))
        self.assertEqual([r["step"] for r in summary["steps"]], [1, 2])
        for record in summary["steps"]:
            mine = [line for line in lines if line["step"] == record["step"]]
            sequences = [line["prompt_ids"] + line["completion_ids"] for line in mine]
            prefixes = {tuple(seq[:n]) for seq in sequences for n in range(1, len(seq) + 1)}
            self.assertEqual(record["samples"], len(mine))
            self.assertEqual(record["input_tokens"], sum(map(len, sequences)))
            self.assertEqual(record["tree_tokens"], len(prefixes), "one node per distinct prefix")
            self.assertEqual(record["terms"], sum(len(line["completion_ids"]) for line in mine))
            self.assertGreater(record["reduction"], 1.5, "calls that extend each other share their context")
        text = printed.getvalue()
        self.assertRegex(text, r"check: .*: ok")
        self.assertRegex(text, r"step 2: 10 samples, \d+ tokens -> \d+ in the tree \(\d+\.\d\dx fewer\)")

    def test_a_line_not_in_the_exporter_format_is_named(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "batches.jsonl")
            with open(path, "w") as f:
                f.write(json.dumps({"step": 1, "prompt_ids": [1], "completion_ids": [2, 3], "logprobs": [-1.0],
                                    "advantage": 1.0}) + "\n")
            with self.assertRaisesRegex(ValueError, r"batches.jsonl:1: logprobs has 1 entries for 2 completion tokens"):
                load_example().main(["--batches", path], out=io.StringIO())


if __name__ == "__main__":
    unittest.main()
