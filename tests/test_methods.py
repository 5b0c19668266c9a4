import pytest

from segreg_lite.methods import ABLATIONS, DEFAULT_METHODS, METHODS, Method, check_methods


def test_check_methods_orders_and_refuses_unknown_names():
    assert check_methods(["joint", "supervised", "joint"]) == ["supervised", "joint"]  # the table's order, once each
    with pytest.raises(ValueError, match="unknown method.*teacher"):
        check_methods(["joint", "teacher"])
    with pytest.raises(ValueError, match="none given"):
        check_methods([])


def test_the_registry():
    assert all(isinstance(m, Method) and m.description and callable(m.run) for m in METHODS.values())
    assert set(DEFAULT_METHODS) | set(ABLATIONS) <= set(METHODS)
    assert {n for n, m in METHODS.items() if m.pseudo_labels} == {"unimatch", "joint", "joint_seg", "joint_reg"}
    assert {n for n, m in METHODS.items() if m.registers} == {"reg_only", "joint", "joint_seg", "joint_reg"}
