#!/usr/bin/env python
"""Train the tiny bundled demo model (`swamla_tui/demo/`) from text available offline.

Everything here runs on a laptop CPU with no network:

1. Corpus: Python's bundled help texts (`pydoc_data.topics.topics`, split into sections),
   docstrings of builtins and a few stdlib modules, and synthetic chat transcripts in the
   app's chat format ("You: <question>\\nAssistant: <answer>\\n") whose answers are the
   first sentences of those same texts, plus a handful of hand-written answers.
2. A byte-level BPE tokenizer (`tokenizers`), saved with `PreTrainedTokenizerFast` so that
   `transformers.AutoTokenizer.from_pretrained(<demo folder>)` works offline.
3. A small SWA-MLA model built with the project's own `SWAMLA` (SWA, SWA, MLA cycle),
   trained with AdamW and a cosine schedule, evaluated on a held-out split.
4. A *training checkpoint* in the original format (formats v1 §1): `{"model", "optimizer", "step",
   "config", "val_loss"}`, weights in bfloat16, plus the float32 `attn.mask` buffer of every
   SWA layer (its shape tells block_size, as in the original checkpoints).

Usage (from the repository root):

    python scripts/train_demo.py                 # writes swamla_tui/demo/
    python scripts/train_demo.py --steps 50 --out /tmp/demo   # quick smoke run

The run is reproducible for a given seed, Python version (the corpus is read from the
running interpreter's docs) and torch build.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import inspect
import json
import math
import random
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from swamla_tui.model import SWAMLA, ModelConfig, infer_config  # noqa: E402

EOS = "<|endoftext|>"
TOKENIZER_NAME = "swamla-demo"
CHECKPOINT_NAME = "checkpoint_demo.pt"

# --------------------------------------------------------------------------- corpus

_UNDERLINE = re.compile(r"([*=\-~^])\1{2,}")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“(])")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(-+>.*)?$|-+>")

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a small assistant that knows the Python documentation.",
    "The following is a conversation with an assistant about Python.",
]

# Hand-written answers: the showcase questions a newcomer is likely to type first.
HANDWRITTEN: list[tuple[list[str], str]] = [
    (
        ["Hello!", "Hi", "Hello", "Hi there!", "Good morning."],
        "Hello! I am a tiny demo model trained on Python's documentation. Ask me about Python.",
    ),
    (
        ["Who are you?", "What are you?", "What is your name?"],
        "I am the SWA-MLA demo model: a very small language model bundled with swamla-tui. "
        "I was trained for a few minutes on Python's help texts, so my answers are short and "
        "often wrong.",
    ),
    (
        ["What can you do?", "How can you help me?"],
        "I can answer simple questions about Python, such as what a list is or what the with "
        "statement does. For real answers, load a real checkpoint.",
    ),
    (
        ["Thank you!", "Thanks.", "Thanks a lot!"],
        "You are welcome! Ask me another question about Python.",
    ),
    (
        ["Goodbye.", "Bye!"],
        "Goodbye! Press Ctrl+Q to quit.",
    ),
    (
        ["What is Python?", "Tell me about Python."],
        "Python is a programming language. It has dynamic typing, automatic memory "
        "management and a large standard library.",
    ),
    (
        ["What is a list?", "What are lists?", "Tell me about lists."],
        "A list is a mutable sequence. You write it with square brackets, like [1, 2, 3], "
        "and you can append, remove and sort its items.",
    ),
    (
        ["What is a tuple?", "What are tuples?"],
        "A tuple is an immutable sequence. You write it with parentheses, like (1, 2), and "
        "it cannot be changed after it is created.",
    ),
    (
        ["What is a dictionary?", "What is a dict?", "What are dictionaries?"],
        "A dictionary maps keys to values. You write it with braces, like {'a': 1}, and look "
        "up a value with d[key].",
    ),
    (
        ["What is a set?", "What are sets?"],
        "A set is an unordered collection of distinct hashable objects. It supports "
        "membership tests, union, intersection and difference.",
    ),
    (
        ["What is a string?", "What is a str?", "What are strings?"],
        "A string is an immutable sequence of Unicode characters. You write it in quotes, "
        "like 'hello'.",
    ),
    (
        ["What is an integer?", "What is an int?"],
        "An integer is a whole number, like 42. Python integers have unlimited precision.",
    ),
    (
        ["What is a float?", "What is a floating point number?"],
        "A float is a floating point number, like 3.14. It is usually a double precision number.",
    ),
    (
        ["What is a function?", "How do I define a function?"],
        "A function is a named block of code that you can call. You define it with the def "
        "statement, like def add(a, b): return a + b.",
    ),
    (
        ["What is a class?", "How do I define a class?"],
        "A class is a template for objects. You define it with the class statement, and its "
        "instances get the attributes and methods it defines.",
    ),
    (
        ["What is a module?", "How do I import a module?"],
        "A module is a file of Python code. You use it with the import statement, like "
        "import math.",
    ),
    (
        ["What is a loop?", "How do I write a loop?"],
        "A loop repeats a block of code. The for statement loops over the items of an "
        "iterable, and the while statement loops while a condition is true.",
    ),
    (
        ["What is an exception?", "How do I handle errors?"],
        "An exception signals an error. You raise it with the raise statement and handle it "
        "with a try statement and an except clause.",
    ),
    (
        ["What is a generator?", "What does yield do?"],
        "A generator is a function that uses yield. Each call to next() runs it until the "
        "next yield and returns the value it yields.",
    ),
    (
        ["What is a lambda?", "What is a lambda expression?"],
        "A lambda is a small anonymous function written as an expression, like lambda x: x + 1.",
    ),
    (
        ["What is a decorator?"],
        "A decorator is a function that takes a function and returns a new one. You apply it "
        "with @name on the line before def.",
    ),
    (
        ["What is a variable?"],
        "A variable is a name bound to an object. The assignment x = 1 binds the name x to "
        "the integer 1.",
    ),
]

_TYPE_NAMES = [
    "bool",
    "bytearray",
    "bytes",
    "complex",
    "dict",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "int",
    "list",
    "map",
    "memoryview",
    "object",
    "property",
    "range",
    "reversed",
    "set",
    "slice",
    "str",
    "tuple",
    "type",
    "zip",
]
_METHOD_TYPES = ["str", "list", "dict", "set", "bytes", "int", "float", "tuple"]
_MODULES = [
    "bisect",
    "collections",
    "copy",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "shutil",
    "statistics",
    "string",
    "textwrap",
]


_SKIP_PARAGRAPHS = (
    "New in version",
    "Changed in version",
    "Deprecated since",
    "See also",
    "Note:",
    "Note that",
    "Thus,",
)
_NOT_VERBS = {"the", "a", "an", "if", "in", "for", "with", "without", "when", "this", "these"}


def _paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _prose(par: str) -> str | None:
    """A paragraph as one line of prose, or None for grammar, code, tables or signatures."""
    if "::=" in par or ">>>" in par or par.startswith((" ", "\t")) or "+--" in par:
        return None
    if par.startswith(_SKIP_PARAGRAPHS):
        return None
    lines = [ln.strip() for ln in par.strip().splitlines()]
    if any(_UNDERLINE.fullmatch(ln) for ln in lines):
        return None
    if any(_SIGNATURE.search(ln) for ln in lines[:1]):
        return None
    text = " ".join(lines)
    if len(text) < 20 or not text[0].isupper() or text.endswith(":"):
        return None
    return re.sub(r"\s+", " ", text)


def _first_sentences(text: str, limit: int = 260) -> str | None:
    sents = _SENTENCE_END.split(text)
    out = sents[0]
    if len(out) > limit:
        return None
    for s in sents[1:]:
        if len(out) >= 80 or len(out) + 1 + len(s) > limit:
            break
        out += " " + s
    return out if out.endswith((".", "!", "?")) else None


def _answer_from(doc: str) -> str | None:
    for par in _paragraphs(doc):
        prose = _prose(par)
        if prose is not None:
            return _first_sentences(prose)
    return None


def topic_sections() -> list[tuple[str, str]]:
    """(title, text) for every section of every pydoc topic, in a stable order."""
    from pydoc_data.topics import topics

    out: list[tuple[str, str]] = []
    for key in sorted(topics):
        lines = topics[key].replace("\r\n", "\n").split("\n")
        heads = [
            i - 1
            for i in range(1, len(lines))
            if _UNDERLINE.fullmatch(lines[i]) and len(lines[i]) == len(lines[i - 1].rstrip())
        ]
        if not heads or heads[0] != 0:
            heads = [0, *heads]
            lines = [key, "*" * len(key), *lines]
            heads = [0] + [h + 2 for h in heads[1:]]
        for a, b in zip(heads, [*heads[1:], len(lines)], strict=True):
            title = lines[a].strip()
            body = "\n".join(lines[a:b]).strip()
            if len(body) > len(title) + 40:
                out.append((title, body))
    return out


_KEEP_CASE = {"None", "Ellipsis", "NotImplemented", "Python", "True", "False"}


def _clean_title(title: str) -> str:
    """'The "with" statement' -> 'the with statement'; code words keep their case."""
    words = []
    for w in title.replace("—", "-").split():
        if any(q in w for q in '"“”'):
            words.append(re.sub('["“”]', "", w))
        elif w[:1].isupper() and w[1:].islower() and w not in _KEEP_CASE:
            words.append(w.lower())
        else:
            words.append(w)
    t = " ".join(words)
    return re.sub(r"\s+-\s+(.*)$", r" (\1)", t).strip()


def _third_person(word: str) -> str:
    w = word.lower()
    if w.endswith("s"):
        return w
    if w.endswith(("sh", "ch", "x", "z")):
        return w + "es"
    if w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def _callable_answer(name: str, sentence: str) -> str:
    first, _, rest = sentence.partition(" ")
    if first.isalpha() and first[0].isupper() and first.lower() not in _NOT_VERBS:
        return f"{name}() {_third_person(first)} {rest}".rstrip()
    return sentence


def _type_answer(name: str, sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    lower = sentence[0].lower() + sentence[1:]
    if sentence.startswith(f"The {name} "):
        return sentence
    if first in ("The", "A", "An"):
        return f"The {name} type is {lower}"
    if first.endswith("ed") or "-" in first:
        return f"The {name} type is a {lower}"
    return _callable_answer(name, sentence)


def docstring_docs() -> tuple[list[tuple[str, str]], list[tuple[str, list[str], str]]]:
    """Docstring documents (key, text) and chat pairs (key, questions, answer)."""
    docs: list[tuple[str, str]] = []
    qa: list[tuple[str, list[str], str]] = []

    def add_callable(qual: str, obj: Any) -> None:
        doc = inspect.getdoc(obj)
        if not doc or len(doc) < 20:
            return
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        docs.append((qual, f"{qual}{sig}\n\n{doc}"))
        ans = _answer_from(doc)
        if ans:
            qs = [f"What does {qual}() do?", f"What is {qual}() for?"]
            qa.append((qual, qs, _callable_answer(qual, ans)))

    for name in sorted(dir(builtins)):
        obj = getattr(builtins, name)
        if name.startswith("_") or isinstance(obj, type) or not callable(obj):
            continue
        add_callable(name, obj)
    for name in _TYPE_NAMES:
        obj = getattr(builtins, name)
        doc = inspect.getdoc(obj) or ""
        docs.append((name, f"class {name}\n\n{doc}"))
        ans = _answer_from(doc)
        if ans:
            qa.append((name, [f"What is the {name} type?"], _type_answer(name, ans)))
        for meth in sorted(vars(obj)) if name in _METHOD_TYPES else []:
            if not meth.startswith("_"):
                add_callable(f"{name}.{meth}", getattr(obj, meth))
    for mod_name in _MODULES:
        mod = importlib.import_module(mod_name)
        if mod.__doc__:
            docs.append((mod_name, f"Module {mod_name}\n\n{inspect.cleandoc(mod.__doc__)}"))
            ans = _answer_from(inspect.cleandoc(mod.__doc__))
            if ans:
                qs = [f"What is the {mod_name} module?", f"What is {mod_name} for?"]
                if ans.startswith("This module "):
                    ans = f"The {mod_name} module " + ans[len("This module ") :]
                else:
                    ans = f"The {mod_name} module: {ans}"
                qa.append((mod_name, qs, ans))
        for name in sorted(getattr(mod, "__all__", None) or dir(mod)):
            obj = getattr(mod, name, None)
            if name.startswith("_") or obj is None or not callable(obj):
                continue
            if getattr(obj, "__module__", None) not in (mod_name, "_" + mod_name):
                continue
            add_callable(f"{mod_name}.{name}", obj)
    return docs, qa


def topic_qa(sections: list[tuple[str, str]]) -> list[tuple[str, list[str], str]]:
    qa = []
    for title, body in sections:
        text = body.split("\n", 2)[2] if body.count("\n") >= 2 else ""
        ans = _answer_from(text)
        if not ans:
            continue
        t = _clean_title(title)
        last = t.split(" ")[-1].strip("()")
        be = "are" if last.endswith("s") and not last.endswith(("ss", "is")) else "is"
        qs = [f"What {be} {t}?", f"Tell me about {t}.", f"Can you explain {t}?"]
        qa.append((title, qs, ans))
    return qa


def chat_documents(pairs: list[tuple[str, str]], rng: random.Random, repeats: int) -> list[str]:
    """Group (question, answer) pairs into conversations of 1-4 turns, `repeats` times."""
    out = []
    for _ in range(repeats):
        order = pairs[:]
        rng.shuffle(order)
        i = 0
        while i < len(order):
            n = rng.randint(1, 4)
            turns = order[i : i + n]
            i += n
            head = rng.choice(SYSTEM_PROMPTS) + "\n\n" if rng.random() < 0.3 else ""
            out.append(head + "".join(f"You: {q}\nAssistant: {a}\n" for q, a in turns))
    return out


def build_corpus(
    seed: int, val_frac: float, chat_repeats: int
) -> tuple[list[str], list[str], dict[str, int]]:
    """Train and validation documents (the split is by source, so no answer leaks)."""
    rng = random.Random(seed)
    sections = topic_sections()
    ddocs, dqa = docstring_docs()
    tqa = topic_qa(sections)

    def split(keys: Iterable[str]) -> set[str]:
        keys = sorted(set(keys))
        return set(rng.sample(keys, max(1, round(len(keys) * val_frac))))

    val_sections = split(t for t, _ in sections)
    val_doc_keys = split(k for k, _ in ddocs)
    train_docs = [b for t, b in sections if t not in val_sections]
    val_docs = [b for t, b in sections if t in val_sections]
    train_docs += [b for k, b in ddocs if k not in val_doc_keys]
    val_docs += [b for k, b in ddocs if k in val_doc_keys]

    def pairs(qa: list[tuple[str, list[str], str]], held: set[str], want_val: bool):
        return [(q, a) for k, qs, a in qa if (k in held) == want_val for q in qs]

    train_pairs = pairs(tqa, val_sections, False) + pairs(dqa, val_doc_keys, False)
    val_pairs = pairs(tqa, val_sections, True) + pairs(dqa, val_doc_keys, True)
    hand = [(q, a) for qs, a in HANDWRITTEN for q in qs]
    train_chat = chat_documents(train_pairs + hand * 3, rng, chat_repeats)
    val_chat = chat_documents(val_pairs, rng, 1)
    stats = {
        "topic_sections": len(sections),
        "docstring_docs": len(ddocs),
        "chat_pairs_train": len(train_pairs) + len(hand),
        "chat_pairs_val": len(val_pairs),
        "train_docs": len(train_docs) + len(train_chat),
        "val_docs": len(val_docs) + len(val_chat),
    }
    train = train_docs + train_chat
    rng.shuffle(train)
    val = val_docs + val_chat
    return train, val, stats


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def save_tokenizer(tok, out_dir: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS)
    fast.model_max_length = 256
    fast.save_pretrained(str(out_dir))
    # Newer transformers write their own class name ("TokenizersBackend"); the generic
    # fast-tokenizer name loads with every transformers release the project supports.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- model


def make_config(args: argparse.Namespace, vocab_size: int) -> ModelConfig:
    cycle = ["swa"] * args.swa_per_cycle + ["mla"] * args.mla_per_cycle
    kinds = [cycle[i % len(cycle)] for i in range(args.n_layer)]
    return ModelConfig(
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        n_kv_head=args.n_head,
        vocab_size=vocab_size,
        block_size=args.block_size,
        layer_kinds=kinds,
        swa_window=args.swa_window,
        swa_sink_size=args.swa_sinks,
        q_lora_rank=0,
        kv_lora_rank=args.kv_lora_rank,
        qk_nope_head_dim=args.dn,
        qk_rope_head_dim=args.dr,
        v_head_dim=args.dv,
        norm="rms",
        bias=False,
        mlp_hidden=4 * args.n_embd,
        tokenizer_name=TOKENIZER_NAME,
    )


def init_weights(model: SWAMLA, n_layer: int) -> None:
    """GPT-style init: N(0, 0.02), residual output projections scaled by 1/sqrt(2L)."""
    resid = ("o_proj.weight", "wo.weight", "down_proj.weight")
    for name, p in model.named_parameters():
        if p.ndim == 2:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(resid) else 0.02
            torch.nn.init.normal_(p, mean=0.0, std=std)


def training_args_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The argument dict stored as `config` (formats v1 §2); shapes come from the weights."""
    return {
        "size": "small",  # a preset name, as the original always stores; the weights differ
        "block_size": args.block_size,
        "swa_layers_per_cycle": args.swa_per_cycle,
        "mla_layers_per_cycle": args.mla_per_cycle,
        "swa_window": args.swa_window,
        "swa_sink_size": args.swa_sinks,
        "mla_q_lora_rank": 0,
        "mla_kv_lora_rank": args.kv_lora_rank,
        "mla_qk_nope_head_dim": args.dn,
        "mla_qk_rope_head_dim": args.dr,
        "mla_v_head_dim": args.dv,
        "tokenizer_name": TOKENIZER_NAME,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "min_lr": args.lr * args.min_lr_frac,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup,
        "max_steps": args.steps,
        "grad_clip": 1.0,
        "seed": args.seed,
        "use_fp8": False,
        "compile": False,
        "dataset": "pydoc_data.topics + stdlib docstrings + synthetic chat (scripts/train_demo.py)",
    }


def export_state_dict(model: SWAMLA, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict as the original stores it: tied head, plus each SWA layer's mask."""
    cfg = model.cfg
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    wte = sd["transformer.wte.weight"].to(dtype).clone()
    mask = torch.triu(torch.full((cfg.block_size, cfg.block_size), float("-inf")), diagonal=1)
    for k, v in sd.items():
        m = re.match(r"transformer\.h\.(\d+)\.attn\.q_proj\.weight$", k)
        if m:  # the attention module's own buffer precedes its children's parameters
            out[f"transformer.h.{m.group(1)}.attn.mask"] = mask.clone()
        if k in ("transformer.wte.weight", "lm_head.weight"):
            out[k] = wte  # one tensor under both keys, so torch.save stores it once
        else:
            out[k] = v.detach().to(dtype).clone()
    return out


def load_exported(sd: dict[str, torch.Tensor], args_dict: dict[str, Any]) -> SWAMLA:
    cfg = infer_config(sd, args_dict)
    model = SWAMLA(cfg)
    weights = {k: v.float() for k, v in sd.items() if not k.endswith("attn.mask")}
    model.load_state_dict(weights)
    return model.eval()


# --------------------------------------------------------------------------- training


def batches_from(stream: torch.Tensor, t: int) -> torch.Tensor:
    """Non-overlapping [N, t + 1] windows (targets overlap inputs by one token)."""
    n = (len(stream) - 1) // t
    return torch.stack([stream[i * t : i * t + t + 1] for i in range(n)])


@torch.no_grad()
def evaluate(model: SWAMLA, windows: torch.Tensor, batch: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i : i + batch]
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="sum")
        total += float(loss)
        count += w[:, 1:].numel()
    model.train()
    return total / max(count, 1)


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    frac = (step - args.warmup) / max(1, args.steps - args.warmup)
    lo = args.lr * args.min_lr_frac
    return lo + 0.5 * (args.lr - lo) * (1 + math.cos(math.pi * min(frac, 1.0)))


@torch.no_grad()
def greedy(model: SWAMLA, tok, prompt: str, max_new: int = 80) -> str:
    eos = tok.token_to_id(EOS)
    ids = tok.encode(prompt).ids
    out: list[int] = []
    for _ in range(max_new):
        ctx = (ids + out)[-model.cfg.block_size :]
        nxt = int(model(torch.tensor([ctx]))[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        if "\nYou:" in tok.decode(out):
            break
    return tok.decode(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "swamla_tui" / "demo")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--vocab-size", type=int, default=1536)
    ap.add_argument("--val-frac", type=float, default=0.05)
    ap.add_argument("--chat-repeats", type=int, default=4)
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--swa-per-cycle", type=int, default=2)
    ap.add_argument("--mla-per-cycle", type=int, default=1)
    ap.add_argument("--kv-lora-rank", type=int, default=32)
    ap.add_argument("--dn", type=int, default=32)
    ap.add_argument("--dr", type=int, default=16)
    ap.add_argument("--dv", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--swa-window", type=int, default=64)
    ap.add_argument("--swa-sinks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=64)
    args = ap.parse_args(argv)

    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    train_texts, val_texts, stats = build_corpus(args.seed, args.val_frac, args.chat_repeats)
    log(f"corpus: {json.dumps(stats)}")
    tok = train_tokenizer(train_texts, args.vocab_size)
    save_tokenizer(tok, out_dir)
    eos = tok.token_to_id(EOS)
    vocab = tok.get_vocab_size()
    log(f"tokenizer: {vocab} tokens, eos id {eos}")

    def encode(texts: list[str]) -> torch.Tensor:
        ids: list[int] = []
        for enc in tok.encode_batch(texts):
            ids.extend(enc.ids)
            ids.append(eos)
        return torch.tensor(ids, dtype=torch.long)

    train_ids, val_ids = encode(train_texts), encode(val_texts)
    t = args.block_size
    val_windows = batches_from(val_ids, t)
    if len(val_windows) > args.eval_windows:
        pick = torch.randperm(len(val_windows), generator=torch.Generator().manual_seed(args.seed))
        val_windows = val_windows[pick[: args.eval_windows].sort().values]
    log(
        f"tokens: train {len(train_ids):,}, val {len(val_ids):,} "
        f"({len(val_windows)} eval windows of {t})"
    )

    cfg = make_config(args, vocab)
    model = SWAMLA(cfg)
    init_weights(model, cfg.n_layer)
    model.train()
    log(f"model: {cfg.layer_kinds}, n_embd {cfg.n_embd}, {model.num_params():,} parameters")
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(args.seed)
    offsets = torch.arange(t + 1)
    t_train = time.time()
    running = None
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        starts = torch.randint(0, len(train_ids) - t - 1, (args.batch_size,), generator=gen)
        batch = train_ids[starts[:, None] + offsets]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        running = lv if running is None else 0.95 * running + 0.05 * lv
        if (step + 1) % 25 == 0:
            rate = (step + 1) * args.batch_size * t / (time.time() - t_train)
            log(
                f"step {step + 1}/{args.steps} loss {running:.3f} lr {lr_at(step, args):.2e} "
                f"{rate:,.0f} tok/s"
            )
        if (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            log(f"step {step + 1} val loss {evaluate(model, val_windows, 16):.4f}")
    train_s = time.time() - t_train
    val_fp32 = evaluate(model, val_windows, 16)
    log(f"trained {args.steps} steps in {train_s:.0f}s; val loss (float32) {val_fp32:.4f}")

    # Export in bfloat16 and measure what is actually shipped.
    args_dict = training_args_dict(args)
    sd = export_state_dict(model, torch.bfloat16)
    shipped = load_exported(sd, args_dict)
    val_loss = evaluate(shipped, val_windows, 16)
    ckpt = {
        "model": sd,
        "optimizer": {},
        "step": args.steps,
        "config": args_dict,
        "val_loss": round(val_loss, 4),
    }
    path = out_dir / CHECKPOINT_NAME
    torch.save(ckpt, path)
    log(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB); val loss (bfloat16) {val_loss:.4f}")

    # Reload exactly as a user would, then show a greedy chat sample.
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    again = load_exported(loaded["model"], loaded["config"])
    for prompt in ("You: What is a list?\nAssistant:", "You: What does len() do?\nAssistant:"):
        log(f"sample: {prompt!r} -> {greedy(again, tok, prompt)!r}")
    log(f"done in {time.time() - t_start:.0f}s")
    summary = {
        "val_loss": round(val_loss, 4),
        "val_loss_fp32": round(val_fp32, 4),
        "train_seconds": round(train_s),
        "total_seconds": round(time.time() - t_start),
        "params": model.num_params(),
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "vocab_size": vocab,
        **stats,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
