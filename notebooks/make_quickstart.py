"""Writes notebooks/quickstart.ipynb (kept as code so that diffs stay readable)."""

from pathlib import Path

import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell(
        "# odeopt quickstart\n\nAn optimizer as a port-Hamiltonian ODE: define it, prove its "
        "energy balance, compile its vector field."
    ),
    nbf.v4.new_code_cell(
        "import numpy as np\nimport sympy as sp\nimport odeopt as oo\n\n"
        "# heavy ball in five lines: H = F + |p|²/(2m), J canonical, R = diag(0, γ)\n"
        'theta, p = oo.blocks("theta p")\n'
        'm, gamma = oo.parameters("m gamma", positive=True)\n'
        "F = oo.loss(theta)\n"
        "hb = oo.PortHamiltonian(F + oo.sqnorm(p) / (2 * m), [theta, p],\n"
        "                        J=[[0, 1], [-1, 0]], R=[[0, 0], [0, gamma]],\n"
        "                        parameters={m: 1.0, gamma: 0.5})\n"
        "hb"
    ),
    nbf.v4.new_code_cell(
        "balance = hb.energy_balance()\n"
        "print(balance)\n"
        'assert balance.verdict == "dissipative"\n'
        "balance"
    ),
    nbf.v4.new_markdown_cell("The zoo has the same systems, and more; BBI conserves its energy."),
    nbf.v4.new_code_cell(
        "bbi = oo.zoo.bbi(delta_v=-1.0)\n"
        "print(bbi)\n"
        'assert bbi.energy_balance().verdict == "conservative"'
    ),
    nbf.v4.new_markdown_cell(
        "Compiled vector fields work on batches: (batch, n) arrays, numpy or torch."
    ),
    nbf.v4.new_code_cell(
        "rng = np.random.default_rng(0)\n"
        "state = {'theta': rng.standard_normal((4, 3)), 'p': rng.standard_normal((4, 3))}\n"
        "F_val = 0.5 * (state['theta'] ** 2).sum(-1)\n"
        "field = hb.compile('numpy').field(state, F_val, state['theta'], gamma=0.1)\n"
        "np.testing.assert_allclose(field['p'], -state['theta'] - 0.1 * state['p'])\n"
        "field['p'].shape"
    ),
    nbf.v4.new_markdown_cell(
        "Explicit mode: the same system on a concrete 1-D loss, and its phase portrait."
    ),
    nbf.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "x = sp.Symbol('x', real=True)\n"
        "ex = bbi.explicit(x**2 / 2, [x])\n"
        "comp = ex.compile('numpy')\n"
        "X, P = np.meshgrid(np.linspace(-2, 2, 31), np.linspace(-2, 2, 31))\n"
        "s = {'theta': X.reshape(-1, 1), 'p': P.reshape(-1, 1)}\n"
        "f = comp.field(s)\n"
        "plt.contourf(X, P, comp.energy(s).reshape(X.shape), 20, cmap='Blues')\n"
        "plt.streamplot(X, P, f['theta'].reshape(X.shape), f['p'].reshape(X.shape), color='k')\n"
        "plt.xlabel('theta'); plt.ylabel('p'); plt.title('BBI on F = x²/2, ΔV = -1');"
    ),
]
nb = nbf.v4.new_notebook(cells=cells)
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, Path(__file__).with_name("quickstart.ipynb"))
