"""structs.record_type against collections.namedtuple: the same behaviour, one table."""

from __future__ import annotations

import pickle
from collections import namedtuple

import pytest

from metis_env.structs import record_type


class Point(record_type("Point", "x y z", defaults=(5,))):
    __slots__ = ()


class Reference(namedtuple("Point", "x y z", defaults=(5,))):
    __slots__ = ()


@pytest.mark.parametrize(
    "use",
    [
        lambda P: P(1, 2),
        lambda P: P(x=1, y=2, z=3),
        lambda P: P(1, y=2),
        lambda P: repr(P(1, "b")).replace(P.__name__, "P"),
        lambda P: P(1, 2)._replace(z=0),
        lambda P: P(1, 2)._asdict(),
        lambda P: P._make([1, 2, 3]),
        lambda P: (P._fields, P._field_defaults, P.__match_args__),
        lambda P: (P(1, 2) == (1, 2, 5), hash(P(1, 2)) == hash((1, 2, 5)), P(1, 2)[1:], tuple(P(1, 2))),
        lambda P: pickle.loads(pickle.dumps(P(1, 2))) == P(1, 2),
        lambda P: (P(1, 2).x, P(1, 2).z, isinstance(P(1, 2), tuple)),
    ],
)
def test_a_record_type_behaves_as_a_namedtuple(use):
    assert use(Point) == use(Reference)


@pytest.mark.parametrize(
    "misuse, error",
    [
        (lambda P: P(1), TypeError),
        (lambda P: P(1, 2, 3, 4), TypeError),
        (lambda P: P(1, 2, w=0), TypeError),
        (lambda P: P(1, 2, x=0), TypeError),
        (lambda P: P(1, 2)._replace(w=0), ValueError),
        (lambda P: P._make([1]), TypeError),
    ],
)
def test_a_record_type_refuses_what_a_namedtuple_refuses(misuse, error):
    for P in (Point, Reference):
        with pytest.raises(error):
            misuse(P)
