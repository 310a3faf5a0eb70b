"""Choosing a checkpoint in a Hub repo (from its file list) or a run folder (from names).

formats G7 §1.1, §1.2, §10. Nothing here reaches the network: the Hub rule is a pure
function over a repo's file list, and run folders are tmp folders of small dummy files
(the choice reads names only).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swamla_tui.base.errors import CheckpointError
from swamla_tui.checkpoint.selection import (
    Selection,
    choose,
    format_count,
    hub_candidates,
    parse_nb_tok,
    parse_tokens,
    run_candidates,
)
from swamla_tui.checkpoint.sources import hub_choice, resolve, resolve_folder, survey

W = "pytorch_model.bin"

REPO = [
    "README.md",
    "base/checkpoint_tokens_999M_loss_3.5000/" + W,
    "base/checkpoint_tokens_2.00B_loss_3.1000/" + W,
    "base/checkpoint_tokens_1.5M_loss_6.0000/" + W,
    "base/checkpoint_tokens_750K_loss_7.0000/" + W,
    "base/checkpoint_tokens_1.50B_loss_3.0500/" + W,  # best loss, fewer tokens
    "base/checkpoint_tokens_1.50B_loss_3.0500/config.json",
    "base/checkpoint_tokens_9.99B_loss_2.0000/config.json",  # no weights: not a checkpoint
    "instruct/checkpoint_pt2.00B_it50.0M_loss_2.5000/" + W,
    "instruct/checkpoint_pt2.00B_it900K_loss_2.4000/" + W,
    "instruct/checkpoint_pt1.00B_it120.0M_loss_2.6000/" + W,
    "checkpoint_tokens_500M_loss_3.9000/" + W,  # legacy root
    "checkpoint_tokens_3000M_loss_3.8000/" + W,
]


def pick(files: list[str], **kw: object) -> str:
    return Selection(**kw).pick(hub_candidates(files)).path  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.00B", 2e9),
        ("1.5M", 1.5e6),
        ("750K", 7.5e5),
        ("750k", 7.5e5),
        ("3.5b", 3.5e9),
        ("999", 999.0),
        ("1_00B", 1e9),
        ("2T", 2e12),
    ],
)
def test_parse_tokens_numbers_not_strings(text: str, value: float) -> None:
    assert parse_tokens(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "B", "1.5X", "-3M", "1.2.3M", "abc"])
def test_parse_tokens_rejects(bad: str) -> None:
    assert parse_tokens(bad) is None
    with pytest.raises(CheckpointError, match="--nb_tok"):
        parse_nb_tok(bad)


def test_format_count_is_the_trainers() -> None:
    assert [format_count(n) for n in (2e9, 1.5e6, 7.5e5, 999)] == ["2.00B", "1.5M", "750K", "999"]


def test_hub_default_is_base_folder_with_most_tokens() -> None:
    # 2.00B beats 999M and 1.50B (a string sort would pick 999M), and base/ beats the
    # legacy root folder with 3000M tokens
    assert pick(REPO) == "base/checkpoint_tokens_2.00B_loss_3.1000"


def test_hub_candidates_parse_every_layout() -> None:
    by_path = {c.path: c for c in hub_candidates(REPO)}
    assert "base/checkpoint_tokens_9.99B_loss_2.0000" not in by_path
    it = by_path["instruct/checkpoint_pt2.00B_it900K_loss_2.4000"]
    assert (it.kind, it.tokens, it.instruct_tokens, it.loss) == ("instruct", 2e9, 9e5, 2.4)
    assert by_path["checkpoint_tokens_3000M_loss_3.8000"].kind == "root"
    assert by_path["base/checkpoint_tokens_750K_loss_7.0000"].tokens == 7.5e5


def test_instruct_picks_most_instruct_tokens() -> None:
    # 120.0M instruct tokens beats 50.0M although its pretrain count is smaller
    assert pick(REPO, instruct=True) == "instruct/checkpoint_pt1.00B_it120.0M_loss_2.6000"


def test_instruct_falls_back_to_base_then_root() -> None:
    no_instruct = [f for f in REPO if not f.startswith("instruct/")]
    assert pick(no_instruct, instruct=True) == "base/checkpoint_tokens_2.00B_loss_3.1000"
    root_only = [f for f in REPO if f.startswith("checkpoint_")]
    assert pick(root_only, instruct=True) == "checkpoint_tokens_3000M_loss_3.8000"


def test_older_instruct_layout_after_the_new_one() -> None:
    old = "instruct/checkpoint_tokens_200M_loss_2.9000/" + W
    assert pick([*REPO, old], instruct=True).startswith("instruct/checkpoint_pt1.00B")
    assert pick([old, *REPO[1:3]], instruct=True) == old.rsplit("/", 1)[0]


def test_base_rule_uses_root_when_no_base_folder() -> None:
    root = [f for f in REPO if not f.startswith("base/")]
    assert pick(root) == "checkpoint_tokens_3000M_loss_3.8000"


def test_only_instruct_folders_still_open_by_default() -> None:
    only = [f for f in REPO if f.startswith("instruct/")]
    assert pick(only).startswith("instruct/")


def test_best_loss_and_ties() -> None:
    assert pick(REPO, strategy="best_loss") == "base/checkpoint_tokens_1.50B_loss_3.0500"
    tie = [
        "base/checkpoint_tokens_1.0M_loss_3.0000/" + W,
        "base/checkpoint_tokens_2.0M_loss_3.0000/" + W,
    ]
    assert pick(tie, strategy="best_loss") == "base/checkpoint_tokens_2.0M_loss_3.0000"
    assert pick(REPO, strategy="best_loss", instruct=True).endswith("it900K_loss_2.4000")


def test_nb_tok_closest_count() -> None:
    assert pick(REPO, nb_tok=1.4e9) == "base/checkpoint_tokens_1.50B_loss_3.0500"
    assert pick(REPO, nb_tok=1e6) == "base/checkpoint_tokens_750K_loss_7.0000"  # 250K < 500K
    assert pick(REPO, nb_tok=1.3e6) == "base/checkpoint_tokens_1.5M_loss_6.0000"
    assert pick(REPO, nb_tok=1e12) == "base/checkpoint_tokens_2.00B_loss_3.1000"
    assert pick(REPO, nb_tok=4e7, instruct=True).endswith("it50.0M_loss_2.5000")


def test_nb_tok_tie_prefers_more_tokens() -> None:
    files = [
        "base/checkpoint_tokens_1.0M_loss_3.0000/" + W,
        "base/checkpoint_tokens_3.0M_loss_3.0000/" + W,
    ]
    assert pick(files, nb_tok=2e6) == "base/checkpoint_tokens_3.0M_loss_3.0000"


def test_bad_strategy_and_empty() -> None:
    with pytest.raises(CheckpointError, match="latest or best_loss"):
        choose(hub_candidates(REPO), strategy="newest")  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="no checkpoint"):
        choose([])


def test_hub_choice_flat_and_explicit_folder() -> None:
    folder, cands, best = hub_choice("u/r", REPO, None, Selection())
    assert folder == "base/checkpoint_tokens_2.00B_loss_3.1000" and best is not None
    assert len(cands) == 10
    folder, _, best = hub_choice("u/r", REPO, "instruct/checkpoint_pt2.00B_it50.0M_loss_2.5000/")
    assert folder == "instruct/checkpoint_pt2.00B_it50.0M_loss_2.5000"
    assert best is not None and best.is_instruct
    assert hub_choice("u/r", [W, "config.json"])[0] == ""
    with pytest.raises(CheckpointError, match="no checkpoint in this repo"):
        hub_choice("u/r", ["README.md"])


# ----------------------------------------------------------------------------- run folders
RUN = [
    "checkpoint_base_999_00M_step100.pt",
    "checkpoint_base_2_00B_step7629.pt",
    "checkpoint_base_1_50B_step5000.pt",
    "checkpoint_instruct_pt2_00B_it50_0M_step8000.pt",
    "checkpoint_instruct_pt2_00B_it100_0M_step8100.pt",
    "checkpoint_3_00B_step9999.pt",  # between G6 and the typed names
    "checkpoint_12000.pt",  # G6
    "notes.txt",
]


def make_run(tmp_path: Path, names: list[str]) -> Path:
    for n in names:
        (tmp_path / n).write_bytes(b"not read")
    return tmp_path


def test_run_candidates_parse_names() -> None:
    by = {c.path: c for c in run_candidates(RUN)}
    assert "notes.txt" not in by
    assert (
        by["checkpoint_base_2_00B_step7629.pt"].tokens,
        by["checkpoint_base_2_00B_step7629.pt"].step,
    ) == (2e9, 7629)
    it = by["checkpoint_instruct_pt2_00B_it50_0M_step8000.pt"]
    assert (it.kind, it.tokens, it.instruct_tokens) == ("instruct", 2e9, 5e7)
    assert by["checkpoint_3_00B_step9999.pt"].kind == "tokens"
    assert (by["checkpoint_12000.pt"].kind, by["checkpoint_12000.pt"].step) == ("step", 12000)


def test_run_folder_default_and_instruct(tmp_path: Path) -> None:
    run = make_run(tmp_path, RUN)
    res = resolve_folder(run)
    assert res.path == run / "checkpoint_base_2_00B_step7629.pt"
    assert res.chosen is not None and len(res.choices) == 7
    res = resolve_folder(run, select=Selection(instruct=True))
    assert res.path.name == "checkpoint_instruct_pt2_00B_it100_0M_step8100.pt"
    res = resolve(str(run), select=Selection(nb_tok=1.4e9))
    assert res.path.name == "checkpoint_base_1_50B_step5000.pt"


def test_run_folder_older_names_tiers(tmp_path: Path) -> None:
    run = make_run(
        tmp_path,
        ["checkpoint_3_00B_step9999.pt", "checkpoint_500M_step10.pt", "checkpoint_12000.pt"],
    )
    assert resolve_folder(run).path.name == "checkpoint_3_00B_step9999.pt"
    (run / "checkpoint_3_00B_step9999.pt").unlink()
    (run / "checkpoint_500M_step10.pt").unlink()
    (run / "checkpoint_900.pt").write_bytes(b"x")
    (run / "model.pt").write_bytes(b"x")
    assert resolve_folder(run).path.name == "checkpoint_12000.pt"  # steps compared as numbers


def test_run_folder_best_loss_refused(tmp_path: Path) -> None:
    run = make_run(tmp_path, RUN)
    with pytest.raises(CheckpointError, match="carry no loss"):
        resolve_folder(run, select=Selection(strategy="best_loss"))


def test_run_folder_nb_tok_without_counts(tmp_path: Path) -> None:
    run = make_run(tmp_path, ["checkpoint_5.pt", "checkpoint_7.pt"])
    with pytest.raises(CheckpointError, match="no token count"):
        resolve_folder(run, select=Selection(nb_tok=1e6))


def test_run_folder_hf_checkpoint_names_a_file(tmp_path: Path) -> None:
    run = make_run(tmp_path, RUN)
    res = resolve_folder(run, "checkpoint_12000.pt")
    assert res.path == run / "checkpoint_12000.pt"
    with pytest.raises(CheckpointError, match="available: checkpoint_"):
        resolve_folder(run, "checkpoint_1.pt")


def test_local_hub_layout_folder(tmp_path: Path) -> None:
    for f in REPO:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"x")
    res = resolve_folder(tmp_path)
    assert res.path == tmp_path / "base/checkpoint_tokens_2.00B_loss_3.1000" / W
    assert res.folder == tmp_path / "base/checkpoint_tokens_2.00B_loss_3.1000"
    res = resolve_folder(tmp_path, select=Selection(instruct=True, strategy="best_loss"))
    assert res.path.parent.name == "checkpoint_pt2.00B_it900K_loss_2.4000"
    res = resolve_folder(tmp_path, "base/checkpoint_tokens_1.5M_loss_6.0000")
    assert res.path == tmp_path / "base/checkpoint_tokens_1.5M_loss_6.0000" / W
    cands, chosen = survey(str(tmp_path), None, Selection(nb_tok=8e5))
    assert len(cands) == 10 and chosen is not None and chosen.path.endswith("750K_loss_7.0000")


def test_survey_single_file_is_empty(tmp_path: Path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(b"x")
    assert survey(str(f)) == ([], None)


def test_resolve_hub_fetches_only_the_chosen_folder(tmp_path: Path, monkeypatch) -> None:
    """The Hub path end to end with the Hub replaced: list -> choose -> fetch one folder."""
    import huggingface_hub

    from swamla_tui.checkpoint import sources

    fetched: list[list[str]] = []

    def fake_snapshot(repo_id: str, **kw: object) -> str:
        patterns = kw.get("allow_patterns")
        assert isinstance(patterns, list)
        fetched.append(patterns)
        for f in REPO:
            if any(f.startswith(p.rstrip("*")) for p in patterns):
                (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / f).write_bytes(b"x")
        return str(tmp_path)

    monkeypatch.setattr(sources, "offline", lambda: False)
    monkeypatch.setattr(sources, "_list_repo_files", lambda repo, token: list(REPO))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    res = resolve("user/model", select=Selection(instruct=True))
    folder = "instruct/checkpoint_pt1.00B_it120.0M_loss_2.6000"
    assert fetched == [[f"{folder}/*"]]
    assert res.path == tmp_path / folder / W and res.label == f"user/model/{folder}"
    assert res.chosen is not None and res.chosen.path == folder and len(res.choices) == 10
    cands, chosen = survey("user/model", None, Selection(strategy="best_loss"))
    assert chosen is not None and chosen.path == "base/checkpoint_tokens_1.50B_loss_3.0500"
