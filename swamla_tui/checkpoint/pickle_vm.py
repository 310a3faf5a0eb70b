"""Our own unpickler for checkpoints, every protocol (0-5), under a memory budget.

`pickletools.genops` decodes the opcodes; this machine executes them with the meanings of
`ckpt.meanings`, never Python's or torch's unpickler (whose BUILD sets attributes on
whatever it reaches, and whose recursion a deep pickle can crash). Every allocation is
charged to a `Budget` (a small multiple of the file's size plus a margin) before it is
made, and every container records its nesting depth when it is built, so a
2,000,000-deep tuple is refused at `MAX_DEPTH` without recursion. A container may be
filled only while it is on its own (not yet inside another): that is how `pickle`
writes, and it keeps depths exact and cycles out.
"""

from __future__ import annotations

import collections
import contextlib
import pickletools
from collections.abc import Sequence
from typing import Any, Protocol

from ..base.errors import CheckpointError, SwamlaError, UnsafeCheckpointError
from .meanings import Meanings
from .safety import MAX_DEPTH, refuse
from .zipread import mb

BUDGET_MULTIPLE = 4
BUDGET_MARGIN = 64 * 2**20
_MUTABLE = (list, dict, collections.OrderedDict, set)
_CONTAINERS = (tuple, frozenset, *_MUTABLE)
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING"}  # Python 2 str: UTF-8 like torch
_TEXT = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"}
_PLAIN = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
_CONSTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


class Source(Protocol):
    def read(self, n: int = ..., /) -> bytes: ...
    def readline(self) -> bytes: ...
    def tell(self) -> int: ...


class Budget:
    """Bytes the unpickler may allocate for one file; refused before it is exceeded."""

    def __init__(self, file_size: int, origin: str) -> None:
        self.limit = BUDGET_MULTIPLE * file_size + BUDGET_MARGIN
        self.used = 0
        self.origin = origin

    def charge(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise UnsafeCheckpointError(
                f"{self.origin}: refused: its pickle would build more than {mb(self.limit)} "
                "of objects (the limit for a file of this size)"
            )


class Machine:
    def __init__(self, meanings: Meanings, budget: Budget, origin: str) -> None:
        self.m = meanings
        self.budget = budget
        self.origin = origin
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.info: dict[int, list[Any]] = {}  # id -> [depth, nested in another, the object]
        self.protocol = 0

    # -- errors and bookkeeping
    def corrupt(self, why: str) -> CheckpointError:
        return CheckpointError(f"{self.origin}: not a valid checkpoint (its pickle {why})")

    def new(self, obj: Any, children: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Record a container built from `children` (they become nested)."""
        self.budget.charge(64 + 16 * len(children))
        info, d = self.info, self._nest(children)
        if id(obj) not in info:
            info[id(obj)] = [d + 1, False, obj]
        return obj

    def _nest(self, children: Sequence[Any]) -> int:
        """Mark `children` as nested; the deepest of them (refused past `MAX_DEPTH`)."""
        d = 0
        for c in children:
            i = self.info.get(id(c))
            if i is not None:
                d = max(d, i[0])
                i[1] = True
        if d >= MAX_DEPTH:
            raise refuse(self.origin, f"the pickle nests more than {MAX_DEPTH} levels deep")
        return d

    def fill(self, target: Any, kinds: tuple[type, ...], children: list[Any]) -> None:
        """`target` gets `children`: it must be a fresh container of `kinds`, not nested."""
        t = self.info.get(id(target))
        if type(target) not in kinds or t is None:
            what = target.name if hasattr(target, "name") else type(target).__name__
            raise refuse(self.origin, f"the pickle adds items to '{what}'")
        if t[1]:
            raise self.corrupt("fills a container after nesting it")
        self.budget.charge(48 * len(children))
        if any(c is target for c in children):
            raise self.corrupt("puts a container inside itself")
        d = self._nest(children)
        t[0] = max(t[0], d + 1)

    def result(self, x: Any) -> Any:
        """A call's result: containers it returns (set, OrderedDict, Size) are tracked."""
        if isinstance(x, _CONTAINERS):
            self.new(x, tuple(x) if isinstance(x, (tuple, set)) else ())
        return x

    def push(self, x: Any) -> None:
        self.budget.charge(8)
        self.stack.append(x)

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.corrupt("pops an empty stack")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.corrupt("has no MARK where one is needed")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    # -- the run
    def run(self, src: Source) -> Any:
        """Execute one pickle from `src`'s position; `src` is left just after its STOP."""
        try:
            for op, arg, pos in pickletools.genops(src):  # type: ignore[arg-type]
                if op.name == "STOP":
                    if not self.stack:
                        raise self.corrupt("ends with nothing on its stack")
                    return self.stack.pop()
                self.step(op.name, arg, pos)
        except SwamlaError:
            raise
        except MemoryError:
            raise UnsafeCheckpointError(
                f"{self.origin}: refused: its pickle needs more memory than this machine has"
            ) from None
        except RecursionError:
            raise refuse(self.origin, "a structure too deep to handle") from None
        except Exception as e:  # noqa: BLE001 - junk of any shape is a corrupt file
            from ..base.errors import one_line

            raise self.corrupt(f"is malformed: {one_line(e, 100)}") from None
        raise self.corrupt("ends without STOP")

    def step(self, n: str, arg: Any, pos: int | None) -> None:  # noqa: C901 - the opcode table
        items: Any
        target: Any
        if n in _TEXT or n in _BYTES or n in _PLAIN:
            if isinstance(arg, (str, bytes, bytearray, int)):
                self.budget.charge(len(arg) if not isinstance(arg, int) else arg.bit_length() // 8)
            self.push(arg)
        elif n in _STRINGS:
            with contextlib.suppress(UnicodeDecodeError):
                arg = arg.encode("latin-1").decode("utf-8")
            self.budget.charge(len(arg))
            self.push(arg)
        elif n in _CONSTS:
            self.push(_CONSTS[n])
        elif n == "PROTO":
            if not 0 <= arg <= 5:
                raise self.corrupt(f"declares protocol {arg}")
            self.protocol = max(self.protocol, arg)
        elif n == "FRAME":
            pass
        elif n == "MARK":
            self.budget.charge(8)
            self.marks.append(len(self.stack))
        elif n == "POP":
            self.pop()
        elif n == "POP_MARK":
            self.pop_mark()
        elif n == "DUP":
            x = self.pop()
            self.push(x)
            self.push(x)
        elif n in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not self.stack:
                raise self.corrupt("memoizes an empty stack")
            self.budget.charge(64)
            self.memo[len(self.memo) if n == "MEMOIZE" else int(arg)] = self.stack[-1]
        elif n in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise self.corrupt(f"refers to memo entry {arg} before it exists")
            self.push(self.memo[int(arg)])
        elif n == "EMPTY_TUPLE":
            self.push(self.new(()))
        elif n in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = tuple(reversed([self.pop() for _ in range(int(n[-1]))]))
            self.push(self.new(items, items))
        elif n == "TUPLE":
            items = tuple(self.pop_mark())
            self.push(self.new(items, items))
        elif n == "EMPTY_LIST":
            self.push(self.new([]))
        elif n == "LIST":
            lst = self.pop_mark()
            self.push(self.new(lst, lst))
        elif n in ("EMPTY_DICT", "EMPTY_SET"):
            self.push(self.new({} if n == "EMPTY_DICT" else set()))
        elif n == "DICT":
            items = self.pop_mark()
            if len(items) % 2:
                raise self.corrupt("builds a dict from an odd number of items")
            d = self.new({})
            self.fill(d, (dict,), items)
            d.update(zip(items[::2], items[1::2], strict=True))
            self.push(d)
        elif n == "FROZENSET":
            items = self.pop_mark()
            self.push(self.new(frozenset(items), items))
        elif n in ("APPEND", "APPENDS"):
            items = [self.pop()] if n == "APPEND" else self.pop_mark()
            target = self.stack[-1] if self.stack else None
            self.fill(target, (list,), items)
            target.extend(items)
        elif n in ("SETITEM", "SETITEMS"):
            if n == "SETITEM":
                v = self.pop()
                items = [self.pop(), v]
            else:
                items = self.pop_mark()
            if len(items) % 2:
                raise self.corrupt("sets an odd number of dict items")
            target = self.stack[-1] if self.stack else None
            self.fill(target, (dict, collections.OrderedDict), items)
            for k, v in zip(items[::2], items[1::2], strict=True):
                target[k] = v
        elif n == "ADDITEMS":
            items = self.pop_mark()
            target = self.stack[-1] if self.stack else None
            self.fill(target, (set,), items)
            target.update(items)
        elif n == "GLOBAL":
            mod, _, name = str(arg).partition(" ")
            self.push(self.m.resolve(f"{mod}.{name}"))
        elif n == "STACK_GLOBAL":
            name, mod = self.pop(), self.pop()
            if type(mod) is not str or type(name) is not str:
                raise refuse(self.origin, "the pickle builds a global name from non-strings")
            self.push(self.m.resolve(f"{mod}.{name}"))
        elif n in ("REDUCE", "NEWOBJ"):
            args = self.pop()
            self.push(self.result(self.m.call(self.pop(), args)))
        elif n == "NEWOBJ_EX":
            kwargs, args = self.pop(), self.pop()
            if kwargs:
                raise refuse(self.origin, "the pickle passes keyword arguments to a constructor")
            self.push(self.result(self.m.call(self.pop(), args)))
        elif n == "INST":
            mod, _, name = str(arg).partition(" ")
            args = tuple(self.pop_mark())
            self.push(self.result(self.m.call(self.m.resolve(f"{mod}.{name}"), args)))
        elif n == "OBJ":
            items = self.pop_mark()
            if not items:
                raise self.corrupt("has OBJ without a class")
            self.push(self.result(self.m.call(items[0], tuple(items[1:]))))
        elif n == "BUILD":
            state = self.pop()
            target = self.stack[-1] if self.stack else None
            if isinstance(target, _MUTABLE):
                self.fill(target, (collections.OrderedDict,), [state])
            self.m.build(target, state)
        elif n == "BINPERSID":
            self.push(self.m.persistent(self.pop()))
        elif n == "PERSID":
            raise self.corrupt("uses a text persistent id (torch.save never writes one)")
        elif n in ("EXT1", "EXT2", "EXT4"):
            raise refuse(self.origin, "the pickle uses the extension registry")
        elif n in ("NEXT_BUFFER", "READONLY_BUFFER"):
            raise refuse(self.origin, "the pickle uses out-of-band buffers")
        else:  # pragma: no cover - pickletools knows no other opcode
            raise self.corrupt(f"uses the unknown opcode {n}")
