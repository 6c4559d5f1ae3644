"""The tour's numeric energy check agrees with the symbolic balance."""

import odeopt as oo
from odeopt.tour import numeric_energy_check


def test_numeric_check_agrees_for_zoo():
    for name in oo.zoo.names():
        if oo.zoo.get(name).metric is not None:  # not coordinate-wise: checked in research
            continue
        check = numeric_energy_check(oo.zoo.get(name))
        # central difference with eps = 1e-6: error O(eps²·H''') plus round-off ~1e-10·|H|/eps
        assert check.max_abs_error < 1e-6, (name, check)


def test_numeric_check_detects_a_wrong_balance(monkeypatch):
    """If the symbolic rate were wrong (a sign flipped), the numeric check would see it."""
    system = oo.zoo.heavy_ball()
    real = system.energy_balance

    def wrong(*a, **k):
        b = real(*a, **k)
        b.rate = -b.rate
        return b

    monkeypatch.setattr(system, "energy_balance", wrong)
    check = numeric_energy_check(system)
    assert check.max_abs_error > 1.0
