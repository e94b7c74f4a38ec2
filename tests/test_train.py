import argparse
import csv
import math
import os
import platform
import signal

import pytest
import torch

from test_synthesis import TINY, random_lines
from writemate import checkpoint
from writemate.models.synthesis import Synthesis, SynthesisTask
from writemate.errors import Interrupted
from writemate import train
from writemate.train import TrainConfig, Trainer, keep_freed_memory, release_freed_memory, stop_on_signals


class Killed(Exception):
    pass


def make_trainer(run_dir, noise="none", epochs=2):
    torch.manual_seed(0)
    offsets, texts = random_lines(8)
    task = SynthesisTask(Synthesis(TINY), (offsets, texts), (offsets[:2], texts[:2]))
    config = TrainConfig(batch_size=3, epochs=epochs, checkpoint_minutes=0, noise=noise, lr=1e-2)
    return Trainer(task, config, run_dir, family="synthesis", model_config={"model": TINY.to_dict()})


@pytest.mark.parametrize("noise", ["none", "fixed", "adaptive"])
def test_resume_after_a_kill_is_exact(tmp_path, noise):
    whole = make_trainer(tmp_path / "whole", noise)
    whole.fit()

    def kill_at_step_4(event):
        if event["event"] == "step" and event["step"] == 4:
            raise Killed

    broken = make_trainer(tmp_path / "broken", noise)
    with pytest.raises(Killed):
        broken.fit(kill_at_step_4)
    resumed = make_trainer(tmp_path / "broken", noise)  # a fresh process would start like this
    events = []
    resumed.fit(events.append)
    assert events[0] == {"event": "start", "resumed": True, "step": 3, "epoch": 1, "lr": 1e-2}
    assert resumed.state.step == whole.state.step == 6
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_run_folder_outputs(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    state = trainer.fit()
    assert state.epoch == 2 and len(state.history) == 2
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert {r["metric"] for r in rows if r["split"] == "val"} == {"val_nll", "val_sse", "val_ended"}
    best = checkpoint.read_config(tmp_path / "run" / "best")
    assert best["family"] == "synthesis" and "val_nll" in best["metrics"]
    model = Synthesis(TINY)
    checkpoint.load_weights(model, tmp_path / "run" / "best")


def test_keep_evaluated_saves_every_validated_model(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    trainer.config.keep_evaluated = True
    trainer.config.eval_every = 2
    trainer.fit()
    kept = sorted((tmp_path / "run" / "evaluated").iterdir(), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in kept] == ["step-2", "step-3", "step-4", "step-6"]  # every 2 steps and each epoch's end
    for folder in kept:
        saved = checkpoint.read_config(folder)
        assert saved["step"] == int(folder.name.split("-")[1]) and "val_nll" in saved["metrics"]
    last = Synthesis(TINY)
    checkpoint.load_weights(last, kept[-1])
    for name, weight in trainer.model.state_dict().items():
        torch.testing.assert_close(last.state_dict()[name], weight, rtol=0, atol=0, msg=name)


def test_refuses_a_checkpoint_of_another_model(tmp_path):
    make_trainer(tmp_path / "run", epochs=1).fit()
    other = make_trainer(tmp_path / "run")
    other.model_config = {"model": {**TINY.to_dict(), "hidden": 99}}
    with pytest.raises(checkpoint.CheckpointError, match="another model"):
        other.fit()


def test_a_resume_may_change_how_the_network_is_trained(tmp_path):
    first = make_trainer(tmp_path / "run", epochs=1)
    first.fit()
    again = make_trainer(tmp_path / "run", epochs=2)
    again.model_config = {**first.model_config, "training": {"input_noise": 0.1}}  # absent from the checkpoint
    assert again.fit().epoch == 2


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam"])
def test_every_optimizer_takes_a_step(tmp_path, name):
    trainer = make_trainer(tmp_path / name, epochs=1)
    trainer.config.optimizer = name
    trainer.optimizer = __import__("writemate.train", fromlist=["make_optimizer"]).make_optimizer(
        name, trainer._params, 1e-2, 0.9
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_step(list(range(3)))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="unknown noise"):
        TrainConfig(noise="loud")
    with pytest.raises(ValueError, match="decay_after"):
        TrainConfig(decay_after=-1)


def test_lr_decay_applies_per_epoch_and_survives_resume(tmp_path):
    trainer = make_trainer(tmp_path / "run", epochs=2)
    trainer.config.lr_decay = 0.5
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    again = make_trainer(tmp_path / "run", epochs=3)
    again.config.lr_decay = 0.5
    again.load_checkpoint()
    assert again.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.25)
    lower = make_trainer(tmp_path / "run", epochs=3)  # resumed with a new learning rate: it applies
    lower.config.lr, lower.config.lr_decay = 1e-3, 0.5
    lower.load_checkpoint()
    assert lower.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    later = make_trainer(tmp_path / "run", epochs=3)  # decay from epoch 1 on: one halving after 2 epochs
    later.config.lr_decay, later.config.decay_after = 0.5, 1
    later.load_checkpoint()
    assert later.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5)


def test_time_limit_validates_before_stopping(tmp_path):
    trainer = make_trainer(tmp_path / "run", epochs=5)
    trainer.config.max_minutes = 1e-9  # stop after the first step
    state = trainer.fit()
    assert state.step == 1 and state.epoch == 0
    assert state.history and state.history[0]["step"] == 1
    assert (tmp_path / "run" / "best" / "config.json").exists()


def test_a_signal_stops_after_the_step_with_a_checkpoint(tmp_path):
    whole = make_trainer(tmp_path / "whole")
    whole.fit()

    def signal_at_step_4(event):
        if event["event"] == "step" and event["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or Ctrl-C would

    stopped = make_trainer(tmp_path / "stopped")
    stopped.config.checkpoint_minutes = 60  # so only the signal saves a checkpoint
    events = []
    with stop_on_signals(), pytest.raises(Interrupted, match="step 4"):
        stopped.fit(lambda e: (events.append(e), signal_at_step_4(e)))
    assert events[-1] == {"event": "stop", "reason": "signal"}
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    resumed = make_trainer(tmp_path / "stopped")
    resumed.fit()
    assert resumed.state.step == whole.state.step == 6
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def resident_mb() -> float:
    return train.resident_bytes() / 2**20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc options are glibc's")
def test_kept_memory_stays_resident_until_released():
    assert keep_freed_memory()
    big = torch.ones(256 * 2**20 // 4)  # 256 MB, touched: from the kept heap now
    before_free = resident_mb()
    del big
    assert resident_mb() > before_free - 64  # freed, but kept by the process
    assert release_freed_memory()
    assert resident_mb() < before_free - 192  # handed back


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc options are glibc's")
def test_kept_memory_is_released_only_above_the_limit():
    assert keep_freed_memory()
    big = torch.ones(256 * 2**20 // 4)
    before_free = resident_mb()
    del big
    assert not train.release_if_above(2**50)  # below the limit: kept for the next step
    assert resident_mb() > before_free - 64
    assert train.release_if_above(0)
    assert resident_mb() < before_free - 192
    assert 0 < train.trim_limit() < os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_a_resumed_run_keeps_its_schedule_optimizer_and_noise_unless_given(tmp_path):
    from writemate import cli

    parser = argparse.ArgumentParser()
    cli._add_train_options(parser)
    run = tmp_path / "run"
    fresh = cli._train_config(parser.parse_args(["--run", str(run)]))
    assert (fresh.lr, fresh.optimizer, fresh.noise, fresh.weight_noise) == (1e-3, "adam", "none", 0.075)
    trainer = make_trainer(run, noise="fixed", epochs=1)
    trainer.config.lr, trainer.config.lr_decay, trainer.config.decay_after = 5e-4, 0.9, 4
    trainer.config.optimizer, trainer.config.weight_noise = "rmsprop", 0.05
    trainer.save_checkpoint()
    kept = cli._train_config(parser.parse_args(["--run", str(run)]))
    assert (kept.lr, kept.lr_decay, kept.decay_after) == (5e-4, 0.9, 4)
    assert (kept.optimizer, kept.noise, kept.weight_noise) == ("rmsprop", "fixed", 0.05)
    assert cli._train_config(parser.parse_args(["--run", str(run), "--lr", "2e-4"])).lr == 2e-4
    ensemble = tmp_path / "ensemble"  # members are runs of their own: member-1, member-2, ...
    trainer.run_dir = ensemble / "member-1"
    trainer.save_checkpoint()
    assert cli._train_config(parser.parse_args(["--run", str(ensemble)])).lr == 5e-4


def test_a_resume_refuses_another_optimizer_or_noise(tmp_path):
    make_trainer(tmp_path / "run", epochs=1).fit()
    other = make_trainer(tmp_path / "run", noise="adaptive")
    with pytest.raises(checkpoint.CheckpointError, match="trained with noise 'none', not 'adaptive'"):
        other.fit()


def test_the_checkpoint_description_travels_with_its_tensors(tmp_path):
    """A kill between the tensors and checkpoint.json must not pair new tensors with an old step."""
    trainer = make_trainer(tmp_path / "run", epochs=1)
    trainer.fit()
    (tmp_path / "run" / "checkpoint.json").write_text("{}")  # as if the copy were stale or cut short
    again = make_trainer(tmp_path / "run", epochs=2)
    assert again.load_checkpoint() and again.state.step == trainer.state.step


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"not tensors")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable safetensors file"):
        make_trainer(run).fit()


def test_bad_training_numbers_are_refused():
    for bad in ({"lr": math.inf}, {"lr": math.nan}, {"momentum": 1.5}, {"noise": "adaptive", "weight_noise": 0.0},
                {"clip_norm": -1.0}):  # fmt: skip
        with pytest.raises(ValueError):
            TrainConfig(**bad)
