import pytest

from mmrec.registry import Registry


def test_unknown_name_lists_known():
    reg: Registry[int] = Registry("widget")
    reg.register("b")(lambda: 2)
    reg.register("a")(lambda: 1)
    assert reg.build("a") == 1
    with pytest.raises(KeyError, match="unknown widget 'c'; known: a, b"):
        reg.build("c")


def test_double_registration_fails():
    reg: Registry[int] = Registry("widget")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(lambda: 2)
