"""``record_type``: namedtuple's interface without importing ``collections``, for the records the hot path
builds (StoredEndpoint, Settings, Selection, TokenState). ``collections`` and the namedtuple factory
cost ``export`` about 1.5 ms of a 20 ms start-up, in every new shell. A leaf: builtins only.

Example::

    class Point(record_type("Point", "x y", defaults=(0,))):
        __slots__ = ()

    Point(1) == (1, 0); Point(1)._replace(y=2).y == 2
"""

from __future__ import annotations

from _operator import itemgetter

_MISSING = object()


def record_type(typename: str, field_names: str | list[str], defaults: tuple = (), module: str | None = None) -> type:
    """A tuple subclass with named fields, as ``collections.namedtuple(typename, field_names, defaults=...)``:
    positional or keyword construction, defaults for the last fields, ``_fields``, ``_field_defaults``,
    ``_make``, ``_replace``, ``_asdict``, the same repr, equality and hashing as tuples."""
    fields = tuple(field_names.replace(",", " ").split() if isinstance(field_names, str) else field_names)
    count = len(fields)
    field_defaults = dict(zip(fields[count - len(defaults):], defaults)) if defaults else {}
    position = {name: i for i, name in enumerate(fields)}

    def __new__(cls, *args, **kwargs):
        if len(args) > count:
            raise TypeError(f"{typename}() takes {count} positional arguments but {len(args)} were given")
        values = list(args) + [_MISSING] * (count - len(args))
        for name, value in kwargs.items():
            i = position.get(name)
            if i is None:
                raise TypeError(f"{typename}() got an unexpected keyword argument {name!r}")
            if i < len(args):
                raise TypeError(f"{typename}() got multiple values for argument {name!r}")
            values[i] = value
        for i in range(len(args), count):
            if values[i] is _MISSING:
                if fields[i] not in field_defaults:
                    raise TypeError(f"{typename}() missing required argument: {fields[i]!r}")
                values[i] = field_defaults[fields[i]]
        return tuple.__new__(cls, values)

    def _make(cls, iterable):
        result = tuple.__new__(cls, iterable)
        if len(result) != count:
            raise TypeError(f"Expected {count} arguments, got {len(result)}")
        return result

    def _replace(self, **kwargs):
        result = self._make([kwargs.pop(name, value) for name, value in zip(fields, self)])
        if kwargs:
            raise ValueError(f"Got unexpected field names: {list(kwargs)!r}")
        return result

    def __repr__(self):
        return f"{self.__class__.__name__}({', '.join(f'{name}={value!r}' for name, value in zip(fields, self))})"

    def _asdict(self):
        return dict(zip(fields, self))

    def __getnewargs__(self):
        return tuple(self)

    namespace = {
        "__doc__": f"{typename}({', '.join(fields)})",
        "__slots__": (),
        "__module__": module or __name__,
        "_fields": fields,
        "_field_defaults": field_defaults,
        "__match_args__": fields,
        "__new__": __new__,
        "_make": classmethod(_make),
        "_replace": _replace,
        "__repr__": __repr__,
        "_asdict": _asdict,
        "__getnewargs__": __getnewargs__,
    }
    for i, name in enumerate(fields):
        namespace[name] = property(itemgetter(i), doc=f"Alias for field number {i}")
    return type(typename, (tuple,), namespace)
