"""The monad laws for ``Effect``, checked with Hypothesis on *run results* (``run_sync``).

Two effects are equal here when running them gives equal ``Result``s: the same success
value, or equal typed errors (``TaggedError`` compares by fields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Result

from durable_effect import Effect, Err, Gen, Ok, TaggedError


@attrs.frozen(kw_only=True, eq=False)
class LawError(TaggedError):
    tag: ClassVar[Literal["LawError"]] = "LawError"
    code: int


Eff = Effect[int, LawError]
Kleisli = Callable[[int], Eff]


def run(eff: Effect[Any, LawError]) -> Result[Any, LawError]:
    return Effect.run_sync(eff)


# -- a small family of functions, with readable reprs for Hypothesis' reports --------------


@attrs.frozen
class AddK:
    """``n -> succeed(n + k)``."""

    k: int

    def __call__(self, n: int) -> Eff:
        return Effect.succeed(n + self.k)


@attrs.frozen
class FailIfDivisible:
    """Fails with ``LawError(code=n)`` when ``n`` is divisible by ``d``, else ``succeed(n * 2)``."""

    d: int

    def __call__(self, n: int) -> Eff:
        if n % self.d == 0:
            return Effect.fail(LawError(code=n))
        return Effect.succeed(n * 2)


@attrs.frozen
class AlwaysFail:
    """``n -> fail(LawError(code=n + offset))``."""

    offset: int

    def __call__(self, n: int) -> Eff:
        return Effect.fail(LawError(code=n + self.offset))


@attrs.frozen
class ViaGen:
    """The same as ``inner`` but written with ``Effect.gen``."""

    inner: Kleisli

    def __call__(self, n: int) -> Eff:
        inner = self.inner

        @Effect.gen
        def body() -> Gen[int, LawError]:
            value = yield from inner(n)
            return value

        return body()


@attrs.frozen
class Affine:
    """The pure function ``n -> n * a + b``."""

    a: int
    b: int

    def __call__(self, n: int) -> int:
        return n * self.a + self.b


@attrs.frozen
class Recover:
    """A handler: ``e -> succeed(e.code + k)``, or ``fail(LawError(code=e.code * 3))`` if odd."""

    k: int

    def __call__(self, e: LawError) -> Eff:
        if self.k % 2:
            return Effect.fail(LawError(code=e.code * 3))
        return Effect.succeed(e.code + self.k)


ints = st.integers(min_value=-1000, max_value=1000)
kleislis: st.SearchStrategy[Kleisli] = st.deferred(
    lambda: st.one_of(
        st.builds(AddK, ints),
        st.builds(FailIfDivisible, st.integers(min_value=1, max_value=5)),
        st.builds(AlwaysFail, ints),
        st.builds(ViaGen, kleislis),
    )
)
pure_fns: st.SearchStrategy[Affine] = st.builds(Affine, ints, ints)
handlers: st.SearchStrategy[Recover] = st.builds(Recover, ints)
errors: st.SearchStrategy[LawError] = st.builds(LawError, code=ints)


def _extend(children: st.SearchStrategy[Eff]) -> st.SearchStrategy[Eff]:
    return st.one_of(
        st.builds(lambda m, f: m.flat_map(f), children, kleislis),
        st.builds(lambda m, f: m.map(f), children, pure_fns),
        st.builds(lambda m, h: m.catch_all(h), children, handlers),
    )


effects: st.SearchStrategy[Eff] = st.recursive(
    st.one_of(ints.map(Effect.succeed), errors.map(Effect.fail)),
    _extend,
    max_leaves=6,
)


# -- laws ----------------------------------------------------------------------------------


@given(ints, kleislis)
def test_left_identity(a: int, f: Kleisli) -> None:
    assert run(Effect.succeed(a).flat_map(f)) == run(f(a))


@given(effects)
def test_right_identity(m: Eff) -> None:
    assert run(m.flat_map(Effect.succeed)) == run(m)


@given(effects, kleislis, kleislis)
def test_associativity(m: Eff, f: Kleisli, g: Kleisli) -> None:
    left = m.flat_map(f).flat_map(g)
    right = m.flat_map(lambda x: f(x).flat_map(g))
    assert run(left) == run(right)


@given(errors, handlers)
def test_catch_all_of_a_failure_is_the_handler(e: LawError, h: Recover) -> None:
    assert run(Effect.fail(e).catch_all(h)) == run(h(e))


@given(ints, handlers)
def test_catch_all_of_a_success_is_the_success(a: int, h: Recover) -> None:
    assert run(Effect.succeed(a).catch_all(h)) == run(Effect.succeed(a))


@given(effects)
def test_map_identity(m: Eff) -> None:
    assert run(m.map(lambda x: x)) == run(m)


@given(effects, pure_fns, pure_fns)
def test_map_composition(m: Eff, f: Affine, g: Affine) -> None:
    assert run(m.map(f).map(g)) == run(m.map(lambda x: g(f(x))))


@given(effects, pure_fns)
def test_map_is_flat_map_of_succeed(m: Eff, f: Affine) -> None:
    assert run(m.map(f)) == run(m.flat_map(lambda x: Effect.succeed(f(x))))


@given(ints)
def test_either_of_succeed_is_ok(a: int) -> None:
    assert run(Effect.succeed(a).either()) == run(Effect.succeed(Ok(a)))


@given(errors)
def test_either_of_fail_is_err(e: LawError) -> None:
    assert run(Effect.fail(e).either()) == run(Effect.succeed(Err(e)))


@given(effects)
def test_either_never_fails_and_mirrors_the_run(m: Eff) -> None:
    outcome = run(m.either()).unwrap()
    direct = run(m)
    if isinstance(outcome, Ok):
        assert direct == run(Effect.succeed(outcome.value))
    else:
        assert direct == run(Effect.fail(outcome.error))


@given(effects, kleislis)
def test_gen_is_flat_map(m: Eff, f: Kleisli) -> None:
    @Effect.gen
    def body() -> Gen[int, LawError]:
        x = yield from m
        y = yield from f(x)
        return y

    assert run(body()) == run(m.flat_map(f))
