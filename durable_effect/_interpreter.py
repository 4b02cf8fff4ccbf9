"""The interpreter: runs a tree of effect nodes with an explicit continuation stack.

An ``Effect`` (``_effect``) is a ``Node``: an opcode and two operands. ``run_exit`` evaluates
a program down to an ``Exit`` — success, typed failure or defect — without recursion, so a
chain of a million ``flat_map`` calls or a 100,000-deep ``gen`` recursion runs in constant
Python stack. Exceptions escaping user code are defects, never typed failures.

The opcodes and the ``Exit`` kinds are private to this module and ``_effect``: everything
else reads an ``Exit`` through ``is_ok`` / ``is_failure`` / ``is_defect``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

from durable_effect import _log
from durable_effect._exit import DEFECT, FAILURE, OK, Exit

__all__ = ["Node", "fail_node", "run_exit", "run_promise", "run_sync_exit"]

# Opcodes. Plain ints compared with ``==`` on small ints: the fastest dispatch.
SUCCEED = 0
FAIL = 1
SYNC = 2
TRY = 3
SUSPEND = 4
FLAT_MAP = 5
MAP = 6
CATCH = 7
ENSURING = 8
GEN = 9
ASYNC = 10
TRY_ASYNC = 11
LOG = 12
GEN_FRAME = 13
RESTORE = 14
ASYNC_EFFECT = 15
CATCH_TAG = 16
EXIT_OF = 17


class Node:
    """One node of a program: ``_op`` (an opcode) and its operands ``_a`` and ``_b``.

    ``Effect`` is the typed subclass users build; the interpreter reads only these slots.
    """

    __slots__ = ("_a", "_b", "_op")

    _op: int
    _a: Any
    _b: Any

    def __init__(self, op: int, a: Any = None, b: Any = None) -> None:
        self._op = op
        self._a = a
        self._b = b


def fail_node(error: BaseException) -> Node:
    """A bare node failing with ``error`` (what ``yield from TaggedError(...)`` yields)."""
    return Node(FAIL, error)


class _Frame:
    __slots__ = ("_a", "_b", "_op")

    def __init__(self, op: int, a: Any, b: Any = None) -> None:
        self._op = op
        self._a = a
        self._b = b


async def run_exit(root: Node) -> Exit[Any, Any]:
    """Interpret ``root`` (an ``Effect``) with an explicit continuation stack.

    Never raises for a defect: every way the program ends is the ``Exit`` returned.
    """
    # The node class of the program: every node user code builds is one (compared by
    # identity, the fastest check); anything else goes through ``_as_node``.
    node = type(root)
    stack: list[Any] = []
    push = stack.append
    pop = stack.pop
    cur: Any = root
    kind = OK
    value: Any = None
    while True:
        # ---- evaluate ``cur`` down to an outcome (kind, value) ----
        op = cur._op
        if op == FLAT_MAP or op == MAP or op == CATCH or op == CATCH_TAG:
            push(cur)
            cur = cur._a
            continue
        if op == SUCCEED:
            kind = OK
            value = cur._a
        elif op == GEN:
            args = cur._b
            try:
                if args:
                    positional, named = args
                    gen = cur._a(*positional, **named) if named else cur._a(*positional)
                else:
                    gen = cur._a()
                nxt = gen.send(None)
            except StopIteration as stop:
                kind = OK
                value = stop.value
            except BaseException as exc:  # a defect in user code
                if isinstance(exc, GeneratorExit):
                    raise
                kind = DEFECT
                value = exc
            else:
                if type(nxt) is node:
                    push(_Frame(GEN_FRAME, gen))
                    cur = nxt
                    continue
                try:
                    cur = _as_node(nxt)
                except TypeError as exc:  # a plain ``yield value``: close it, then a defect
                    _close_quietly(gen)
                    kind = DEFECT
                    value = exc
                else:
                    push(_Frame(GEN_FRAME, gen))
                    continue
        elif op == FAIL:
            kind = FAILURE
            value = cur._a
        elif op == SYNC:
            try:
                value = cur._a()
                kind = OK
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    raise
                kind = DEFECT
                value = exc
        elif op == SUSPEND:
            try:
                cur = cur._a()
                if type(cur) is not node:
                    cur = _as_node(cur)
                continue
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    raise
                kind = DEFECT
                value = exc
        elif op == TRY or op == TRY_ASYNC:
            try:
                value = cur._a() if op == TRY else await cur._a()
                kind = OK
            except Exception as exc:
                try:
                    value = cur._b(exc)
                    kind = FAILURE
                except BaseException as inner:
                    kind = DEFECT
                    value = inner
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    raise
                kind = DEFECT
                value = exc
        elif op == ASYNC or op == ASYNC_EFFECT:
            try:
                value = await cur._a()
            except BaseException as exc:
                if isinstance(exc, GeneratorExit):
                    raise
                kind = DEFECT
                value = exc
            else:
                if op == ASYNC_EFFECT:
                    cur = value
                    continue
                kind = OK
        elif op == ENSURING:
            push(cur)
            cur = cur._a
            continue
        elif op == LOG:
            level, message = cur._a
            try:
                _log.emit(level, message, cur._b)
            except Exception as exc:
                kind = DEFECT
                value = exc
            else:
                kind = OK
                value = None
        elif op == EXIT_OF:  # its frame turns whatever outcome reaches it into a value
            push(cur)
            cur = cur._a
            continue
        else:  # pragma: no cover - corrupted node
            raise TypeError(f"not an Effect: {cur!r}")

        # ---- deliver the outcome to the continuation stack ----
        while stack:
            frame = pop()
            fop = frame._op
            if kind == OK:
                if fop == FLAT_MAP:
                    try:
                        cur = frame._b(value)
                        if type(cur) is not node:
                            cur = _as_node(cur)
                    except BaseException as exc:
                        if isinstance(exc, GeneratorExit):
                            raise
                        kind = DEFECT
                        value = exc
                        continue
                    # Fast paths: a plain success or failure needs no trip through ``evaluate``.
                    op = cur._op
                    if op == SUCCEED:
                        value = cur._a
                        continue
                    if op == FAIL:
                        kind = FAILURE
                        value = cur._a
                        continue
                    break
                if fop == MAP:
                    try:
                        value = frame._b(value)
                    except BaseException as exc:
                        if isinstance(exc, GeneratorExit):
                            raise
                        kind = DEFECT
                        value = exc
                    continue
                if fop == GEN_FRAME:
                    gen = frame._a
                    try:
                        nxt = gen.send(value)
                    except StopIteration as stop:
                        value = stop.value
                        continue
                    except BaseException as exc:
                        if isinstance(exc, GeneratorExit):
                            raise
                        kind = DEFECT
                        value = exc
                        continue
                    push(frame)
                    if type(nxt) is node:
                        if nxt._op == SUCCEED:  # fast path: resume the generator at once
                            value = nxt._a
                            continue
                        cur = nxt
                        break
                    try:
                        cur = _as_node(nxt)
                    except TypeError as exc:
                        pop()
                        _close_quietly(gen)
                        kind = DEFECT
                        value = exc
                        continue
                    break
                if fop == CATCH or fop == CATCH_TAG:
                    continue
            elif kind == FAILURE:
                if fop == CATCH or fop == CATCH_TAG:
                    try:
                        if fop == CATCH:
                            cur = frame._b(value)
                        else:
                            cls, handler = frame._b
                            if not isinstance(value, cls):
                                continue  # not this tag: the failure goes on unchanged
                            cur = handler(value)
                        if type(cur) is not node:
                            cur = _as_node(cur)
                    except BaseException as exc:
                        if isinstance(exc, GeneratorExit):
                            raise
                        kind = DEFECT
                        value = exc
                        continue
                    op = cur._op
                    if op == SUCCEED:  # fast path, as for flat_map
                        kind = OK
                        value = cur._a
                        continue
                    if op == FAIL:
                        value = cur._a
                        continue
                    break
                if fop == GEN_FRAME:
                    defect = _close_quietly(frame._a)
                    if defect is not None:
                        kind = DEFECT
                        value = defect
                    continue
                if fop == FLAT_MAP or fop == MAP:
                    continue
            elif fop == GEN_FRAME:  # a defect closes generators too
                _close_quietly(frame._a)
                continue
            if fop == ENSURING:
                push(_Frame(RESTORE, kind, value))
                cur = frame._b
                break
            if fop == RESTORE:
                if kind == OK:  # the finalizer succeeded: restore the earlier outcome
                    kind = frame._a
                    value = frame._b
                continue
            if fop == EXIT_OF:  # success, failure or defect: delivered as an ``Exit`` value
                value = Exit(kind, value)
                kind = OK
                continue
        else:
            return Exit(kind, value)


def _as_node(value: Any) -> Node:
    if isinstance(value, Node):
        return value
    raise TypeError(
        "expected an Effect (did you `yield` instead of `yield from`, or return a plain value "
        f"from flat_map?), got {type(value).__name__}"
    )


def _close_quietly(gen: Generator[Any, Any, Any]) -> BaseException | None:
    try:
        gen.close()
    except BaseException as exc:
        return exc
    return None


def run_sync_exit(root: Node) -> Exit[Any, Any] | None:
    """Run ``root`` without an event loop; ``None`` if it awaits (nothing else is run)."""
    coro = run_exit(root)
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast("Exit[Any, Any]", stop.value)
    coro.close()
    return None


async def run_promise(root: Node) -> Any:
    """Run ``root`` and return its value; a typed failure or a defect is raised."""
    if root._op == ASYNC_EFFECT:
        # A lazy call (every client operation): await it here, and skip the interpreter when
        # it gives a plain outcome. A defect it raises propagates, as ``run_exit`` would raise.
        node = type(root)
        root = await root._a()
        if type(root) is node:
            if root._op == SUCCEED:
                return root._a
            if root._op == FAIL:
                raise root._a
    exit_ = await run_exit(root)
    if exit_._kind == OK:
        return exit_._value
    raise cast(BaseException, exit_._value)
